"""Step plans: every decision of a static schedule, made once when the schedule is set.

A schedule says, per (step, site), compute or reuse; its *predictor* says how a reused value is
made from values the site used at earlier steps. Both are known before the run, so each step's
work is fixed: which sites compute, which predict with which coefficients, and which past values
must be kept alive into the next step. That is a :class:`StepPlan`. A model call only looks up its
step's plan by a host-side integer and runs it — no per-site branching, no device reads — and
steps with equal plans share one (an interval-2 schedule has a handful), so each distinct plan
can be specialised into one straight-line graph and compiled or captured whole.

Kept values are addressed by *age*: ``(site, a)`` is the value the site used ``a`` steps before
the step about to run. A plan reads the ages it needs from ``keep_in`` and hands ``keep_out`` to the
next step; at a computed step the fresh output simply becomes age 1 — no copies.

Every predictor is a linear combination of past values, ``Σ c_k · v[s − a_k]`` (:class:`Reuse`),
with coefficients fixed by the mask (:mod:`gocopt.schedule.predictors`): plain reuse, GOC, Taylor
and fitted predictors all become the same kind of plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from gocopt.errors import ScheduleError
from gocopt.schedule.reuse import PLAIN, Action, Reuse, Term
from gocopt.schedule.schedule import Schedule


@dataclass(frozen=True)
class StepPlan:
    """Everything one model call does, decided when the schedule was set.

    Attributes:
        actions: per site, ``None`` (compute) or the :class:`Reuse` that makes its value.
        keep_in: ``(site, age)`` values the call receives, in this order.
        keep_out: ``(site, age)`` values it hands to the next step (ages relative to that step).
        observe: also return every site's value (calibration).
    """

    actions: tuple[Action, ...]
    keep_in: tuple[tuple[int, int], ...] = ()
    keep_out: tuple[tuple[int, int], ...] = ()
    observe: bool = False

    @cached_property  # read at every model call: counted once per plan
    def computed(self) -> int:
        return sum(a is None for a in self.actions)

    @cached_property
    def corrected(self) -> int:
        return sum(a is not None and not a.is_plain for a in self.actions)

    def restrict(self, sites: Sequence[int]) -> StepPlan:
        """The part of this plan that concerns ``sites`` (one graph's), with their own order."""
        keep = set(sites)
        return StepPlan(tuple(self.actions[i] for i in sites), tuple(e for e in self.keep_in if e[0] in keep),
                        tuple(e for e in self.keep_out if e[0] in keep), self.observe)


@dataclass(frozen=True)
class RunPlan:
    """A whole run: the distinct plans and which one each step runs."""

    plans: tuple[StepPlan, ...]
    plan_of_step: tuple[int, ...]

    @property
    def steps(self) -> int:
        return len(self.plan_of_step)

    def at(self, step: int) -> StepPlan:
        return self.plans[self.plan_of_step[step]]


def plan_run(schedule: Schedule, *, observe: bool = False) -> RunPlan:
    """Turn ``schedule`` (its mask and its predictor) into step plans (see the module docstring)."""
    actions = schedule.predictor.actions(schedule.mask)
    steps, sites = schedule.mask.shape
    if len(actions) != steps or any(len(row) != sites for row in actions):
        raise ScheduleError(f"predictor returned a {len(actions)}-step plan for a {steps} × {sites} schedule")
    # last step that reads the value used at (step k, site i); -1: never read again
    last_read = [[-1] * sites for _ in range(steps)]
    for step, row in enumerate(actions):
        for site, action in enumerate(row):
            if (action is None) != bool(schedule.mask[step, site]):
                raise ScheduleError(f"predictor disagrees with the mask at step {step}, "
                                    f"site {schedule.site_ids[site]}")
            for age, _ in action.terms if action is not None else ():
                if age > step:
                    raise ScheduleError(f"step {step} of site {schedule.site_ids[site]} reads a value from "
                                        f"{age} steps back, before the run started")
                last_read[step - age][site] = max(last_read[step - age][site], step)

    def kept_after(step: int) -> tuple[tuple[int, int], ...]:  # live into step + 1, as ages from it
        return tuple(sorted((site, step + 1 - k) for k in range(step + 1) for site in range(sites)
                            if last_read[k][site] > step))

    distinct: dict[StepPlan, int] = {}
    plan_of_step = []
    keep_in: tuple[tuple[int, int], ...] = ()
    for step in range(steps):
        keep_out = kept_after(step)
        plan = StepPlan(tuple(actions[step]), keep_in, keep_out, observe)
        plan_of_step.append(distinct.setdefault(plan, len(distinct)))
        keep_in = keep_out
    return RunPlan(tuple(distinct), tuple(plan_of_step))


def all_compute_plan(num_sites: int, *, observe: bool = False) -> RunPlan:
    """One plan, every site computed, nothing kept: the model without a schedule."""
    return RunPlan((StepPlan((None,) * num_sites, (), (), observe),), (0,))


__all__ = ["PLAIN", "Action", "Reuse", "RunPlan", "Term", "StepPlan", "all_compute_plan", "plan_run"]
