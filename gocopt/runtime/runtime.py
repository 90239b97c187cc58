"""The cache runtime: the one object the rewritten model consults at every site.

It holds the schedule, the step of the running sampling run and the GOC queues, per call
context, so the modules themselves keep no per-request tensors. Step semantics (GOC.md §7):

* one model call is one step; with guidance in separate calls, each ``context("cond")`` /
  ``context("uncond")`` counts its own steps and keeps its own queues;
* a run starts over automatically once all of the schedule's steps have been taken, and
  explicitly with :meth:`CacheRuntime.reset`;
* when the model is called with a timestep, it is checked against the schedule's timestep list,
  so a run with more or fewer steps, or another spacing, raises instead of wrapping around;
* decisions are per (step, site) only, never per sample, so batch-mates never interact.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from gocopt.errors import ScheduleError
from gocopt.runtime.goc import extrapolate
from gocopt.runtime.state import RunState, SiteValue
from gocopt.schedule.schedule import Schedule

logger = logging.getLogger(__name__)
DEFAULT_CONTEXT = "default"
Observer = Callable[[int, int, SiteValue], None]  # (step, site, value used)


class CacheRuntime:
    """Per-run state and the compute/reuse/correct decision of every site."""

    def __init__(self, site_ids: Sequence[str], schedule: Schedule | None = None) -> None:
        self.site_ids = tuple(site_ids)
        self._schedule: Schedule | None = None
        self._states: dict[str, RunState] = {}
        self._context = DEFAULT_CONTEXT
        self.observers: list[Observer] = []
        if schedule is not None:
            self.set_schedule(schedule)

    # -- schedule ---------------------------------------------------------------------------

    @property
    def schedule(self) -> Schedule | None:
        return self._schedule

    def set_schedule(self, schedule: Schedule | None) -> None:
        """Use ``schedule`` from the next run on (``None``: compute every site, count nothing)."""
        if schedule is not None:
            schedule.check_sites(self.site_ids)
            # queue a value only while the site is still reused later in the run: an all-compute
            # schedule holds nothing, and the last steps of most schedules hold little
            reused_from = np.logical_or.accumulate(~schedule.mask[::-1], axis=0)[::-1]  # reused at s or later
            self._reused_later = np.zeros_like(reused_from)
            self._reused_later[:-1] = reused_from[1:]
        self._schedule = schedule
        self.reset()

    # -- runs and contexts --------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every context's queues and steps: the next call starts a new run."""
        self._states.clear()

    @contextlib.contextmanager
    def context(self, name: str) -> Iterator[None]:
        """Calls inside count steps and keep queues separately (diffusers' ``cache_context``)."""
        previous, self._context = self._context, name
        try:
            yield
        finally:
            self._context = previous

    @property
    def context_name(self) -> str:
        """The call context the model is in now (``"default"`` outside ``context(...)``)."""
        return self._context

    @property
    def state(self) -> RunState:
        if self._context not in self._states:
            self._states[self._context] = RunState(len(self.site_ids))
        return self._states[self._context]

    def begin_call(self, timestep: float | None) -> None:
        """Called before every model call: decide which step of which run this call is."""
        schedule, state = self._schedule, self.state
        if schedule is None:
            return
        self._check_guidance(schedule)
        if state.step == schedule.steps and (timestep is None or _same_time(timestep, schedule.timesteps[0])):
            self._log_run(state)
            state.reset()  # the previous run finished: this call starts the next one
        if timestep is None or schedule.timesteps is None:
            if state.step >= schedule.steps:
                raise ScheduleError(f"run goes past the schedule's {schedule.steps} steps")
            return
        expected = schedule.timesteps[state.step] if state.step < schedule.steps else None
        if expected is not None and _same_time(timestep, expected):
            return
        if state.step >= schedule.steps:
            raise ScheduleError(
                f"sampling run has more steps than the schedule: it was made for {schedule.steps} steps, and "
                f"this is call {state.step + 1} (timestep {timestep:g}); re-run gocopt.compile with steps="
                f"{state.step + 1} or more, or use the sampler the schedule was made for"
            )
        if state.step > 0 and _same_time(timestep, schedule.timesteps[0]):
            raise ScheduleError(
                f"a new sampling run started after {state.step} of the schedule's {schedule.steps} steps: the "
                f"sampler runs fewer steps than the schedule was made for ({state.step} vs {schedule.steps}); "
                f"re-run gocopt.compile with steps={state.step}, or call reset() after an interrupted run"
            )
        guess = ""
        if state.step == 1 and schedule.timesteps[0] != timestep:  # uniform spacing: N ≈ T0 / (T0 - t1) + 1
            guess = f", like a sampler of about {round(schedule.timesteps[0] / (schedule.timesteps[0] - timestep)) + 1} steps"
        raise ScheduleError(
            f"step {state.step} of the schedule expects timestep {expected:g} but the model got {timestep:g}: the "
            f"sampler's timesteps differ from the schedule's (made for {schedule.steps} steps: "
            f"{', '.join(f'{t:g}' for t in schedule.timesteps[:3])}, …{guess}); re-run gocopt.compile with this "
            "sampler's steps"
        )

    def _check_guidance(self, schedule: Schedule) -> None:
        separate = self._context != DEFAULT_CONTEXT
        if schedule.guidance == "separate" and not separate:
            raise ScheduleError(
                "schedule was made for guidance in separate cond/uncond calls, but the model is called outside "
                "cache_context(...); call it inside cache_context('cond' | 'uncond'), or compile for batched guidance"
            )
        if schedule.guidance in ("batched", "none") and separate:
            raise ScheduleError(
                f"schedule was made for guidance={schedule.guidance!r} (one call per step), but the model is called in "
                f"cache_context({self._context!r}); re-run gocopt.compile with the sampler's guidance mode"
            )

    def end_call(self) -> None:
        if self._schedule is not None:
            self.state.step += 1

    # -- sites ----------------------------------------------------------------------------------

    def run_site(self, index: int, compute: Callable[..., SiteValue], inputs: tuple) -> SiteValue:
        """Compute site ``index`` or hand back its reused (maybe corrected) value."""
        schedule, state = self._schedule, self.state
        if schedule is None:
            value = compute(*inputs)
            self._observe(state.step, index, value)
            return value
        step = state.step
        if schedule.mask[step, index]:
            value = compute(*inputs)
            state.computed += 1
            self._on_computed(index, step, value)
        else:
            value = self._reuse(state, index, step)
        if self._reused_later[step, index]:
            state.push(index, value)
        else:
            state.queues[index].clear()
        self._observe(step, index, value)
        return value

    def computes(self, sites: Sequence[int]) -> bool:
        """Whether any of ``sites`` is computed at the current step (what their inputs are worth)."""
        schedule = self._schedule
        if schedule is None:
            return True
        step = self.state.step
        return step >= schedule.steps or bool(schedule.mask[step, list(sites)].any())

    def _on_computed(self, index: int, step: int, value: SiteValue) -> None:
        """Hook for subclasses with another reuse rule (GOC needs only the queue)."""

    def _reuse(self, state: RunState, index: int, step: int) -> SiteValue:
        queue = state.queues[index]
        if not queue:
            raise ScheduleError(
                f"site {self.site_ids[index]} is reused at step {step} but was never computed in this run "
                f"(context {self._context!r}); the schedule must compute every site at step 0"
            )
        state.reused += 1
        goc = self._schedule.goc
        w = goc.weight(index)
        if len(queue) == 2 and w != 0.0 and step in goc.correction_steps:
            state.corrected += 1
            return tuple(extrapolate(new, old, w) for new, old in zip(queue[0], queue[1]))
        return queue[0]

    def _observe(self, step: int, index: int, value: SiteValue) -> None:
        for observer in self.observers:
            observer(step, index, value)

    def _log_run(self, state: RunState) -> None:
        total = state.computed + state.reused
        logger.debug("run finished in context %r: %d site calls computed, %d reused (%d corrected) of %d",
                     self._context, state.computed, state.reused, state.corrected, total)

    def memory_bytes(self) -> int:
        """Bytes of tensors held in the queues right now, all contexts."""
        return sum(s.memory_bytes() for s in self._states.values())


def _same_time(a: float, b: float) -> bool:
    return abs(float(a) - float(b)) <= 1e-4 * max(1.0, abs(float(b)))


def timestep_value(value: object) -> float | None:
    """The first element of a timestep argument, as a float (one scalar read per call)."""
    if isinstance(value, torch.Tensor):
        return float(value.reshape(-1)[0]) if value.numel() else None
    if isinstance(value, (int, float)):
        return float(value)
    return None
