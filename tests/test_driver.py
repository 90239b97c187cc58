"""The compile driver end to end: calibrate → search → score → stamp, on the tiny DiT."""

from __future__ import annotations

import gocopt
from gocopt.sampling import DDIMSampler


def _compile_tiny(tiny_model, **kw):
    return gocopt.compile(tiny_model, kw.pop("budget", 0.5), steps=8, trials=kw.pop("trials", 8), search_samples=8,
                          heldout_samples=8, progress=False, **kw)


def test_compile_returns_a_saveable_model_within_budget(tiny_model, tmp_path):
    compiled = _compile_tiny(tiny_model)
    schedule = compiled.schedule
    assert schedule.cost(compiled.site_flops) <= 0.5
    assert schedule.provenance["search"]["trials"] == 8
    quality = schedule.provenance["quality"]
    assert {"heldout", "search", "baselines"} <= set(quality)
    assert set(quality["baselines"]) == {"fora_goc_paper", "l2c"}
    compiled.save(tmp_path / "s.json")
    reloaded = gocopt.load(tiny_model, tmp_path / "s.json", sampler=DDIMSampler(steps=8, guidance_scale=4.0))
    assert (reloaded.schedule.mask == schedule.mask).all()


def test_compile_is_deterministic_for_a_seed(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    for name in ("a", "b"):
        _compile_tiny(tiny_model, seed=3).save(tmp_path / f"{name}.json")
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()


def test_multi_budget_compile_gives_one_model_per_budget(tiny_model):
    results = _compile_tiny(tiny_model, budget=[0.3, 0.6], trials=4)
    assert [r.schedule.budget for r in results] == [0.3, 0.6]
    assert all(r.schedule.cost(r.site_flops) <= r.schedule.budget for r in results)
