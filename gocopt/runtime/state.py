"""Per-run cache state, kept out of the modules: one ``RunState`` per (run, call context)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from gocopt.sampling.run import SamplingRun

SiteValue = tuple[torch.Tensor, ...]  # a site's outputs (two for a joint attention)
Caller = tuple[int, int | None]  # (thread, asyncio task): who makes the calls of an unannounced run


@dataclass(frozen=True)
class RunStats:
    """What a finished run did, for reports and tests (``CacheRuntime.last_run``)."""

    steps: int
    computed: int
    reused: int
    corrected: int


@dataclass(eq=False)
class RunState:
    """Where one sampling run stands in one context (``"cond"``, ``"uncond"`` or the default).

    Attributes:
        step: the step the next call runs.
        kept: per graph (``""`` for a whole-model trace, else the block's path), the flat tuple of
            history slots the next step's plan reads (see :mod:`gocopt.schedule.plan`).
        caller: for unannounced runs, the thread and task whose calls make up the run.
        busy: a call of this run is in progress (a second one at the same time is refused).
        timestep_ok: for unannounced runs, a device-side flag: every call's timestep matched so far.
        timesteps_seen: for unannounced runs, the timestep each call received (for the message).
    """

    step: int = 0
    kept: dict[str, tuple[torch.Tensor, ...]] = field(default_factory=dict, repr=False)
    caller: Caller | None = None
    busy: bool = False
    computed: int = 0
    reused: int = 0
    corrected: int = 0
    timestep_ok: torch.Tensor | None = field(default=None, repr=False)
    timesteps_seen: torch.Tensor | None = field(default=None, repr=False)

    def reset(self, caller: Caller | None = None) -> None:
        self.step = 0
        self.kept = {}
        self.caller = caller
        self.computed = self.reused = self.corrected = 0
        self.timestep_ok = self.timesteps_seen = None

    def stats(self) -> RunStats:
        return RunStats(self.step, self.computed, self.reused, self.corrected)

    def memory_bytes(self) -> int:
        """Bytes of the distinct tensors this run keeps (a value held in two slots counts once)."""
        distinct = {id(t): t for values in self.kept.values() for t in values}
        return sum(t.numel() * t.element_size() for t in distinct.values())


@dataclass(eq=False)
class Call:
    """The model call in progress in this thread: its run's state, step and plan, what it made.

    Blocks traced one by one read it to find their plan and kept values; the values the call keeps
    are committed to the run only when the whole call succeeds (a call that raises leaves its run
    where it was). It lives only for the call.
    """

    state: RunState
    step: int
    plan: int
    run: SamplingRun | None = None
    kept: dict[str, tuple[torch.Tensor, ...]] = field(default_factory=dict, repr=False)  # committed at the end
    observations: list[tuple[str, tuple]] = field(default_factory=list, repr=False)
