"""Model work, counted: what a compile spends, in uncached-sample equivalents, phase by phase.

Our users' models take from half a second to ten seconds per image, so a compile's price is the
model work it does, not its seconds on a small model. The meter watches every call of the given
models (forward pre-hooks, removed on exit) and adds up the rows of each call's batch, attributed
to the phase in progress. One *uncached-sample equivalent* is the work of sampling one image
uncached: ``steps`` steps of ``rows_per_image_step`` model-batch rows (2 with classifier-free
guidance, batched or in separate calls; 1 without). A cached call counts in full — an upper bound
on its FLOPs, and what a wall-clock estimate on a launch-bound GPU is closest to. Not counted: the
few evaluations of the example batch that tracing makes inside the tracer (not through the model's
``forward``), a fixed handful per compile whatever its settings.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class PhaseWork:
    """One phase's model calls, batch rows and seconds."""

    calls: int = 0
    rows: int = 0
    seconds: float = 0.0


class WorkMeter:
    """Counts the calls of ``models`` by phase (see the module docstring); use as a context manager.

    Args:
        models: every module the compile calls directly (the compiled model and the original);
            a call made from inside another counted call (a wrapper calling the model it wraps) is
            not counted again.
        steps: sampling steps of one sample.
        rows_per_image_step: model-batch rows one image needs per step.
    """

    def __init__(self, models: Sequence[nn.Module], *, steps: int, rows_per_image_step: int) -> None:
        self.steps, self.rows_per_image_step = int(steps), int(rows_per_image_step)
        self.phases: dict[str, PhaseWork] = {}
        self._phase = "other"
        self._inside = threading.local()
        self._hooks: list[Any] = []
        self._watched: set[int] = set()
        self._pending = list(models)
        self._entered = 0  # nested use (a driver and the search it calls) keeps the hooks until the outer exit

    def __enter__(self) -> WorkMeter:
        self._entered += 1
        for model in self._pending:
            self.watch(model)
        return self

    def watch(self, model: nn.Module) -> None:
        """Count ``model``'s calls too (a model made after the meter started, e.g. the compiled one)."""
        if id(model) in self._watched:
            return
        self._watched.add(id(model))
        self._hooks.append(model.register_forward_pre_hook(self._before, with_kwargs=True))
        self._hooks.append(model.register_forward_hook(self._after, always_call=True))

    def __exit__(self, *exc: object) -> None:
        self._entered -= 1
        if self._entered:
            return
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        self._watched.clear()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Attribute the calls (and seconds) inside the block to ``name``."""
        previous, self._phase = self._phase, name
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phases.setdefault(name, PhaseWork()).seconds += time.perf_counter() - started
            self._phase = previous

    def _before(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        depth = getattr(self._inside, "depth", 0)
        self._inside.depth = depth + 1
        if depth:
            return
        rows = next((int(v.shape[0]) for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor) and v.dim()),
                    0)
        work = self.phases.setdefault(self._phase, PhaseWork())
        work.calls += 1
        work.rows += rows

    def _after(self, module: nn.Module, args: tuple, output: Any) -> None:
        self._inside.depth -= 1

    def equivalents(self, rows: int) -> float:
        return rows / (self.rows_per_image_step * self.steps)

    def summary(self) -> dict[str, Any]:
        """Per phase and in total: model calls, image-steps, uncached-sample equivalents, seconds."""
        def entry(work: PhaseWork) -> dict[str, Any]:
            return {"model_calls": work.calls, "image_steps": work.rows / self.rows_per_image_step,
                    "sample_equivalents": self.equivalents(work.rows), "seconds": work.seconds}

        total = PhaseWork(sum(w.calls for w in self.phases.values()), sum(w.rows for w in self.phases.values()),
                          sum(w.seconds for w in self.phases.values()))
        return {"unit": f"uncached samples of {self.steps} steps", "steps": self.steps,
                "rows_per_image_step": self.rows_per_image_step,
                "phases": {name: entry(w) for name, w in self.phases.items()}, "total": entry(total)}


__all__ = ["PhaseWork", "WorkMeter"]
