"""The cache runtime: the schedule's step plans, the step of the running run, the kept values.

It holds per call context what a run needs between model calls, so the modules themselves keep
no per-request tensors. Everything that can be decided before the run is decided when the
schedule is set (:func:`~gocopt.schedule.plan.plan_run`); a call only advances a host-side step
counter and hands the compiled model its step's plan. Step semantics (GOC.md §7):

* one model call is one step; with guidance in separate calls, each ``context("cond")`` /
  ``context("uncond")`` counts its own steps and keeps its own values;
* a sampler that announces its run (:func:`gocopt.sampling.sampling_run`; gocopt's samplers and
  the diffusers scheduler guard do) starts a new run with every announcement, and its timesteps
  are compared with the schedule's once, on the host: no device→host read per call;
* a caller that announces nothing gets a new run once all of the schedule's steps are taken (or
  after :meth:`CacheRuntime.reset`), and its timesteps are checked on the device: a flag that the
  last step of the run reads once; from a mismatch on, outputs are NaN, never silently wrong;
* decisions are per (step, site) only, never per sample, so batch-mates never interact.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils import _pytree as pytree

from gocopt.errors import ScheduleError
from gocopt.runtime.state import RunState, SiteValue
from gocopt.sampling.run import SamplingRun, current_run
from gocopt.schedule.plan import RunPlan, all_compute_plan, plan_run
from gocopt.schedule.schedule import Schedule

logger = logging.getLogger(__name__)
DEFAULT_CONTEXT = "default"
Observer = Callable[[int, int, SiteValue], None]  # (step, site, value used)


class CacheRuntime:
    """Per-run state and the step plans of a schedule (see the module docstring).

    Args:
        site_ids: the model's sites, in schedule column order.
        schedule: the schedule to run (``None``: compute every site, count nothing).
    """

    def __init__(self, site_ids: Sequence[str], schedule: Schedule | None = None) -> None:
        self.site_ids = tuple(site_ids)
        self._schedule: Schedule | None = None
        self._plan: RunPlan = all_compute_plan(len(self.site_ids))
        self._states: dict[str, RunState] = {}
        self._context = DEFAULT_CONTEXT
        self._announced: SamplingRun | None = None
        self._observers: list[Observer] = []
        self._expected: torch.Tensor | None = None  # the schedule's timesteps on the model's device
        self.on_plan_change: Callable[[RunPlan], None] | None = None
        self.current_plan = 0  # index of the plan the call in progress runs
        self.pending_observations: list[tuple[str, tuple]] = []  # (graph, site values) of the call in progress
        if schedule is not None:
            self.set_schedule(schedule)

    # -- schedule and plans -------------------------------------------------------------------

    @property
    def schedule(self) -> Schedule | None:
        return self._schedule

    @property
    def plan(self) -> RunPlan:
        """The distinct step plans of the current schedule and which step runs which."""
        return self._plan

    def set_schedule(self, schedule: Schedule | None) -> None:
        """Use ``schedule`` from the next run on (``None``: compute every site, count nothing)."""
        if schedule is not None:
            schedule.check_sites(self.site_ids)
        self._schedule = schedule
        self._expected = None
        self._replan()
        self.reset()

    def _replan(self) -> None:
        observe = bool(self._observers)
        schedule = self._schedule
        self._plan = (plan_run(schedule, observe=observe) if schedule is not None
                      else all_compute_plan(len(self.site_ids), observe=observe))
        if self.on_plan_change is not None:
            self.on_plan_change(self._plan)

    @contextlib.contextmanager
    def observing(self, observer: Observer) -> Iterator[None]:
        """Call ``observer(step, site, value)`` for every site value used inside the block.

        Plans made inside also return every site's value (calibration; not a fast path).
        """
        self._observers.append(observer)
        self._replan()
        try:
            yield
        finally:
            self._observers.remove(observer)
            self._replan()

    def observe(self, step: int, values: Sequence[tuple[int, SiteValue]]) -> None:
        for site, value in values:
            for observer in self._observers:
                observer(step, site, value)

    # -- runs and contexts --------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every context's kept values and steps: the next call starts a new run."""
        self._states.clear()

    def announce_run(self, timesteps: Sequence[float] | None = None) -> None:
        """The next calls form a new run with these timesteps (for callers that cannot use
        :func:`~gocopt.sampling.sampling_run` around their loop, e.g. a scheduler hook)."""
        self._announced = SamplingRun(None if timesteps is None else tuple(timesteps))

    @contextlib.contextmanager
    def context(self, name: str) -> Iterator[None]:
        """Calls inside count steps and keep values separately (diffusers' ``cache_context``)."""
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
            self._states[self._context] = RunState()
        return self._states[self._context]

    # -- one model call -------------------------------------------------------------------------

    def begin_call(self, timestep: Any = None) -> int:
        """Before every model call: which step this is; returns the index of its plan.

        Host-side only: ``timestep`` (the call's timestep argument) is read on the host only when
        it is a Python number; a tensor is compared on its device (unannounced runs).
        """
        schedule, state = self._schedule, self.state
        if schedule is None:
            self.current_plan = 0
            return 0
        self._check_guidance(schedule)
        run = current_run() or self._announced
        if run is not None:
            if state.run is not run:
                self._check_announced(schedule, run)
                self._finish(state)
                state.reset(run)
            elif state.step >= schedule.steps:
                raise ScheduleError(
                    f"sampling run has more steps than the schedule: it was made for {schedule.steps} steps, and "
                    f"this is call {state.step + 1}; re-run gocopt.compile with this sampler's steps, or use the "
                    "sampler the schedule was made for"
                )
        else:
            if state.run is not None or state.step >= schedule.steps:
                self._finish(state)
                state.reset(None)
            self._check_timestep(schedule, state, timestep)
        plan = self._plan.at(state.step)
        state.computed += plan.computed
        state.reused += len(plan.actions) - plan.computed
        state.corrected += plan.corrected
        self.current_plan = self._plan.plan_of_step[state.step]
        return self.current_plan

    def end_call(self, output: Any) -> Any:
        """After every model call: advance the step; for unannounced runs, the timestep check."""
        schedule, state = self._schedule, self.state
        if schedule is None:
            return output
        if state.timestep_ok is not None:
            ok = state.timestep_ok
            output = pytree.tree_map(
                lambda v: torch.where(ok, v, torch.nan) if isinstance(v, torch.Tensor) and v.is_floating_point() else v,
                output)
            seen = state.timesteps_seen
            if state.step == schedule.steps - 1 and not bool(ok) and seen is not None:  # the one device read
                raise ScheduleError(self._mismatch(schedule, seen.tolist()))
        state.step += 1
        return output

    def _check_announced(self, schedule: Schedule, run: SamplingRun) -> None:
        if run.timesteps is None or schedule.timesteps is None:
            return
        if len(run.timesteps) != schedule.steps:
            raise ScheduleError(
                f"the sampler runs {len(run.timesteps)} steps but the schedule was made for {schedule.steps} steps; "
                f"re-run gocopt.compile with steps={len(run.timesteps)}, or sample with {schedule.steps} steps"
            )
        pairs = zip(run.timesteps, schedule.timesteps)
        bad = next((i for i, (a, b) in enumerate(pairs) if not _same_time(a, b)), None)
        if bad is not None:
            raise ScheduleError(self._mismatch(schedule, run.timesteps, bad))

    def _check_timestep(self, schedule: Schedule, state: RunState, timestep: Any) -> None:
        timesteps = schedule.timesteps
        if timesteps is None or timestep is None:
            return
        if isinstance(timestep, (int, float)):
            if not _same_time(timestep, timesteps[state.step]):
                seen = [*timesteps[: state.step], float(timestep)]
                raise ScheduleError(self._mismatch(schedule, seen, state.step))
            return
        if not isinstance(timestep, torch.Tensor) or timestep.numel() == 0:
            return
        first = timestep.reshape(-1)[0].to(torch.float64)
        if self._expected is None or self._expected.device != first.device:
            self._expected = torch.tensor(timesteps, dtype=torch.float64, device=first.device)
        if state.timestep_ok is None or state.timesteps_seen is None:
            state.timestep_ok = torch.ones((), dtype=torch.bool, device=first.device)
            state.timesteps_seen = self._expected.clone()
        expected = self._expected[state.step]
        state.timesteps_seen[state.step] = first
        state.timestep_ok &= (first - expected).abs() <= 1e-4 * expected.abs().clamp_min(1.0)

    def _mismatch(self, schedule: Schedule, seen: Sequence[float], step: int | None = None) -> str:
        expected = schedule.timesteps or ()
        if step is None:
            step = next((i for i, (a, b) in enumerate(zip(seen, expected)) if not _same_time(a, b)), 0)
        guess = ""
        if step == 1 and expected[0] != seen[1]:  # uniform spacing: N ≈ T0 / (T0 - t1) + 1
            guess = f", like a sampler of about {round(expected[0] / (expected[0] - seen[1])) + 1} steps"
        return (
            f"step {step} of the schedule expects timestep {expected[step]:g} but the model got {seen[step]:g}: the "
            f"sampler's timesteps differ from the schedule's (made for {schedule.steps} steps: "
            f"{', '.join(f'{t:g}' for t in expected[:3])}, …{guess}); re-run gocopt.compile with this sampler's "
            "steps, or call reset() after an interrupted run"
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

    def _finish(self, state: RunState) -> None:
        if state.step:
            logger.debug("run finished in context %r after %d steps: %d site calls computed, %d reused (%d corrected)",
                         self._context, state.step, state.computed, state.reused, state.corrected)

    def runs_in_progress(self) -> int:
        """How many contexts are inside a run (past step 0, not finished)."""
        steps = self._schedule.steps if self._schedule is not None else 0
        return sum(0 < s.step < steps for s in self._states.values())

    def memory_bytes(self) -> int:
        """Bytes of tensors kept between steps right now, all contexts."""
        return sum(s.memory_bytes() for s in self._states.values())


def _same_time(a: float, b: float) -> bool:
    return abs(float(a) - float(b)) <= 1e-4 * max(1.0, abs(float(b)))


def timestep_value(value: object) -> float | None:
    """The first element of a timestep argument, as a float (a device read: never on the hot path)."""
    if isinstance(value, torch.Tensor):
        return float(value.reshape(-1)[0]) if value.numel() else None
    if isinstance(value, (int, float)):
        return float(value)
    return None
