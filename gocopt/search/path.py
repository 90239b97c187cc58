"""Globally placed compute steps: the cheapest path through the sampling steps.

Reuse across a span of steps costs quality at the *end* of the run, and where that span sits
matters more than how any one step looks locally (LeMiCa, DPCache). So: a node per step, an edge
``c → c'`` for "compute at ``c`` and ``c'``, reuse every step between", weighted by the end-to-end
error of doing exactly that on the calibration seeds (everything else computed, reused values
made by the predictor the schedule will use). The path ``0 → … → end`` with a given number of
compute steps and the least total weight is found by dynamic programming; edge errors are
treated as additive, which is what makes the search global and exact in ``O(steps² · computes)``.

A path is per *group* of sites (all of them, or attention and MLP apart): the group's sites
share compute steps, the rest of the mask is the search's to refine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from tqdm.auto import tqdm

from gocopt.errors import ScheduleError

T = TypeVar("T")
EdgeError = Callable[[np.ndarray], float]  # a (steps,) compute row → end-to-end error of that run


@dataclass(frozen=True)
class EdgeTable:
    """End-to-end error of every reuse span ``(c, c')`` up to ``max_gap`` steps; ``c' = steps``
    is the span that reuses from ``c + 1`` to the end."""

    steps: int
    max_gap: int
    error: dict[tuple[int, int], float]

    def weight(self, c: int, d: int) -> float:
        return 0.0 if d == c + 1 else self.error.get((c, d), np.inf)

    @property
    def changes_nothing(self) -> bool:
        """No measured span moved the samples at all: the model's output ignores what caching
        changes (a zero-initialised final layer, say), so every schedule at a budget is as good."""
        return not any(e > 0 for e in self.error.values())

    def to_record(self) -> dict:
        return {"steps": self.steps, "max_gap": self.max_gap,
                "error": [[c, d, e] for (c, d), e in sorted(self.error.items())]}

    @classmethod
    def from_record(cls, record: dict) -> EdgeTable:
        return cls(int(record["steps"]), int(record["max_gap"]),
                   {(int(c), int(d)): float(e) for c, d, e in record["error"]})


def span_row(steps: int, c: int, d: int) -> np.ndarray:
    """Every step computed except ``c + 1 … d − 1``."""
    row = np.ones(steps, dtype=bool)
    row[c + 1 : d] = False
    return row


def measure_edges(run_error: EdgeError, steps: int, max_gap: int, progress: bool = False) -> EdgeTable:
    """Run every span of at least one reused step and at most ``max_gap`` steps between computes."""
    return EdgeTable(steps, max_gap, {span: float(e) for span, e in run_spans(run_error, steps, max_gap,
                                                                             progress).items()})


def run_spans(run: Callable[[np.ndarray], T], steps: int, max_gap: int,
              progress: bool = False) -> dict[tuple[int, int], T]:
    """``run`` of every span's compute row, by span: what :func:`measure_edges` reduces to a table."""
    return {(c, d): run(span_row(steps, c, d)) for c, d in tqdm(spans_up_to(steps, max_gap), desc="path edges",
                                                               disable=not progress, leave=False)}


def spans_up_to(steps: int, max_gap: int) -> list[tuple[int, int]]:
    """Every span ``(c, d)`` of at least one reused step and at most ``max_gap`` steps, in step order."""
    return [(c, d) for c in range(steps) for d in range(c + 2, min(steps, c + max_gap) + 1)]


def best_path(table: EdgeTable, computes: int) -> list[int]:
    """The ``computes`` steps (step 0 first) whose reuse spans add up to the least error."""
    n = table.steps
    if not 1 <= computes <= n:
        raise ScheduleError(f"a path through {n} steps needs 1..{n} compute steps, got {computes}")
    inf = np.inf
    # cost[k][c]: least error of a path with k + 1 computes whose last compute is c (spans before it)
    cost = np.full((computes, n), inf)
    parent = np.full((computes, n), -1, dtype=int)
    cost[0][0] = 0.0
    for k in range(1, computes):
        for d in range(1, n):
            for c in range(max(0, d - table.max_gap), d):
                value = cost[k - 1][c] + table.weight(c, d)
                if value < cost[k][d]:
                    cost[k][d], parent[k][d] = value, c
    total = cost[computes - 1] + np.array([table.weight(c, n) if c < n - 1 else 0.0 for c in range(n)])
    last = int(np.argmin(total))
    if not np.isfinite(total[last]):
        raise ScheduleError(f"no path with {computes} computes spans {n} steps with gaps of at most "
                            f"{table.max_gap}; measure longer spans")
    path = [last]
    for k in range(computes - 1, 0, -1):
        path.append(int(parent[k][path[-1]]))
    return path[::-1]


def path_mask(path: Sequence[int], steps: int, num_sites: int, sites: Sequence[int] | None = None,
              base: np.ndarray | None = None) -> np.ndarray:
    """``base`` (all computed by default) with ``sites`` (all) computed only at the path's steps."""
    mask = np.ones((steps, num_sites), dtype=bool) if base is None else base.copy()
    row = np.zeros(steps, dtype=bool)
    row[list(path)] = True
    columns = list(range(num_sites)) if sites is None else list(sites)
    mask[:, columns] = row[:, None]
    return mask


__all__ = ["EdgeTable", "best_path", "measure_edges", "path_mask", "run_spans", "span_row", "spans_up_to"]
