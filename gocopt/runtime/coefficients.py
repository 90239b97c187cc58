"""Each step's predictor coefficients as tensors on the model's device, made once per schedule.

A step-plan graph takes its coefficients as data, so every step of one shape runs the same graph
(:mod:`gocopt.schedule.plan`). The tensors are made when the schedule is set, for the model's own
device and dtype (and once more for any other dtype the kept values turn out to have, e.g. under
autocast); a call then only looks its step's tensor up: no host→device copy per call, no host read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from gocopt.schedule.plan import RunPlan

Table = tuple[torch.Tensor | None, ...]  # per step: the graph's coefficients (None: nothing to combine)


class CoefficientTables:
    """Per traced graph and step, the coefficients of the graph's reused sites (site order).

    Args:
        plan: the run's plan (its per-step coefficients).
        graph_sites: per traced graph (``""`` for a whole-model trace), its sites in order.
    """

    def __init__(self, plan: RunPlan, graph_sites: Mapping[str, Sequence[int]]) -> None:
        self._rows = {key: tuple(plan.step_coefficients(step, sites) for step in range(plan.steps))
                      for key, sites in graph_sites.items()}
        self._tables: dict[tuple[str, torch.device, torch.dtype], Table] = {}

    def prepare(self, device: torch.device, dtype: torch.dtype) -> None:
        """Make the tensors for ``device`` and ``dtype`` now (when the schedule is set)."""
        for key in self._rows:
            self._table(key, device, dtype)

    def get(self, key: str, step: int, like: torch.Tensor | None) -> torch.Tensor | None:
        """``step``'s coefficients for graph ``key`` on ``like``'s device and dtype (a kept value)."""
        if like is None or not self._rows[key][step]:
            return None
        return self._table(key, like.device, like.dtype)[step]

    def _table(self, key: str, device: torch.device, dtype: torch.dtype) -> Table:
        table = self._tables.get((key, device, dtype))
        if table is None:  # once per schedule, device and dtype; two threads may both build it: same values
            table = tuple(torch.tensor(row, dtype=dtype, device=device) if row else None for row in self._rows[key])
            self._tables[key, device, dtype] = table
        return table

    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for table in self._tables.values() for t in table if t is not None)


__all__ = ["CoefficientTables"]
