"""The search's graph budget: every schedule it can return has few step graphs, at cost ≤ budget."""

from __future__ import annotations

import dataclasses

import numpy as np
import optuna
import pytest

from gocopt.errors import ScheduleError
from gocopt.schedule import Schedule
from gocopt.schedule.fit import fit_predictor
from gocopt.schedule.plan import distinct_graphs, plan_run
from gocopt.search import DEFAULT_MAX_GRAPHS, SpaceContext, build_mask, limit_graphs, suggest
from gocopt.search.path import measure_edges
from gocopt.search.space import build_predictor


def _ctx(steps: int, sites: int = 24, seed: int = 0, max_graphs: int | None = DEFAULT_MAX_GRAPHS) -> SpaceContext:
    """Reference-model-like sites (attention and MLP of 12 blocks, uneven FLOPs), random statistics."""
    rng = np.random.default_rng(seed)
    flops = np.where(np.arange(sites) % 2 == 1, 2.0, 1.0) * rng.uniform(0.8, 1.2, sites)
    error = rng.uniform(0.01, 1.0, (steps, sites))
    error[0] = np.nan
    edges = measure_edges(lambda row: float(np.sum((np.flatnonzero(~row) / steps) ** 2 * rng.uniform(0.5, 1.5))),
                          steps, max_gap=min(steps, 12))
    x = rng.standard_normal((sites, steps, 64)).cumsum(axis=1)
    gram = np.einsum("isk,itk->ist", x, x)
    return SpaceContext(steps, flops, np.arange(sites) // 2, np.arange(sites) % 2 == 1, error, (steps - 3,), gram,
                        edges, max_graphs)


@pytest.mark.parametrize("steps", [20, 50])
@pytest.mark.parametrize("max_graphs", [DEFAULT_MAX_GRAPHS, 10])
def test_random_candidates_of_the_search_space_have_few_graphs(steps, max_graphs):
    """Any candidate Optuna can suggest, at every budget: ≤ max_graphs step graphs as the runtime
    plans them (fitted predictors included), cost ≤ budget and within one site-step of it."""
    ctx = _ctx(steps, max_graphs=max_graphs)
    unit = ctx.site_flops / (steps * ctx.site_flops.sum())
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=steps + max_graphs))
    ids = tuple(f"s{i}" for i in range(len(ctx.site_flops)))
    worst = 0
    for _ in range(30):
        trial = study.ask()
        candidate = suggest(trial)
        for budget in (0.25, 0.35, 0.5, 0.75):
            mask = build_mask(candidate, ctx, budget)
            cost = float((mask * unit).sum())
            assert cost <= budget + 1e-12 and budget - cost < unit.max() + 1e-12, (candidate, budget, cost)
            plans = plan_run(Schedule(mask, ids, None, build_predictor(candidate, ctx, mask))).plans
            assert len(plans) <= max_graphs, (candidate, budget)
            worst = max(worst, len(plans))
        study.tell(trial, 0.0)
    assert worst >= 3  # the limit binds on some candidates: the test sees real masks, not trivial ones


def test_without_a_limit_the_fill_makes_a_row_per_step():
    """Why the limit exists: filled site by site, masks have nearly one distinct row per step."""
    ctx = dataclasses.replace(_ctx(50), max_graphs=None)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    counts = [distinct_graphs(build_mask(suggest(study.ask()), ctx, 0.5)) for _ in range(10)]
    assert max(counts) > 20


def test_limit_graphs_keeps_what_the_scores_value_most():
    """Three rows that differ in one cheap, worthless site each: merged away first; the valuable
    site survives, the cost never grows."""
    steps, sites = 7, 4
    mask = np.zeros((steps, sites), dtype=bool)
    mask[0] = True
    mask[1:, 0] = True  # site 0 computed everywhere: the valuable one
    mask[2, 3] = mask[4, 2] = mask[6, 1] = True
    scores = np.full((steps, sites), -5.0)
    scores[:, 0] = 5.0
    flops = np.ones(sites)
    unit = flops / (steps * sites)
    budget = float((mask * unit).sum())
    out = limit_graphs(mask, scores, flops, budget, 3)
    assert distinct_graphs(out) <= 3 and out[1:, 0].all() and out[0].all()
    assert float((out * unit).sum()) <= budget + 1e-12
    assert limit_graphs(out, scores, flops, budget, 3) is out  # already within the limit: unchanged


def test_a_graph_budget_below_two_is_refused():
    with pytest.raises(ScheduleError, match="max_graphs >= 2"):
        limit_graphs(np.ones((4, 2), bool), np.zeros((4, 2)), np.ones(2), 1.0, 1)


def test_the_fitted_predictor_fits_the_limited_mask():
    """The limit runs before the fit: coefficients exist exactly for the reused pairs of the final mask."""
    ctx = _ctx(20)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    mask = build_mask(suggest(study.ask()), ctx, 0.35)
    predictor = fit_predictor(mask, ctx.gram, 3)
    assert set(predictor.terms) == {(int(s), int(i)) for s, i in zip(*np.nonzero(~mask))}
