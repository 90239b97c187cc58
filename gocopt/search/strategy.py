"""The search's strategy, in one place: what is tried first, what is always tried, who proposes the rest.

A compile samples few trials (two at the default cap on DDIM-20), so *which* candidates get them
decides the schedule. The order, per budget:

1. the model-free surrogate (:mod:`gocopt.search.surrogate`) ranks ``Effort.surrogate_trials``
   candidates at no model cost, against calibration's Gram matrices and step weights fitted to the
   span table, and its best distinct schedules take the first trials;
2. the ``Effort.always_sample`` candidates (``ALWAYS_SAMPLED``) take places among them whatever the
   surrogate says: its blind spots, where only sampling can tell (the surrogate measures error on
   the uncached trajectory, so it cannot see a forecast that compounds its own errors);
3. without a surrogate (``surrogate_trials=0``) the study starts from ``SEED_CANDIDATES``;
4. the Optuna sampler (``StudyConfig.optuna_sampler``, TPE by default) proposes every later trial.

The driver calls :func:`step_weights` once per compile and :func:`search_budget` once per budget.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gocopt.search.effort import Effort, WorkPlan
from gocopt.search.objective import ScheduleObjective
from gocopt.search.path import EdgeTable
from gocopt.search.space import FAMILIES, PREDICTORS, Candidate, SpaceContext
from gocopt.search.study import SEED_CANDIDATES, SearchResult, run_search
from gocopt.search.study_config import StudyConfig
from gocopt.search.surrogate import fit_step_weights, rank_candidates


def predictor_space(effort: Effort) -> tuple[str, ...]:
    """The predictors a trial may take: the suggested ones, and any extra one an always-sampled
    candidate names (its enqueued trial must lie in the space): the default effort's path with the
    shared whole-history forecast adds ``"shared"``, so the Optuna sampler may propose it too."""
    extra = tuple(dict.fromkeys(c.predictor for c in effort.always_candidates if c.predictor not in PREDICTORS))
    return PREDICTORS + extra


def family_space(effort: Effort) -> tuple[str, ...]:
    """The families a trial may take: the suggested ones, and any extra one an always-sampled
    candidate names (a path placed from calibration alone)."""
    extra = tuple(dict.fromkeys(c.family for c in effort.always_candidates if c.family not in FAMILIES))
    return FAMILIES + extra


def step_weights(plan: WorkPlan, edges: EdgeTable, gram: np.ndarray | None, num_sites: int) -> np.ndarray | None:
    """The surrogate's step weights, fitted to the span table; ``None`` where the effort asks for no
    surrogate or calibration kept no Gram matrices."""
    if not plan.effort.surrogate_trials or gram is None:
        return None
    return fit_step_weights(edges, gram, num_sites)


def search_budget(objective: ScheduleObjective, ctx: SpaceContext, plan: WorkPlan, weights: np.ndarray | None, *,
                  study: StudyConfig, study_name: str, group: str, metadata: dict[str, Any], progress: bool,
                  worker: int = 0) -> SearchResult:
    """Run (or join, with ``worker`` > 0) the study of one budget until it holds ``plan.trials``
    complete trials, its first trials planned as the module docstring says; return its best."""
    effort = plan.effort

    def first() -> list[Candidate]:  # called only by the process that creates the study
        assert ctx.gram is not None and weights is not None, "a surrogate needs calibration's Gram matrices"
        ranked = rank_candidates(objective.schedule, ctx.gram, weights, trials=effort.surrogate_trials,
                                 keep=plan.trials, seed=effort.seed, seeds=SEED_CANDIDATES,
                                 always=effort.always_candidates)
        return [candidate for candidate, _ in ranked]

    return run_search(objective, trials=plan.trials, seed=effort.seed, storage=study.storage, study_name=study_name,
                      progress=progress, metadata=metadata, heartbeat=study.heartbeat, worker=worker, group=group,
                      first=None if weights is None else first, optuna_sampler=study.optuna_sampler)


__all__ = ["family_space", "predictor_space", "search_budget", "step_weights"]
