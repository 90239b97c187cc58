"""The peers of the head-to-head benchmark, and its --quick mode end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import OneSiteModel, site_run

from benchmarks.peers.first_block_cache import FirstBlockCache
from benchmarks.peers.smoothcache import smoothcache_mask, threshold_mask
from benchmarks.peers.taylorseer import taylorseer_mask
from gocopt.compiled import cache_model
from gocopt.sampling import DDIMSampler, initial_noise
from gocopt.schedule import Schedule
from gocopt.schedule.predictors import Taylor


def test_taylorseer_extrapolates_from_the_last_two_computed_values():
    """Computed 1 at step 0 and 3 at step 2: step 1 plain (one value), step 3 → 3 + 1·(3−1)/2 = 4, step 4 → 5."""
    compiled = cache_model(OneSiteModel(), None, (torch.zeros(1, 1, dtype=torch.float64), torch.tensor([4])))
    mask = np.array([[True], [False], [True], [False], [False]])
    compiled.set_schedule(Schedule(mask, ("blocks.0.attn",), None, Taylor(1), "taylor"))
    used, _ = site_run(compiled, [1.0, 0.0, 3.0, 0.0, 0.0], (4, 3, 2, 1, 0))
    assert used == pytest.approx([1.0, 1.0, 3.0, 4.0, 5.0])


@pytest.mark.parametrize("steps", [20, 50])
@pytest.mark.parametrize("budget", [0.25, 0.35, 0.5, 0.75])
def test_taylorseer_shape_warms_up_then_computes_every_n_within_the_budget(steps, budget):
    row = taylorseer_mask(steps, 3, budget)[:, 0]
    computed = np.flatnonzero(row)
    assert row[:2].all() and row.mean() <= budget and row.mean() > budget - 2 / steps
    gaps = np.diff(computed[computed >= np.argmin(row) - 1])
    assert len(set(gaps.tolist())) == 1  # after the warm-up: one compute every N steps


def test_smoothcache_threshold_accumulates_and_meets_the_budget():
    change = np.array([[np.nan, np.nan], [0.1, 0.5], [0.1, 0.5], [0.1, 0.5]])
    # alpha 0.25: site 0 accumulates 0.1, 0.2, 0.3 → computes at step 3; site 1 always over
    assert threshold_mask(change, 0.25).tolist() == [[True, True], [False, True], [False, True], [True, True]]
    rng = np.random.default_rng(0)
    change = rng.uniform(0.01, 0.3, size=(20, 8))
    flops = rng.uniform(1, 3, size=8)
    previous = 1.0
    for budget in (0.75, 0.5, 0.25):
        mask = smoothcache_mask(change, flops, budget)
        cost = float((mask * flops).sum() / (20 * flops.sum()))
        assert mask[0].all() and cost <= budget and cost <= previous
        previous = cost


def test_first_block_cache_threshold_zero_recomputes_and_decisions_are_per_sample(tiny_model):
    sampler = DDIMSampler(steps=8, guidance_scale=2.0)
    labels = torch.arange(4)
    noise = initial_noise(range(4), (tiny_model.in_channels, tiny_model.input_size, tiny_model.input_size))
    uncached = sampler.sample(tiny_model, labels, noise, num_classes=tiny_model.num_classes)
    fbc = FirstBlockCache(tiny_model, threshold=0.0)
    recomputed = sampler.sample(fbc, labels, noise, num_classes=tiny_model.num_classes)
    torch.testing.assert_close(recomputed, uncached, rtol=1e-5, atol=1e-5)
    assert fbc.cost() == 1.0
    fbc.threshold = 0.5  # on this random model: samples skip 2 or 3 of 8 steps
    fbc.reset()
    batched = sampler.sample(fbc, labels, noise, num_classes=tiny_model.num_classes)
    steps_per_sample = fbc.full_steps.clone()
    assert 1 < int(steps_per_sample.min()) < 8 and len(set(steps_per_sample.tolist())) > 1  # decisions differ
    alone = []
    for i in range(4):
        fbc.reset()
        alone.append(sampler.sample(fbc, labels[i : i + 1], noise[i : i + 1], num_classes=tiny_model.num_classes))
        assert int(fbc.full_steps[0]) == int(steps_per_sample[i])
    torch.testing.assert_close(batched, torch.cat(alone), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_quick_benchmark_writes_tables_plot_and_json(tmp_path):
    from benchmarks.head_to_head import main

    out = tmp_path / "h2h"
    main(["--quick", "--out", str(out)])
    results = json.loads(out.with_suffix(".json").read_text())
    rows = results["quality_rows"]
    methods = {r["method"] for r in rows}
    assert methods == {"uncached", "fora", "fora_goc_paper", "l2c", "smoothcache", "first_block_cache", "taylorseer",
                       "taylorseer2", "lemica", "gocopt"}
    assert results["verdicts"][0]["margin_db"] is not None and results["command"].endswith("--quick --out " + str(out))
    for r in rows:
        if r["method"] not in ("uncached", "first_block_cache"):  # static schedules: cost within the budget
            assert r["cost"] <= r["budget"] + 1e-9, r
        assert r["speedup"] > 0 and r["samples"] == 48
    assert {r["model"] for r in results["speed_rows"]} == {"DiT-S/2"}
    assert out.with_suffix(".png").stat().st_size > 10_000
    text = out.with_suffix(".md").read_text()
    assert "gocopt compile (searched mask + predictor)" in text and "DDIM-10" in text and "| DiT-S/2 | 1 |" in text


@pytest.mark.slow
def test_quick_diffusers_comparison_measures_every_cache(tmp_path):
    pytest.importorskip("transformers")
    from benchmarks.diffusers_caches import main

    out = tmp_path / "dc"
    main(["--quick", "--out", str(out)])
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    by_method = {r["method"]: r for r in rows}
    assert set(by_method) == {"uncached DiTPipeline", "gocopt compile", "diffusers FirstBlockCache",
                              "diffusers PyramidAttentionBroadcast", "diffusers TaylorSeerCache", "diffusers MagCache"}
    assert by_method["gocopt compile"]["cost"] <= 0.53  # site FLOPs ≤ 0.5; the rest of the transformer is measured too
    for row in rows[1:]:
        assert 0 < row["cost"] < 1.0, row  # every cache really skipped work (measured FLOPs)


@pytest.mark.slow
def test_quick_gpu_speed_times_every_row_within_its_budget(tmp_path):
    from benchmarks.gpu_speed import BUDGETS, main

    out = tmp_path / "gpu"
    main(["--quick", "--out", str(out)])
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    kinds = {(r["method"], r["execution"], r["budget"]) for r in rows}
    expected = {("uncached", "eager", 1.0), ("uncached", "compiled", 1.0)}
    expected |= {("gocopt interval", execution, b) for execution in ("eager", "compiled") for b in BUDGETS}
    expected |= {("gocopt fitted", execution, b) for execution in ("eager", "compiled") for b in BUDGETS if b < 1}
    assert kinds == expected
    assert all(r["graphs"] <= 6 for r in rows)
    for r in rows:
        assert r["cost"] <= r["budget"] + 1e-9 and r["best_s"] > 0 and r["best_s"] <= r["median_s"]
        assert r["speedup_vs_uncached_eager"] > 0 and r["speedup_vs_uncached_compiled"] > 0
    assert "vs compiled" in out.with_suffix(".md").read_text()


@pytest.mark.slow
def test_span_table_ablation_scores_both_masks_within_the_budget(tmp_path):
    from benchmarks.span_tables import main

    out = tmp_path / "spans"
    main(["--steps", "8", "--budgets", "0.5", "--samples", "8", "--schedules", str(tmp_path), "--out", str(out)])
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [r["candidate"] for r in rows] == ["path, fitted K=3"]  # no committed schedule for DDIM-8
    for r in rows:
        assert max(r["cost"], r["group_cost"]) <= r["budget"] + 1e-9
        assert r["difference"] == pytest.approx(r["group_psnr"] - r["shared_psnr"])
        assert r["group_span_seconds"] > 0 and r["shared_span_seconds"] > 0
    assert "per-group spans" in out.with_suffix(".md").read_text()
