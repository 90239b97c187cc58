"""Step plans: every decision of a static schedule, made once when the schedule is set.

A schedule says, per (step, site), compute or reuse; its *predictor* says how a reused value is
made from values the site used at earlier steps. Both are known before the run, so each step's
work is fixed. A model call only looks up its step's plan by a host-side integer and runs it — no
per-site branching, no device reads.

The plan of a step is split in two, so that few graphs serve a whole run:

* its **shape** (:class:`StepPlan`): which sites compute at this step, plus what is fixed for the
  whole run per site (:class:`SiteHistory`: how many past values it keeps, which values enter that
  history, how it combines them). Steps with equal shapes share one graph — a schedule has as
  many graphs as it has distinct mask rows (and first computes), whatever its predictor;
* its **values** (:attr:`RunPlan.coefficients`): the coefficients each reused site applies to its
  history at this step, data that the graph receives as a tensor prepared when the schedule is set.

A site's history is a fixed number of slots, newest first, handed from step to step by reference
(no copies): a computed site puts its fresh output in slot 0 and shifts the rest; a reused site
combines its slots, ``Σ c_k · slot_k``, and — for predictors defined on the values *used* (GOC's
queue) — puts its prediction in slot 0 too. A site's first compute puts its fresh output in
slot 0 and zeros in the others, so a reuse that has fewer values than the site keeps reads zeros
with coefficient 0. (Zeros, not the fresh value again: a compiled graph whose inputs alias one
another is specialised for that aliasing, which would double the graphs.)

Every predictor (plain reuse, GOC, Taylor, fitted) is a linear combination of past values
(:class:`~gocopt.schedule.reuse.Reuse`, ages relative to the step); :func:`plan_run` turns those
ages into slots.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

import numpy as np

from gocopt.errors import ScheduleError
from gocopt.schedule.reuse import PLAIN, Action, Reuse, Term
from gocopt.schedule.schedule import Schedule

T = TypeVar("T")
_AFFINE_TOLERANCE = 1e-9  # coefficients summing to one within this run as one lerp (two slots)


@dataclass(frozen=True)
class SiteHistory:
    """How one site keeps and combines past values, the same at every step of a run.

    Attributes:
        slots: how many past values the site keeps (0: it is never reused, nothing is kept).
        used: every value the site uses enters its history (GOC's queue of used values), not only
            computed ones (Taylor and fitted forecasts combine computed values).
        plain: every reuse hands on slot 0 as it is (plain reuse: no arithmetic at all).
        affine: every reuse's coefficients sum to one (two slots then run as one ``lerp``).
    """

    slots: int = 0
    used: bool = False
    plain: bool = True
    affine: bool = True

    @property
    def terms(self) -> int:
        """Coefficients per reuse (0 for plain reuse)."""
        return 0 if self.plain else self.slots


NO_HISTORY = SiteHistory()


@dataclass(frozen=True)
class StepPlan:
    """The shape of one model call: what its graph does, with every value left as data.

    Attributes:
        computes: per site, whether it computes at this step (else it is reused).
        history: per site, how it keeps and combines values (:class:`SiteHistory`).
        fills: per site, this compute is the site's first of the run: no history comes in, and the
            fresh output fills every slot.
        observe: also return every site's value (calibration).
    """

    computes: tuple[bool, ...]
    history: tuple[SiteHistory, ...] = ()
    fills: tuple[bool, ...] = ()
    observe: bool = False

    def __post_init__(self) -> None:
        n = len(self.computes)
        if not all(isinstance(c, bool) for c in self.computes):
            raise ScheduleError(f"a step plan's computes are one bool per site, got {self.computes}")
        if not self.history:
            object.__setattr__(self, "history", (NO_HISTORY,) * n)
        if not self.fills:
            object.__setattr__(self, "fills", (False,) * n)
        if len(self.history) != n or len(self.fills) != n:
            raise ScheduleError(f"a step plan needs one entry per site: {n} computes, {len(self.history)} "
                                f"histories, {len(self.fills)} fills")

    @cached_property  # read at every model call: counted once per plan
    def computed(self) -> int:
        return sum(self.computes)

    @cached_property
    def corrected(self) -> int:
        """Reused sites that combine values (not plain reuse)."""
        return sum(not c and not h.plain for c, h in zip(self.computes, self.history))

    def keeps_in(self, site: int) -> int:
        """Slots of ``site`` this call receives (none before its first compute)."""
        return 0 if self.fills[site] else self.history[site].slots

    def slots_after(self, site: int, value: T, slots: Sequence[T], blank: Callable[[T], T]) -> list[T]:
        """``site``'s history after this step, given the value it used and the slots it brought in:
        a fresh value (or, for a history of used values, a predicted one) enters slot 0 and the
        oldest slot drops out; a first compute puts ``blank(value)`` (zeros) in the other slots.
        Works on tensors and graph nodes."""
        count = self.history[site].slots
        if not count:
            return []
        if self.fills[site]:
            return [value, *(blank(value) for _ in range(count - 1))]
        if self.computes[site] or self.history[site].used:
            return [value, *slots[: count - 1]]
        return list(slots)

    def restrict(self, sites: Sequence[int]) -> StepPlan:
        """The part of this plan that concerns ``sites`` (one graph's), with their own order."""
        return StepPlan(tuple(self.computes[i] for i in sites), tuple(self.history[i] for i in sites),
                        tuple(self.fills[i] for i in sites), self.observe)


@dataclass(frozen=True)
class RunPlan:
    """A whole run: the distinct shapes, which one each step runs, and each step's coefficients.

    Attributes:
        plans: the distinct step shapes.
        plan_of_step: per step, the index of its shape.
        coefficients: per step, per site, the coefficients a reused site applies to its slots
            (``()`` for computed sites and plain reuse).
    """

    plans: tuple[StepPlan, ...]
    plan_of_step: tuple[int, ...]
    coefficients: tuple[tuple[tuple[float, ...], ...], ...] = ()

    @property
    def steps(self) -> int:
        return len(self.plan_of_step)

    def at(self, step: int) -> StepPlan:
        return self.plans[self.plan_of_step[step]]

    def step_coefficients(self, step: int, sites: Sequence[int] | None = None) -> tuple[float, ...]:
        """The flat coefficients of ``step`` for ``sites`` (all), in site order: a graph's data input."""
        if not self.coefficients:
            return ()
        row = self.coefficients[step]
        return tuple(c for i in (range(len(row)) if sites is None else sites) for c in row[i])


def plan_run(schedule: Schedule, *, observe: bool = False) -> RunPlan:
    """Turn ``schedule`` (its mask and its predictor) into step shapes and coefficients."""
    actions = schedule.predictor.actions(schedule.mask)
    steps, sites = schedule.mask.shape
    if len(actions) != steps or any(len(row) != sites for row in actions):
        raise ScheduleError(f"predictor returned a {len(actions)}-step plan for a {steps} × {sites} schedule")
    for step, row in enumerate(actions):
        for site, action in enumerate(row):
            if (action is None) != bool(schedule.mask[step, site]):
                raise ScheduleError(f"predictor disagrees with the mask at step {step}, "
                                    f"site {schedule.site_ids[site]}")
    columns = [_site_slots([row[i] for row in actions], schedule.site_ids[i]) for i in range(sites)]
    history = tuple(h for h, _ in columns)
    distinct: dict[StepPlan, int] = {}
    plan_of_step, coefficients = [], []
    started = [False] * sites
    for step in range(steps):
        computes = tuple(bool(c) for c in schedule.mask[step])
        fills = tuple(c and not started[i] and history[i].slots > 0 for i, c in enumerate(computes))
        started = [s or c for s, c in zip(started, computes)]
        plan = StepPlan(computes, history, fills, observe)
        plan_of_step.append(distinct.setdefault(plan, len(distinct)))
        coefficients.append(tuple(columns[i][1][step] for i in range(sites)))
    return RunPlan(tuple(distinct), tuple(plan_of_step), tuple(coefficients))


def _site_slots(column: list[Action], site_id: str) -> tuple[SiteHistory, list[tuple[float, ...]]]:
    """One site's history and, per step, the coefficients over its slots.

    Ages become slots. A history of computed values serves when every term reads a computed value
    (through plain reuses, which hand on the same value); otherwise the history holds every used
    value (GOC), where age ``a`` is slot ``a − 1``.
    """
    steps = len(column)

    def source(step: int) -> int | None:  # the computed step whose value ``step`` used, if any
        while step >= 0 and column[step] is not None:
            if column[step] != PLAIN:
                return None
            step -= 1
        return step if step >= 0 else None

    reads: list[list[tuple[int, Term]]] = [[] for _ in range(steps)]  # (source step, term)
    for step, action in enumerate(column):
        for age, c in action.terms if action is not None else ():
            if age > step:
                raise ScheduleError(f"step {step} of site {site_id} reads a value from {age} steps back, before "
                                    "the run started")
            reads[step].append((step - age, (age, c)))
    used = any(source(k) is None for row in reads for k, _ in row)
    first = next((s for s, a in enumerate(column) if a is None), steps)
    slots_of: list[dict[int, int]] = []  # per step: source step → slot, for the values in the history
    computed: list[int] = []
    for step in range(steps):
        if used:
            slots_of.append({step - 1 - k: k for k in range(step)})
        else:
            slots_of.append({s: k for k, s in enumerate(reversed(computed))})
        if column[step] is None:
            computed.append(step)
    raw: list[dict[int, float] | None] = []
    for step, action in enumerate(column):
        if action is None:
            raw.append(None)
            continue
        if step < first:
            raise ScheduleError(f"site {site_id} is reused at step {step} before its first compute")
        weights: dict[int, float] = {}
        for k, (_, c) in reads[step]:
            slot = slots_of[step].get(k if used else source(k))  # type: ignore[arg-type]
            if slot is None:
                raise ScheduleError(f"step {step} of site {site_id} reads step {k}, which its history does not hold")
            weights[slot] = weights.get(slot, 0.0) + c
        raw.append(weights)
    reused = [w for w in raw if w is not None]
    if not reused:
        return NO_HISTORY, [()] * steps
    slots = 1 + max(max(w) for w in reused)
    plain = all(w == {0: 1.0} for w in reused)
    affine = all(abs(sum(w.values()) - 1.0) <= _AFFINE_TOLERANCE for w in reused)
    history = SiteHistory(slots, used, plain, affine)
    rows = [() if w is None or plain else tuple(w.get(k, 0.0) for k in range(slots)) for w in raw]
    return history, rows


def all_compute_plan(num_sites: int, *, observe: bool = False) -> RunPlan:
    """One plan, every site computed, nothing kept: the model without a schedule."""
    return RunPlan((StepPlan((True,) * num_sites, observe=observe),), (0,))


def distinct_graphs(mask: np.ndarray) -> int:
    """How many step graphs a schedule with this mask runs (its distinct rows, and step 0's fill)."""
    rows = {tuple(r) for r in np.asarray(mask, dtype=bool).tolist()[1:]}
    return 1 + len(rows)


__all__ = ["NO_HISTORY", "PLAIN", "Action", "Reuse", "RunPlan", "SiteHistory", "StepPlan", "Term",
           "all_compute_plan", "distinct_graphs", "plan_run"]
