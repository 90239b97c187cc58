"""The compile driver end to end: calibrate → search → score → stamp, on the tiny DiT."""

from __future__ import annotations

from dataclasses import replace

import pytest
from quick import QUICK, SURROGATE_TRIALS

import gocopt
from gocopt.errors import ScheduleError
from gocopt.sampling import DDIMSampler
from gocopt.search.effort import Effort


def _compile_tiny(tiny_model, budget=0.5, effort=QUICK, trials=8):
    return gocopt.compile(tiny_model, budget, sampler=gocopt.default_sampler(8), progress=False,
                          effort=replace(effort, trials=trials, search_samples=8, heldout_samples=8))


def test_compile_returns_a_saveable_model_within_budget(tiny_model, tmp_path):
    compiled = _compile_tiny(tiny_model, effort=Effort(baselines=True, surrogate_trials=SURROGATE_TRIALS))
    schedule = compiled.schedule
    assert schedule.cost(compiled.site_flops) <= 0.5
    assert schedule.provenance["search"]["trials"] == 8
    quality = schedule.provenance["quality"]
    assert {"heldout", "search", "baselines"} <= set(quality)
    assert set(quality["baselines"]) == {"fora_goc_paper", "l2c"}
    compiled.save(tmp_path / "s.json")
    reloaded = gocopt.load(tiny_model, tmp_path / "s.json",  # compile's default sampler: DiT's, no clipping
                           sampler=DDIMSampler(steps=8, guidance_scale=4.0, clip_denoised=False))
    assert (reloaded.schedule.mask == schedule.mask).all()


def test_compile_is_deterministic_for_a_seed(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    for name in ("a", "b"):
        _compile_tiny(tiny_model, effort=replace(QUICK, seed=3)).save(tmp_path / f"{name}.json")
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()


def test_multi_budget_compile_gives_one_model_per_budget(tiny_model):
    results = _compile_tiny(tiny_model, budget=[0.3, 0.6], trials=4)
    assert isinstance(results, gocopt.CompiledBudgets) and results.budgets == (0.3, 0.6)
    assert results.at(0.6) is results[1]
    with pytest.raises(gocopt.ArgumentError, match="no schedule was compiled for budget 0.5; compiled: 0.3, 0.6"):
        results.at(0.5)
    work = [r.schedule.provenance["work"] for r in results]  # one compile, one record of what it spent
    assert work[0] == work[1] and work[0]["budgets"] == [0.3, 0.6] and work[0]["total"]["sample_equivalents"] > 0
    assert all(r.schedule.cost(r.site_flops) <= r.schedule.budget for r in results)


class _CountingDDIM(DDIMSampler):
    """DDIM that counts, where it calls the model, the images each evaluation denoises."""

    image_steps = 0

    def _guided_eps(self, model, x, t, labels, null):
        type(self).image_steps += x.shape[0]
        return super()._guided_eps(model, x, t, labels, null)


def test_the_recorded_cost_is_the_model_work_actually_done(tiny_model, tmp_path):
    """Every model call a compile makes — held-out, calibration, spans, trials, scoring; uncached,
    traced or step graph — is counted where the sampler makes it; the schedule's record equals that
    count, plus the tracing phase (the traced model run on its example batch); and the plan made
    before any of it said exactly that, phase by phase."""
    _CountingDDIM.image_steps = 0
    compiled = gocopt.compile(tiny_model, 0.4, sampler=_CountingDDIM(steps=8, guidance_scale=4.0), progress=False,
                              effort=Effort(baselines=True, surrogate_trials=SURROGATE_TRIALS, trials=3,
                                            search_samples=8, heldout_samples=8))
    work = compiled.schedule.provenance["work"]
    tracing = work["phases"]["tracing"]
    assert work["total"]["image_steps"] - tracing["image_steps"] == _CountingDDIM.image_steps
    assert tracing["model_calls"] <= 2 and tracing["image_steps"] <= 4  # the example batch, once or twice
    assert work["total"]["sample_equivalents"] == work["total"]["image_steps"] / 8
    assert set(work["phases"]) == {"tracing", "held-out scoring", "calibration", "spans", "search trials"}
    assert work["phases"]["held-out scoring"]["image_steps"] == 8 * 8 * (1 + 3)  # uncached, then 3 schedules
    assert sum(p["model_calls"] for p in work["phases"].values()) == work["total"]["model_calls"]
    for phase, planned in work["planned"].items():  # tracing is planned at its most (2 image-steps)
        spent = work["phases"][phase]["sample_equivalents"]
        assert spent <= planned + 1e-9 if phase == "tracing" else spent == pytest.approx(planned, abs=1e-3), phase
    compiled.save(tmp_path / "s.json")
    assert gocopt.load(tiny_model, tmp_path / "s.json").schedule.provenance["work"]["total"] == work["total"]


def test_a_default_compile_spends_at_most_its_cap_and_what_it_planned(tiny_model):
    """No trials given: the search runs what the default cap (100 for one budget) pays for, and the
    meter agrees with the plan."""
    compiled = gocopt.compile(tiny_model, 0.4, sampler=gocopt.default_sampler(8), effort=QUICK, progress=False)
    work = compiled.schedule.provenance["work"]
    assert work["max_samples"] == 100
    assert work["total"]["sample_equivalents"] <= 100
    assert work["total"]["sample_equivalents"] <= sum(work["planned"].values()) + 1e-9
    assert compiled.schedule.provenance["search"]["trials"] >= 2


def test_an_impossible_cap_is_refused_before_any_work_with_the_least_that_works(tiny_model):
    calls = []
    hook = tiny_model.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(ScheduleError, match=r"max_samples=20 cannot pay.*use max_samples >= (\d+)") as info:
            gocopt.compile(tiny_model, 0.4, sampler=gocopt.default_sampler(8), effort=replace(QUICK, max_samples=20),
                           progress=False)
    finally:
        hook.remove()
    assert not calls  # refused before tracing, calibration or any sample
    least = int(info.value.args[0].split("max_samples >= ")[1].split(",")[0])
    compiled = gocopt.compile(tiny_model, 0.4, sampler=gocopt.default_sampler(8),
                              effort=replace(QUICK, max_samples=least), progress=False)
    assert compiled.schedule.provenance["work"]["total"]["sample_equivalents"] <= least
    assert compiled.schedule.provenance["search"]["trials"] == 2
