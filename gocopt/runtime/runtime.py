"""The cache runtime: the schedule's step plans, and per sampling run its step and kept values.

Every sampling run owns its state — its step, its kept values, its timestep checks — so one
loaded model serves any number of runs at the same time (threads, asyncio tasks, pipelines that
share one transformer), each getting exactly the images it would get alone. Everything that can
be decided before the run is decided when the schedule is set
(:func:`~gocopt.schedule.plan.plan_run`); a call only advances a host-side step counter and hands
the compiled model its step's plan. Step semantics (GOC.md §7):

* one model call is one step; with guidance in separate calls, each ``context("cond")`` /
  ``context("uncond")`` counts its own steps and keeps its own values (the context is a context
  variable: it belongs to the thread or task that entered it);
* a sampler that announces its run (:func:`gocopt.sampling.sampling_run`; gocopt's samplers and
  the diffusers scheduler guard do) gets a state of its own for that run, dropped when the run
  ends; its timesteps are compared with the schedule's once, on the host: no device→host read per
  call. Announcements are context variables too, so each thread or task has its own run;
* a caller that announces nothing gets a new run once all of the schedule's steps are taken (or
  after :meth:`CacheRuntime.reset`), and its timesteps are checked on the device: a flag that the
  last step of the run reads once; from a mismatch on, outputs are NaN, never silently wrong. Such
  a run belongs to the thread and task that began it: calls from another one while it is in
  progress are refused (they cannot be told apart from the run's own);
* decisions are per (step, site) only, never per sample, so batch-mates never interact.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.utils import _pytree as pytree

from gocopt.errors import ScheduleError
from gocopt.runtime.coefficients import CoefficientTables
from gocopt.runtime.state import Call, Caller, RunState, RunStats, SiteValue
from gocopt.runtime.threads import match_intra_op_threads
from gocopt.sampling.run import SamplingRun, current_run
from gocopt.schedule.plan import RunPlan, all_compute_plan, plan_run
from gocopt.schedule.schedule import Schedule

logger = logging.getLogger(__name__)
DEFAULT_CONTEXT = "default"
Observer = Callable[[int, int, SiteValue], None]  # (step, site, value used)
# per runtime (its key), in this thread or task: the cache context entered, the run a hook announced
_CONTEXTS: contextvars.ContextVar[Mapping[int, str] | None] = contextvars.ContextVar("gocopt_cache_context",
                                                                                   default=None)
_ANNOUNCED: contextvars.ContextVar[Mapping[int, SamplingRun] | None] = contextvars.ContextVar("gocopt_announced",
                                                                                            default=None)
_KEYS = itertools.count()
SHARING_FIX = ("wrap each sampling loop in gocopt.sampling.sampling_run(timesteps) (each loop then has a run of "
               "its own), or load one model per worker")


def current_caller() -> Caller:
    """This thread and, inside an event loop, this asyncio task."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running event loop in this thread
        task = None
    return threading.get_ident(), None if task is None else id(task)


class CacheRuntime:
    """Per-run state and the step plans of a schedule (see the module docstring).

    Args:
        site_ids: the model's sites, in schedule column order.
        schedule: the schedule to run (``None``: compute every site, count nothing).
        graph_sites: per traced graph, its sites (default: one graph with every site).
    """

    def __init__(self, site_ids: Sequence[str], schedule: Schedule | None = None,
                 graph_sites: Mapping[str, Sequence[int]] | None = None) -> None:
        self.site_ids = tuple(site_ids)
        self.graph_sites = dict(graph_sites if graph_sites is not None else {"": range(len(self.site_ids))})
        self._key = next(_KEYS)
        self._schedule: Schedule | None = None
        self._plan: RunPlan = all_compute_plan(len(self.site_ids))
        self.coefficients = CoefficientTables(self._plan, self.graph_sites)
        self._runs: weakref.WeakKeyDictionary[SamplingRun, dict[str, RunState]] = weakref.WeakKeyDictionary()
        self._unannounced: dict[str, RunState] = {}
        self._lock = threading.Lock()
        self._local = threading.local()  # the call in progress in this thread (calls never nest)
        self._observers: list[Observer] = []
        self._expected: dict[torch.device, torch.Tensor] = {}  # the schedule's timesteps per device
        self.last_run: RunStats | None = None
        self.on_plan_change: Callable[[RunPlan], None] | None = None
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
        """Use ``schedule`` from the next run on (``None``: compute every site, count nothing).

        Refused while a run is in progress: its kept values belong to the old schedule's plans.
        """
        if schedule is not None:
            schedule.check_sites(self.site_ids)
        busy = self.runs_in_progress()
        if busy:
            raise ScheduleError(f"set_schedule while {busy} sampling run(s) are in progress on this model: their kept "
                                "values belong to the current schedule; switch schedules between runs, or load "
                                "another model for the new schedule (a run you abandoned without announcing it: "
                                "reset() first)")
        self._schedule = schedule
        self._expected = {}
        self._replan()
        self.reset()

    def _replan(self) -> None:
        observe = bool(self._observers)
        schedule = self._schedule
        self._plan = (plan_run(schedule, observe=observe) if schedule is not None
                      else all_compute_plan(len(self.site_ids), observe=observe))
        self.coefficients = CoefficientTables(self._plan, self.graph_sites)
        if self.on_plan_change is not None:
            self.on_plan_change(self._plan)

    @contextlib.contextmanager
    def observing(self, observer: Observer) -> Iterator[None]:
        """Call ``observer(step, site, value)`` for every site value used inside the block.

        Plans made inside also return every site's value (calibration; not a fast path, and not
        for concurrent runs: it changes the plans every run uses).
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
        """Start over: the next unannounced call (and the next call of the run announced around
        the caller, if any) is step 0 of a new run. Other threads' announced runs are untouched."""
        with self._lock:
            self._unannounced.clear()
            run = self._current_run()
            if run is not None:
                self._runs.pop(run, None)

    def announce_run(self, timesteps: Sequence[float] | None = None) -> None:
        """This model's next calls *in this thread or task* form a new run with these timesteps, until
        its steps are done (for callers that cannot put :func:`~gocopt.sampling.sampling_run` around
        their loop, e.g. a scheduler hook inside a pipeline call)."""
        run = SamplingRun(None if timesteps is None else tuple(timesteps))
        _ANNOUNCED.set({**(_ANNOUNCED.get() or {}), self._key: run})

    def _current_run(self) -> SamplingRun | None:
        """The run the caller is in: a ``sampling_run`` block's, else one announced to this model
        and not finished yet."""
        run = current_run()
        if run is not None:
            return run
        return (_ANNOUNCED.get() or {}).get(self._key)  # released once finished (_release_announced)

    @contextlib.contextmanager
    def context(self, name: str) -> Iterator[None]:
        """Calls inside count steps and keep values separately (diffusers' ``cache_context``)."""
        token = _CONTEXTS.set({**(_CONTEXTS.get() or {}), self._key: name})
        try:
            yield
        finally:
            _CONTEXTS.reset(token)

    @property
    def context_name(self) -> str:
        """The call context this thread or task is in now (``"default"`` outside ``context(...)``)."""
        return (_CONTEXTS.get() or {}).get(self._key, DEFAULT_CONTEXT)

    @property
    def state(self) -> RunState:
        """The state the caller's next call uses: its announced run's, else the unannounced run's."""
        run, context = self._current_run(), self.context_name
        with self._lock:
            states = self._unannounced if run is None else self._states_of(run)
            return states.setdefault(context, RunState())

    def _states_of(self, run: SamplingRun) -> dict[str, RunState]:
        """The states of ``run`` (made on first use; dropped when the run closes). Under the lock."""
        states = self._runs.get(run)
        if states is None:
            states = self._runs[run] = {}
            run.when_closed(_weak_callback(self._forget))
        return states

    def _forget(self, run: SamplingRun) -> None:
        with self._lock:
            self._runs.pop(run, None)

    def current_call(self) -> Call:
        """The model call in progress in this thread (blocks traced one by one read their plan here)."""
        call = getattr(self._local, "call", None)
        if call is None:
            raise RuntimeError("no gocopt model call is in progress in this thread")  # an internal invariant
        return call

    # -- one model call -------------------------------------------------------------------------

    def graph_inputs(self, call: Call, key: str) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None]:
        """What graph ``key`` (``""``: the whole model, else a block's path) takes besides the call's
        own inputs: its kept slots, and this step's coefficients on their device and dtype."""
        kept = call.state.kept.get(key, ())
        return kept, self.coefficients.get(key, call.step, kept[0] if kept else None)

    def begin_call(self, timestep: Any = None) -> Call:
        """Before every model call: which run and step this is, and its plan.

        Host-side only: ``timestep`` (the call's timestep argument) is read on the host only when
        it is a Python number; a tensor is compared on its device (unannounced runs). The calling
        thread's intra-op threads are made the process's first (:mod:`gocopt.runtime.threads`).
        """
        match_intra_op_threads()
        schedule = self._schedule
        if schedule is None:
            call = Call(RunState(), 0, 0)
            self._local.call = call
            return call
        run, context = self._current_run(), self.context_name
        self._check_guidance(schedule, context)
        with self._lock:
            if run is not None:
                state = self._states_of(run).setdefault(context, RunState())
                if state.step == 0:  # once per run and context, on the host
                    self._check_announced(schedule, run)
                elif state.step >= schedule.steps:
                    raise ScheduleError(
                        f"sampling run has more steps than the schedule: it was made for {schedule.steps} steps, and "
                        f"this is call {state.step + 1}; re-run gocopt.compile with this sampler's steps, or use the "
                        "sampler the schedule was made for (two sampling loops inside one sampling_run? "
                        "give each its own)"
                    )
            else:
                state = self._unannounced.setdefault(context, RunState())
                caller = current_caller()
                if state.step >= schedule.steps or state.caller is None:
                    self._finish(state, context)
                    state.reset(caller)
                elif state.caller != caller:
                    raise ScheduleError(
                        f"two callers interleave unannounced sampling runs on one loaded model (context {context!r}, "
                        f"step {state.step} of {schedule.steps} in progress): their calls cannot be told apart, and "
                        f"sharing the run's kept values would give wrong images; {SHARING_FIX}. After an interrupted "
                        "run, call reset()"
                    )
            if state.busy:
                raise ScheduleError(f"two calls of one sampling run at the same time (context {context!r}); "
                                    f"{SHARING_FIX}")
            state.busy = True
        if run is None:
            try:
                self._check_timestep(schedule, state, timestep)
            except BaseException:
                state.busy = False  # refused before it started: the run is free for a corrected call
                raise
        step = state.step
        plan = self._plan.at(step)
        state.computed += plan.computed
        state.reused += len(plan.computes) - plan.computed
        state.corrected += plan.corrected
        call = Call(state, step, self._plan.plan_of_step[step], run)
        self._local.call = call
        return call

    def end_call(self, call: Call, output: Any) -> Any:
        """After every model call: advance the run's step; for unannounced runs, the timestep check."""
        self._local.call = None
        schedule, state = self._schedule, call.state
        if schedule is None:
            return output
        try:
            if state.timestep_ok is not None:
                ok = state.timestep_ok
                output = pytree.tree_map(
                    lambda v: torch.where(ok, v, torch.nan) if isinstance(v, torch.Tensor) and v.is_floating_point()
                    else v, output)
                seen = state.timesteps_seen
                if state.step == schedule.steps - 1 and not bool(ok) and seen is not None:  # the one device read
                    raise ScheduleError(self._mismatch(schedule, seen.tolist()))
            state.kept.update(call.kept)
            state.step += 1
            if state.step == schedule.steps:  # nothing reads the run's values any more
                state.kept = {}
                self.last_run = state.stats()
                self._release_announced(call.run, schedule.steps)
        finally:
            state.busy = False
        return output

    def _release_announced(self, run: SamplingRun | None, steps: int) -> None:
        """A run announced to this model (not a block) is over once every context finished it: forget
        it, so its state does not outlive it in this thread's context."""
        announced = _ANNOUNCED.get() or {}
        if run is None or announced.get(self._key) is not run:
            return
        with self._lock:
            if any(s.step < steps for s in self._runs.get(run, {}).values()):
                return
            self._runs.pop(run, None)
        _ANNOUNCED.set({k: v for k, v in announced.items() if k != self._key})

    def abort_call(self, call: Call) -> None:
        """A call raised: its run stays where it was (the values it made are not committed), so
        the same step can be called again; the run is free for its next call."""
        self._local.call = None
        call.state.busy = False

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
        table = self._expected.get(first.device)
        if table is None:
            table = self._expected[first.device] = torch.tensor(timesteps, dtype=torch.float64, device=first.device)
        if state.timestep_ok is None or state.timesteps_seen is None:
            state.timestep_ok = torch.ones((), dtype=torch.bool, device=first.device)
            state.timesteps_seen = table.clone()
        expected = table[state.step]
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

    def _check_guidance(self, schedule: Schedule, context: str) -> None:
        separate = context != DEFAULT_CONTEXT
        if schedule.guidance == "separate" and not separate:
            raise ScheduleError(
                "schedule was made for guidance in separate cond/uncond calls, but the model is called outside "
                "cache_context(...); call it inside cache_context('cond' | 'uncond'), or compile for batched guidance"
            )
        if schedule.guidance in ("batched", "none") and separate:
            raise ScheduleError(
                f"schedule was made for guidance={schedule.guidance!r} (one call per step), but the model is called in "
                f"cache_context({context!r}); re-run gocopt.compile with the sampler's guidance mode"
            )

    def _finish(self, state: RunState, context: str) -> None:
        if state.step:
            logger.debug("run finished in context %r after %d steps: %d site calls computed, %d reused (%d corrected)",
                         context, state.step, state.computed, state.reused, state.corrected)

    def _all_states(self) -> list[RunState]:
        with self._lock:
            return [*self._unannounced.values(), *(s for states in list(self._runs.values()) for s in states.values())]

    def runs_in_progress(self) -> int:
        """How many (run, context) pairs are past step 0 and not finished, in every thread."""
        steps = self._schedule.steps if self._schedule is not None else 0
        return sum(0 < s.step < steps for s in self._all_states())

    def held_runs(self) -> int:
        """Announced runs whose state this model still holds (each is dropped when its run ends)."""
        with self._lock:
            return len(self._runs)

    def memory_bytes(self) -> int:
        """Bytes of tensors kept between steps right now, every run and context."""
        return sum(s.memory_bytes() for s in self._all_states())


def _weak_callback(method: Callable[[SamplingRun], None]) -> Callable[[SamplingRun], None]:
    """``method``, without keeping its object alive (a run must not keep a model)."""
    ref = weakref.WeakMethod(method)

    def call(run: SamplingRun) -> None:
        bound = ref()
        if bound is not None:
            bound(run)

    return call


def _same_time(a: float, b: float) -> bool:
    return abs(float(a) - float(b)) <= 1e-4 * max(1.0, abs(float(b)))


def timestep_value(value: object) -> float | None:
    """The first element of a timestep argument, as a float (a device read: never on the hot path)."""
    if isinstance(value, torch.Tensor):
        return float(value.reshape(-1)[0]) if value.numel() else None
    if isinstance(value, (int, float)):
        return float(value)
    return None
