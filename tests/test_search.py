"""Budgeted search: budget guarantees, baselines inside the space, the objective, storage and workers."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

import gocopt
from gocopt.compiled import cache_model
from gocopt.errors import ScheduleError
from gocopt.sampling import DDIMSampler
from gocopt.schedule.named import interval_mask
from gocopt.search import Candidate, SpaceContext, build_mask, check_budget, fill_to_budget
from gocopt.search.path import measure_edges

ROOT = Path(__file__).parent.parent


def _ctx(steps=20, sites=8, seed=0) -> SpaceContext:
    rng = np.random.default_rng(seed)
    flops = rng.integers(1, 5, sites).astype(float)
    error = rng.uniform(0.01, 1.0, (steps, sites))
    error[0] = np.nan
    edges = measure_edges(lambda row: float(np.sum(np.flatnonzero(~row) ** 2)), steps, max_gap=steps)
    trajectories = np.cumsum(rng.normal(size=(sites, steps, 6)), axis=1)  # (sites, steps, features)
    gram = np.einsum("isf,itf->ist", trajectories, trajectories)
    return SpaceContext(steps, flops, np.arange(sites) // 2, np.arange(sites) % 2 == 1, error, (17,), gram=gram,
                        edges=edges)


@pytest.mark.parametrize("budget", [0.05, 0.25, 0.33, 0.5, 0.75, 1.0])
@pytest.mark.parametrize("family", ["greedy", "interval", "l2c", "path", "prior-path", "forecast-path"])
def test_every_candidate_meets_the_budget_within_one_site_step(budget, family):
    ctx = _ctx()
    unit = ctx.site_flops / (ctx.steps * ctx.site_flops.sum())
    for seed in range(5):
        rng = np.random.default_rng(seed)
        candidate = Candidate(family=family, alpha=rng.uniform(0, 2), step_bias=rng.uniform(-3, 3),
                              depth_bias=rng.uniform(-3, 3), max_run=int(rng.integers(1, 5)),
                              path_share=rng.uniform(0.5, 1), path_tilt=rng.uniform(-0.3, 0.3))
        mask = build_mask(candidate, ctx, budget)
        cost = float((mask * unit).sum())
        assert mask[0].all()
        assert cost <= budget + 1e-12
        assert cost > budget - unit.max() - 1e-12


@pytest.mark.parametrize("steps", [20, 50])
def test_calibrated_paths_compute_the_whole_model_where_calibration_places_it(steps):
    """The extra families put every site's computes on one path placed from calibration alone: CEM's
    rule (first and last step, near-even gaps, least reuse prior), widened only where it reaches no
    path, and DPCache's (least first-order forecast error); the rest of the budget is spent after."""
    from gocopt.search.calibrated_path import (
        least_forecast_path,
        least_prior_path,
        least_prior_path_within,
        reuse_prior,
        taylor_forecast_errors,
    )

    ctx = _ctx(steps=steps)
    prior = reuse_prior(ctx.gram)
    assert least_prior_path_within(prior, 1) == [0]
    for computes in range(2, steps + 1):
        path = least_prior_path_within(prior, computes)
        assert len(path) == computes and path[0] == 0 and path[-1] == steps - 1
        try:
            expected = least_prior_path(prior, computes)  # CEM's own rule, wherever it reaches a path
        except ScheduleError:  # e.g. 20 steps, 3 computes: gaps of 6..8 cannot span 19 steps
            continue
        assert path == expected
    with pytest.raises(ScheduleError, match="reaches step 19"):
        least_prior_path(reuse_prior(_ctx(steps=20).gram), 3)
    budget = 0.25
    computes = int(budget * steps)
    for family, path in (("prior-path", least_prior_path_within(prior, computes)),
                         ("forecast-path", least_forecast_path(taylor_forecast_errors(ctx.gram, steps), computes,
                                                               steps))):
        mask = build_mask(Candidate(family=family, alpha=0.0, predictor="shared"), ctx, budget)
        assert np.flatnonzero(mask.all(axis=1)).tolist() == path
    without = dataclasses.replace(ctx, gram=None)
    with pytest.raises(ScheduleError, match="prior-path family needs calibration's Gram matrices"):
        build_mask(Candidate(family="prior-path"), without, budget)


def test_max_run_is_respected_when_the_budget_allows():
    """The fill honours max_run; the graph limit may merge rows into longer runs (it has the last word,
    as the budget does), so this checks the fill on its own."""
    ctx = dataclasses.replace(_ctx(steps=20, sites=6), max_graphs=None)
    # any maximal set of non-adjacent reuses among steps 1..19 has >= 7 of them: cost <= 13/20 < 0.7
    mask = build_mask(Candidate(max_run=1), ctx, 0.7)
    reused = ~mask
    assert not (reused[1:] & reused[:-1]).any()  # never two reuses in a row


def test_named_baselines_are_points_of_the_space():
    ctx = _ctx(steps=20, sites=6)
    fora = build_mask(Candidate(family="interval", alpha=0.0), ctx, 0.5)
    assert (fora == interval_mask(20, 6, 2)).all()


@pytest.mark.parametrize("budget,steps,message", [
    (0.0, 20, "in \\(0, 1\\]"), (1.5, 20, "in \\(0, 1\\]"), (0.04, 20, "cost of step 0 alone"), (0.5, 1, "at least 2"),
])
def test_impossible_requests_are_refused(budget, steps, message, tiny_model):
    with pytest.raises(ScheduleError, match=message):
        check_budget(budget, steps)
    if steps >= 2:
        with pytest.raises(ScheduleError, match=message):
            gocopt.compile(tiny_model, budget, sampler=gocopt.default_sampler(steps), effort=gocopt.Effort(trials=1))


def test_fill_to_budget_from_a_too_expensive_start():
    flops = np.ones(4)
    scores = np.arange(40, dtype=float).reshape(10, 4)
    mask = fill_to_budget(np.ones((10, 4), bool), scores, flops, 0.5, max_run=10)
    assert mask.mean() == 0.5 and mask[0].all()


_WORKER = """
import sys
sys.path.insert(0, {tests!r})
import gocopt
from gocopt.models import model_by_name
from quick import QUICK
from dataclasses import replace
run = gocopt.join_study if {join} else gocopt.compile
run(model_by_name("DiT-Tiny", seed=0), 0.5, sampler=gocopt.default_sampler(8), progress=False,
    effort=replace(QUICK, trials={trials}, search_samples=8, heldout_samples=4),
    study=gocopt.StudyConfig(storage={storage!r}, name="shared"))
"""


def _worker(storage: str, trials: int, join: bool = False) -> subprocess.Popen:
    code = _WORKER.format(tests=str(ROOT / "tests"), trials=trials, storage=storage, join=join)
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)


@pytest.mark.slow
def test_two_workers_share_one_study_without_lost_or_duplicated_trials(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    workers = [_worker(storage, 10, join) for join in (False, True)]
    assert all(w.wait(timeout=600) == 0 for w in workers)
    study = optuna.load_study(study_name="shared-b0.5", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 10  # a trial starts only while fewer are complete or running ahead of it
    assert len({t.number for t in study.trials}) == len(study.trials)


@pytest.mark.slow
def test_two_workers_on_a_journal_file(tmp_path):
    storage = str(tmp_path / "study.log")
    workers = [_worker(storage, 6, join) for join in (False, True)]
    assert all(w.wait(timeout=600) == 0 for w in workers)
    from gocopt.search.storage import get_storage

    study = optuna.load_study(study_name="shared-b0.5", storage=get_storage(storage))
    assert len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]) == 6


def test_a_stopped_study_resumes(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    assert _worker(storage, 4).wait(timeout=600) == 0
    assert _worker(storage, 7).wait(timeout=600) == 0
    study = optuna.load_study(study_name="shared-b0.5", storage=storage)
    assert len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]) == 7


def test_objective_runs_with_a_fixed_trial(tiny_model):
    import torch

    from gocopt.calibrate import calibrate
    from gocopt.sampling import initial_noise
    from gocopt.search import ScheduleObjective, SearchSet

    compiled = cache_model(tiny_model)
    sampler = DDIMSampler(steps=8, guidance_scale=4.0)
    labels, noise = torch.arange(4), initial_noise(range(4), (1, 8, 8))
    calibration = calibrate(compiled, sampler, labels, noise, num_classes=10)
    ctx = SpaceContext(8, np.asarray(compiled.site_flops, float), compiled.sites["block"].to_numpy(),
                       compiled.sites["kind"].eq("mlp").to_numpy(), calibration.matrix("rel_change").numpy())
    objective = ScheduleObjective(compiled, sampler, ctx, 0.5, SearchSet(labels, noise, calibration.samples), 10)
    params = Candidate(w_attn=0.5, w_mlp=0.5, max_run=2).as_params()
    value = objective(optuna.trial.FixedTrial(params))
    assert 10 < value <= 100  # a random tiny model saturates its clipped samples: cached ≈ uncached
    run = compiled.runtime.last_run
    assert run.reused > 0 and run.corrected > 0  # the trial really reused and corrected


def test_path_family_with_a_fitted_predictor_on_measured_spans(tiny_model):
    """Spans measured end to end on the model (resumed from uncached latents), a path through them,
    coefficients fitted to the resulting mask: one trial of the search's new family."""
    import torch

    from gocopt.calibrate import calibrate
    from gocopt.sampling import initial_noise
    from gocopt.schedule.predictors import Fitted
    from gocopt.search import ScheduleObjective, SearchSet
    from gocopt.search.spans import measure_spans

    compiled = cache_model(tiny_model)
    sampler = DDIMSampler(steps=8, guidance_scale=4.0)
    labels, noise = torch.arange(4), initial_noise(range(4), (1, 8, 8))
    calibration = calibrate(compiled, sampler, labels, noise, num_classes=10)
    spans = measure_spans(compiled, sampler, labels[:2], noise[:2], calibration.samples[:2], max_gap=4,
                          gram=calibration.gram, num_classes=10)
    assert compiled.schedule is None  # the model's own schedule is restored
    assert set(spans.error) == {(c, d) for c in range(8) for d in range(c + 2, min(8, c + 4) + 1)}
    assert all(e >= 0 for e in spans.error.values()) and max(spans.error.values()) > 0
    ctx = SpaceContext(8, np.asarray(compiled.site_flops, float), compiled.sites["block"].to_numpy(),
                       compiled.sites["kind"].eq("mlp").to_numpy(), calibration.matrix("rel_change").numpy(),
                       gram=calibration.gram, edges=spans)
    objective = ScheduleObjective(compiled, sampler, ctx, 0.5, SearchSet(labels, noise, calibration.samples), 10)
    candidate = Candidate(family="path", predictor="fitted3", path_share=0.8, path_tilt=0.2)
    schedule = objective.schedule(candidate)
    assert isinstance(schedule.predictor, Fitted) and schedule.cost(compiled.site_flops) <= 0.5 + 1e-9
    assert objective(optuna.trial.FixedTrial(candidate.as_params())) > 10


def test_spans_of_one_site_group_leave_the_others_computed(tiny_model):
    """``sites=`` reuses only those columns over a span: with none, every span is the uncached run
    (error exactly 0, all-compute is bit-exact); with the attention sites, errors appear."""
    import torch

    from gocopt.calibrate import calibrate
    from gocopt.sampling import initial_noise
    from gocopt.search.spans import measure_spans

    compiled = cache_model(tiny_model)
    sampler = DDIMSampler(steps=6, guidance_scale=4.0)
    labels, noise = torch.arange(2), initial_noise(range(2), (1, 8, 8))
    calibration = calibrate(compiled, sampler, labels, noise, num_classes=10)
    attention = np.flatnonzero(compiled.sites["kind"].ne("mlp").to_numpy()).tolist()
    options = {"max_gap": 3, "gram": calibration.gram, "num_classes": 10}
    nothing = measure_spans(compiled, sampler, labels, noise, calibration.samples, sites=[], **options)
    assert set(nothing.error.values()) == {0.0}
    only_attention = measure_spans(compiled, sampler, labels, noise, calibration.samples, sites=attention, **options)
    assert set(only_attention.error) == set(nothing.error) and max(only_attention.error.values()) > 0


def test_group_paths_weigh_each_group_by_its_own_table():
    """Given a table per group, attention sites follow the first table's least-error path and
    MLP sites the second's; without, both follow the shared one."""
    from dataclasses import replace

    from gocopt.search.path import EdgeTable
    from gocopt.search.space import group_paths

    steps = 8
    spans = [(c, d) for c in range(steps) for d in range(c + 2, min(steps, c + 4) + 1)]
    early = EdgeTable(steps, 4, {(c, d): 1.0 if c < 4 else 10.0 for c, d in spans})  # reuse early: cheap
    late = EdgeTable(steps, 4, {(c, d): 10.0 if c < 4 else 1.0 for c, d in spans})
    ctx = replace(_ctx(steps=steps), edges=early)
    candidate = Candidate(family="path", path_share=1.0)
    shared = group_paths(candidate, ctx, 0.5)
    grouped = group_paths(candidate, ctx, 0.5, (early, late))
    attention, mlp = ~ctx.site_is_mlp, ctx.site_is_mlp
    assert (grouped[:, attention] == shared[:, attention]).all()
    assert (shared[:, mlp] == shared[:, attention][:, :1]).all()  # one table: one path for both groups
    assert not (grouped[:, mlp] == grouped[:, attention][:, :1]).all()  # its own table: another path
