"""The peers of the head-to-head benchmark, and its --quick mode end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import OneSiteModel, site_run

from benchmarks.peers.budcache import budcache_row
from benchmarks.peers.dpcache import dp_path, forecast_errors
from benchmarks.peers.first_block_cache import FirstBlockCache
from benchmarks.peers.l2p import l2p_predictor
from benchmarks.peers.lemica import lexicographic_minimax_path
from benchmarks.peers.smoothcache import smoothcache_mask, threshold_mask
from benchmarks.peers.taylorseer import TaylorSeerForecast, taylorseer_mask
from gocopt.compiled import cache_model
from gocopt.errors import ScheduleError
from gocopt.sampling import DDIMSampler, initial_noise
from gocopt.schedule import Schedule
from gocopt.schedule.predictors import Taylor
from gocopt.search.path import EdgeTable, best_path


def test_taylorseer_extrapolates_from_the_last_two_computed_values():
    """Computed 1 at step 0 and 3 at step 2: step 1 plain (one value), step 3 → 3 + 1·(3−1)/2 = 4, step 4 → 5."""
    compiled = cache_model(OneSiteModel(), None, (torch.zeros(1, 1, dtype=torch.float64), torch.tensor([4])))
    mask = np.array([[True], [False], [True], [False], [False]])
    compiled.set_schedule(Schedule(mask, ("blocks.0.attn",), None, Taylor(1), "taylor"))
    used, _ = site_run(compiled, [1.0, 0.0, 3.0, 0.0, 0.0], (4, 3, 2, 1, 0))
    assert used == pytest.approx([1.0, 1.0, 3.0, 4.0, 5.0])


def test_taylorseer_forecast_one_interval_ahead_is_its_truncated_series_not_the_polynomial():
    """FORA's mask, every 3rd step: one interval after the last compute (x = N) TaylorSeer's
    order 2 is F + N·f₁ + N²/2·f₂ with f₁ = ΔF/N, f₂ = Δ²F/N²: 2.5, −2, 0.5 (the interpolating
    polynomial would be 3, −3, 1); order 1 is 2, −1."""
    mask = np.array([1, 0, 0, 1, 0, 0, 1, 0, 0, 0], dtype=bool)[:, None]
    assert dict(TaylorSeerForecast(2, warmup=1).actions(mask)[9][0].terms) == pytest.approx({3: 2.5, 6: -2.0, 9: 0.5})
    assert dict(TaylorSeerForecast(1, warmup=1).actions(mask)[9][0].terms) == pytest.approx({3: 2.0, 6: -1.0})
    # before the second compute: plain reuse; before the third: order 1 only
    assert TaylorSeerForecast(2, warmup=1).actions(mask)[1][0].is_plain
    assert dict(TaylorSeerForecast(2, warmup=1).actions(mask)[4][0].terms) == pytest.approx({1: 4 / 3, 4: -1 / 3})


def test_taylorseer_forecast_after_its_warm_up_divides_by_the_latest_gap():
    """Warm-up 2 (steps 0, 1), then a compute at 4: f₁ = (F4 − F1)/3, f₂ = (f₁ − (F1 − F0))/3, so
    step 5 (x = 1) is F4 + f₁ + f₂/2 = 25/18·F4 − 5/9·F1 + 1/6·F0. Run through the step plans on a
    one-site model: the value each step used is that combination of the values it computed."""
    mask = np.array([1, 1, 0, 0, 1, 0], dtype=bool)[:, None]
    forecast = TaylorSeerForecast(2, warmup=2)
    assert dict(forecast.actions(mask)[5][0].terms) == pytest.approx({1: 25 / 18, 4: -5 / 9, 5: 1 / 6})
    compiled = cache_model(OneSiteModel(), None, (torch.zeros(1, 1, dtype=torch.float64), torch.tensor([5])))
    compiled.set_schedule(Schedule(mask, ("blocks.0.attn",), None, forecast, "taylorseer"))
    f0, f1, f4 = 1.0, 2.0, 7.0
    used, _ = site_run(compiled, [f0, f1, 0.0, 0.0, f4, 0.0], (5, 4, 3, 2, 1, 0))
    # step 2 and 3: order 1 from the warm-up pair (f₂ needs a third compute), x = 1 and 2
    assert used == pytest.approx([f0, f1, f1 + (f1 - f0), f1 + 2 * (f1 - f0), f4,
                                  25 / 18 * f4 - 5 / 9 * f1 + 1 / 6 * f0])


@pytest.mark.parametrize("steps", [20, 50])
@pytest.mark.parametrize("budget", [0.25, 0.35, 0.5, 0.75])
def test_taylorseer_shape_warms_up_then_computes_every_n_within_the_budget(steps, budget):
    row = taylorseer_mask(steps, 3, budget)[:, 0]
    computed = np.flatnonzero(row)
    assert row[:2].all() and row.mean() <= budget and row.mean() > budget - 2 / steps
    gaps = np.diff(computed[computed >= np.argmin(row) - 1])
    assert len(set(gaps.tolist())) == 1  # after the warm-up: one compute every N steps


def test_lemica_bounds_the_worst_span_where_the_sum_would_not():
    """5 steps, 3 computes, first and last always: [0, 1, 4] reuses 2–3 (error 5), [0, 2, 4] reuses
    1 and 3 (3 + 3), [0, 3, 4] reuses 1–2 (5.5). The least sum is [0, 1, 4]; LeMiCa's least worst
    span is [0, 2, 4]; a path that skips the last step is never LeMiCa's."""
    table = EdgeTable(5, 4, {(0, 2): 3.0, (2, 4): 3.0, (1, 4): 5.0, (0, 3): 5.5, (3, 5): 99.0, (1, 3): 99.0})
    assert lexicographic_minimax_path(table, 3) == [0, 2, 4]
    assert best_path(table, 3) == [0, 1, 4]
    with pytest.raises(ScheduleError, match="computes the first and the last step"):
        lexicographic_minimax_path(table, 1)


@pytest.mark.parametrize("seed", range(5))
def test_lemica_path_is_the_lexicographic_minimax_of_all_paths(seed):
    """Against brute force over every path from the first to the last step: errors sorted largest
    first, compared lexicographically."""
    import itertools

    rng = np.random.default_rng(seed)
    steps, max_gap, computes = 9, 4, 4
    spans = [(c, d) for c in range(steps) for d in range(c + 2, min(steps, c + max_gap) + 1)]
    table = EdgeTable(steps, max_gap, {span: float(rng.integers(1, 6)) for span in spans})  # many ties

    def key(path):
        return tuple(sorted((table.weight(c, d) for c, d in zip(path, path[1:])), reverse=True))

    paths = [[0, *rest, steps - 1] for rest in itertools.combinations(range(1, steps - 1), computes - 2)]
    least = min(key(p) for p in paths if np.isfinite(key(p)).all())
    found = lexicographic_minimax_path(table, computes)
    assert found[0] == 0 and found[-1] == steps - 1 and key(found) == least


def _gram(trajectories: np.ndarray) -> np.ndarray:
    """``(sites, steps, steps)`` inner products of ``(sites, steps, features)`` trajectories."""
    return np.einsum("isf,itf->ist", trajectories, trajectories)


def test_l2p_recovers_a_linear_law_shared_by_all_sites():
    """Every site follows v[3] = 2 v[2] − v[0] + 0.5 v[1]: L2P's weights for step 3 over the whole
    history (steps 0–2 computed) are exactly those, at every site, ages nearest first."""
    rng = np.random.default_rng(0)
    v = rng.normal(size=(3, 5, 40))  # 3 sites, 5 steps, 40 features
    v[:, 3] = 2 * v[:, 2] - v[:, 0] + 0.5 * v[:, 1]
    mask = np.array([1, 1, 1, 0, 1], dtype=bool)[:, None].repeat(3, axis=1)
    fitted = l2p_predictor(mask, _gram(v))
    for i in range(3):
        assert dict(fitted.terms[(3, i)]) == pytest.approx({1: 2.0, 2: 0.5, 3: -1.0}, abs=1e-6)


def test_l2p_weights_are_one_least_squares_fit_over_all_sites():
    """Where no law holds, the weights are the least-squares solution over every site's features
    stacked (not a per-site fit): checked against numpy's lstsq on the stacked data."""
    rng = np.random.default_rng(1)
    v = rng.normal(size=(2, 6, 30))
    mask = np.array([1, 0, 1, 0, 0, 1], dtype=bool)[:, None].repeat(2, axis=1)
    fitted = l2p_predictor(mask, _gram(v))
    for s in (3, 4):
        x = np.concatenate([v[i, [0, 2]].T for i in range(2)])  # features × (step 0, step 2)
        y = np.concatenate([v[i, s] for i in range(2)])
        a = np.linalg.lstsq(x, y, rcond=None)[0]
        assert dict(fitted.terms[(s, 1)]) == pytest.approx({s - 2: a[1], s: a[0]}, rel=1e-6)
        assert fitted.terms[(s, 0)] == fitted.terms[(s, 1)]
    assert dict(fitted.terms[(1, 0)]) == pytest.approx({1: float(v[:, 0].ravel() @ v[:, 1].ravel()
                                                                 / (v[:, 0].ravel() @ v[:, 0].ravel()))})


def test_l2p_schedule_is_its_own_at_50_steps_and_front_loaded_when_scaled():
    from benchmarks.peers.l2p import L2P_SCHEDULE_50, l2p_schedule

    assert np.flatnonzero(l2p_schedule(50, 11)).tolist() == list(L2P_SCHEDULE_50)
    row = l2p_schedule(20, 5)
    assert row.sum() == 5 and row[0] and np.flatnonzero(row).tolist() == sorted(np.flatnonzero(row).tolist())
    gaps = np.diff(np.flatnonzero(row))
    assert gaps[0] <= gaps[-1]  # front-loaded: early computes closer together
    assert l2p_schedule(20, 20).all()


def test_l2p_learns_a_linear_recurrence_of_the_outputs_one_step_ahead():
    """Outputs that follow o[s] = 1.6 o[s−1] − 0.6 o[s−2]: from plain reuse, Adam (lr 0.01, 201
    epochs, as its code) learns weights whose one-step-ahead forecast error is a small fraction of
    plain reuse's, and the wrapper runs them, forecast outputs feeding later forecasts."""
    from benchmarks.peers.l2p import L2PCache, l2p_weights

    rng = np.random.default_rng(0)
    o = np.zeros((8, 16, 6))
    o[0], o[1] = rng.normal(size=(2, 16, 6))
    for s in range(2, 8):
        o[s] = 1.6 * o[s - 1] - 0.6 * o[s - 2]
    outputs = torch.tensor(o)
    computed = np.array([1, 1, 1, 0, 1, 0, 1, 0], dtype=bool)
    weights = l2p_weights(outputs, computed)
    assert torch.equal(weights[computed], torch.zeros(int(computed.sum()), 8, dtype=torch.float64))
    assert (torch.triu(weights) == 0).all()  # lower-triangular: only earlier steps
    flat = outputs.reshape(8, -1)
    for s in (3, 5, 7):
        learned = (weights[s, :s] @ flat[:s] - flat[s]).norm()
        plain = (flat[s - 1] - flat[s]).norm()
        assert learned < 0.2 * plain, (s, float(learned), float(plain))

    class Replay(torch.nn.Module):  # a "model" that answers with the recorded output of the step it is told
        def __init__(self):
            super().__init__()
            self.step, self.called = 0, []

        def forward(self, x, t, y):
            self.called.append(self.step)
            return outputs[self.step][:2]

    model = Replay()
    cache = L2PCache(model, computed, weights)
    got = []
    for s in range(8):
        model.step = s
        got.append(cache(None, None, None))
    assert model.called == [0, 1, 2, 4, 6] and cache.cost() == pytest.approx(5 / 8)
    expected7 = (weights[7, :7, None, None] * torch.stack(got[:7])).sum(0)
    assert torch.allclose(got[7], expected7)  # a forecast from every earlier output, forecasts included


@pytest.mark.parametrize("seed", range(3))
def test_dpcache_path_is_the_least_taylorseer_error_of_all_paths(seed):
    """The path-aware DP against brute force: every path's error is TaylorSeer's order-1 forecast
    run on its mask (gocopt's surrogate computes it from the Gram), relative per site, summed."""
    import itertools

    from gocopt.search.surrogate import feature_errors

    rng = np.random.default_rng(seed)
    steps, sites, max_gap, computes = 8, 2, 4, 3
    walk = np.cumsum(rng.normal(size=(sites, steps, 12)), axis=1)  # features that drift step to step
    gram = _gram(walk)
    forecast = TaylorSeerForecast(1, warmup=1)

    def error(path):
        mask = np.zeros((steps, sites), dtype=bool)
        mask[list(path)] = True
        return float((feature_errors(mask, forecast, gram) / np.einsum("iss->si", gram)).sum())

    paths = [[0, *rest] for rest in itertools.combinations(range(1, steps), computes - 1)
             if max(np.diff([0, *rest, steps])) <= max_gap]
    found = dp_path(forecast_errors(gram, max_gap), computes, max_gap)
    assert error(found) == pytest.approx(min(error(p) for p in paths), rel=1e-9)


def test_budcache_keeps_its_number_of_computes_spends_at_most_its_runs_and_finds_the_best_mask():
    """A score with a known optimum (each skipped step costs its weight: the best mask computes the
    heaviest steps): found from BudCache's random start, never a run more than allowed, 4 computes kept."""
    weights = np.array([0, 5, 1, 9, 2, 2, 7, 1, 0.5, 3, 1, 0.2])
    calls = []

    def score(row):
        calls.append(row.copy())
        assert row[0] and row.sum() == 4
        return float(weights[~row].sum())

    best = budcache_row(score, 12, 4, evaluations=400, seed=0)
    assert np.flatnonzero(best).tolist() == [0, 1, 3, 6]
    assert len(calls) <= 400 and len({c.tobytes() for c in calls}) == len(calls)  # no mask run twice
    few = budcache_row(score, 12, 4, evaluations=3, seed=0)
    assert len(calls) <= 400 + 3 and few.sum() == 4


def test_budcache_starts_early_and_proposes_its_code_s_move_mix():
    """Its code: the first max(1, nfe // 4) steps computed at the start; 90 % single swaps (70 % of
    them within ±3 steps), 10 % double swaps; step 0 never moves."""
    from benchmarks.peers.budcache import budcache_start, propose

    rng = np.random.default_rng(0)
    start = budcache_start(50, 12, rng)
    assert start[:3].all() and start.sum() == 12
    sparse = np.zeros(50, dtype=bool)
    sparse[[0, 10, 20, 30, 40]] = True  # every computed step has free neighbours: the mix shows plainly
    moved = [propose(sparse, rng) for _ in range(20_000)]
    changed = np.array([int((m != sparse).sum()) for m in moved])  # 2 cells per single swap, 4 per double
    # 10 % double swaps, a quarter of which move the step the first swap moved (4 computed steps may
    # move): those change 2 cells, the rest 4, so 7.5 % of proposals change 4
    assert 0.065 < np.mean(changed == 4) < 0.085
    reach = [min(abs(np.flatnonzero(m & ~sparse)[0] - s) for s in np.flatnonzero(sparse & ~m))
             for m, c in zip(moved, changed) if c == 2]
    # 70 % local by choice, and the far draws land within ±3 of the source by chance (6 of 45 free steps)
    assert 0.72 < np.mean(np.array(reach) <= 3) < 0.77
    assert all(m[0] for m in moved)


def test_budcache_climbing_takes_the_steepest_move_until_none_improves():
    """From a mask one local move from the optimum, one round of steepest ascent reaches it, and the
    next round (no improving move) ends the climb."""
    from benchmarks.peers.budcache import climbing_moves

    rng = np.random.default_rng(0)
    row = np.zeros(10, dtype=bool)
    row[[0, 4]] = True
    moves = climbing_moves(row, rng)
    targets = sorted(int(np.flatnonzero(m & ~row)[0]) for m in moves)
    assert [t for t in targets if abs(t - 4) <= 3] == [1, 2, 3, 5, 6, 7] and len(targets) == 8  # + 2 far jumps
    weights = np.array([0, 0, 0, 0, 1, 0, 0, 9, 0, 0.0])  # computing step 7 saves the most
    calls = []

    def score(r):
        calls.append(r.copy())
        return float(weights[~r].sum())

    best = budcache_row(score, 10, 2, evaluations=1000, seed=3)
    assert np.flatnonzero(best).tolist() == [0, 7]


def test_cem_prior_is_plain_reuse_error_and_its_path_the_least_within_its_gaps():
    """CEM's code: a 2-D prior err[C][t], cumulative sums along t, gaps within round(T/Ns) ± 1, the
    first and last steps forced. Against brute force on a hand-made trajectory."""
    import itertools

    from benchmarks.peers.cem import cem_gap_range, cem_path, cem_prior

    rng = np.random.default_rng(0)
    trajectories = np.cumsum(rng.normal(size=(2, 12, 5)), axis=1)  # (sites, steps, features)
    err = cem_prior(_gram(trajectories))
    f = trajectories
    expected = sum(np.sum((f[i, 7] - f[i, 3]) ** 2) / np.sum(f[i, 7] ** 2) for i in range(2))
    assert err[3, 7] == pytest.approx(expected) and err[7, 3] == 0.0 and err[5, 5] == 0.0
    steps, computes = 12, 4
    low, high = cem_gap_range(steps, computes)
    assert (low, high) == (2, 4)

    def cost(path):
        return sum(err[c, c + 1:d].sum() for c, d in zip(path, path[1:]))

    paths = [[0, *rest, steps - 1] for rest in itertools.combinations(range(1, steps - 1), computes - 2)
             if all(low <= d - c <= high for c, d in zip([0, *rest], [*rest, steps - 1]))]
    found = cem_path(err, computes)
    assert found in paths and cost(found) == pytest.approx(min(cost(p) for p in paths))
    with pytest.raises(ScheduleError, match="first and the last"):
        cem_path(err, 1)


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
                       "taylorseer_fora2", "taylorseer1", "taylorseer2", "taylorseer_best", "l2p", "l2p_fora",
                       "dpcache", "cem",
                       "budcache", "lemica", "composite", "gocopt"}
    assert results["verdicts"][0]["margin_db"] is not None and results["command"].endswith("--quick --out " + str(out))
    setup = {r["method"]: r["setup_work"] for r in rows}  # uncached-sample equivalents, by gocopt's WorkMeter
    assert setup["fora"] == setup["taylorseer"] == 0.0 and setup["smoothcache"] == pytest.approx(16.0)  # 16 samples
    assert setup["budcache"] > 0 and setup["first_block_cache"] > 0 and setup["lemica"] > 0 and setup["l2p"] > 0
    assert setup["composite"] > setup["budcache"] + setup["lemica"] + setup["smoothcache"]
    assert setup["gocopt"] > 0  # its schedule file's compile, less held-out scoring
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


def test_a_whole_step_peer_is_held_against_gocopt_at_its_own_cost():
    """Issue #21: at DDIM-50/0.25 a whole-step peer spends 12/50 = 0.24; gocopt's 0.25 row may not
    claim a margin over it, its row compiled at 0.24 must."""
    from benchmarks.quality_table import verdicts, whole_step_cost

    assert whole_step_cost(0.25, 50) == 0.24 and whole_step_cost(0.5, 20) == 0.5 and whole_step_cost(0.75, 50) == 0.74
    row = {"steps": 50, "budget": 0.25}
    rows = [{**row, "method": "gocopt", "cost": 0.2499, "psnr_vs_uncached": 41.0, "fd_vs_uncached": 1.0},
            {**row, "method": "gocopt_whole_steps", "cost": 0.2399, "psnr_vs_uncached": 39.5, "fd_vs_uncached": 1.5},
            {**row, "method": "lemica", "cost": 0.24, "psnr_vs_uncached": 40.0, "fd_vs_uncached": 1.2},
            {**row, "method": "smoothcache", "cost": 0.25, "psnr_vs_uncached": 38.0, "fd_vs_uncached": 2.0}]
    (v,) = verdicts(rows)
    assert v["against"] == {"lemica": "gocopt_whole_steps", "smoothcache": "gocopt"}
    assert v["best_peer"] == "lemica" and v["margin_db"] == pytest.approx(-0.5)
    assert v["loses_to"] == ["lemica"] and not v["gocopt_wins"]


def test_a_peer_cheaper_than_every_gocopt_row_is_shown_not_counted():
    """Issue #32: a dynamic peer that realised 0.248 at budget 0.25 is held against no gocopt row
    costing 0.25 (nor the cheapest one): it is listed as cheaper, and no margin or loss is claimed."""
    from benchmarks.quality_table import verdicts

    row = {"steps": 20, "budget": 0.25}
    rows = [{**row, "method": "gocopt", "cost": 0.25, "psnr_vs_uncached": 41.0, "fd_vs_uncached": 1.0},
            {**row, "method": "first_block_cache", "cost": 0.248, "psnr_vs_uncached": 42.0, "fd_vs_uncached": 0.5},
            {**row, "method": "fora", "cost": 0.25, "psnr_vs_uncached": 38.0, "fd_vs_uncached": 2.0}]
    (v,) = verdicts(rows)
    assert v["cheaper_rows"] == ["first_block_cache"] and v["against"] == {"fora": "gocopt"}
    assert v["gocopt_wins"] and v["best_peer"] == "fora" and v["margin_db"] == pytest.approx(3.0)


def test_margins_are_paired_per_sample_with_their_standard_error():
    """Issue #21: gocopt's lead over the best row and over the best composite, ± the standard error
    of the per-sample differences (same seeds), and the goal: best PSNR and FD by ≥ 1 dB."""
    import numpy as np

    from benchmarks.quality_table import paired_margin, verdicts

    ours_psnr, theirs_psnr = [30.0, 32.0, 34.0, 36.0], [29.0, 30.0, 33.5, 33.5]
    row = {"steps": 20, "budget": 0.5}
    rows = [{**row, "method": "gocopt", "cost": 0.5, "psnr_vs_uncached": 33.0, "fd_vs_uncached": 1.0,
             "psnr_per_sample": ours_psnr},
            {**row, "method": "composite", "cost": 0.5, "psnr_vs_uncached": 31.5, "fd_vs_uncached": 1.2,
             "psnr_per_sample": theirs_psnr},
            {**row, "method": "fora", "cost": 0.5, "psnr_vs_uncached": 25.0, "fd_vs_uncached": 3.0}]
    diff = np.subtract(ours_psnr, theirs_psnr)  # 1, 2, 0.5, 2.5
    margin, stderr = paired_margin(rows[0], rows[1])
    assert margin == pytest.approx(1.5) and stderr == pytest.approx(diff.std(ddof=1) / 2)
    assert paired_margin(rows[0], rows[2]) == (pytest.approx(8.0), None)  # no per-sample PSNR: no s.e.
    (v,) = verdicts(rows)
    assert v["best_peer"] == "composite" and v["margin_db"] == pytest.approx(1.5)
    assert v["composite_margin_db"] == pytest.approx(1.5) and v["composite_margin_stderr"] == pytest.approx(stderr)
    assert v["meets_goal"]
    rows[1]["psnr_vs_uncached"] = 32.5  # within 1 dB: it still wins, the goal is missed
    (v,) = verdicts(rows)
    assert v["gocopt_wins"] and not v["meets_goal"]


def test_an_allowance_is_spent_as_each_peer_spends_set_up_work():
    """Issue #32: every peer of a section gets gocopt's compile work (uncached-sample equivalents, a
    cached run counted in full) and turns it into its own knob, at least its minimum, at most the
    ceiling that keeps a cell inside its quarter hour."""
    from benchmarks.allowance import CALIBRATION_MINIMUM, CEILINGS, Allowance

    default = Allowance("default", 63.55)  # gocopt's default compile at DDIM-50, less held-out scoring
    assert default.calibration_samples() == 63
    assert default.taylorseer_seeds() == 15  # 4 orders × 15 seeds = 60 ≤ 63.55
    assert default.threshold_seeds() == 4  # 14 bisection runs × 4 seeds = 56
    assert default.budcache_search() == (1, 63)  # 63 of its 200 annealing proposals, one seed each
    assert default.composite_seeds(30) == 2  # 30 pairs × 2 seeds
    assert default.span_seeds(220.0) == 1  # one seed's end-to-end table costs more: the minimum, shown
    small = Allowance("default", 3.0)
    assert small.calibration_samples() == CALIBRATION_MINIMUM and small.budcache_search() == (1, 3)
    generous = Allowance("generous", 11_026.1)  # the committed --effort full compile
    assert generous.calibration_samples() == CEILINGS["calibration"]
    assert generous.budcache_search() == (CEILINGS["budcache_seeds"], CEILINGS["budcache_evaluations"])
    assert generous.composite_seeds(30) == CEILINGS["composite_seeds"] and generous.span_seeds(90.0) == 6
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive number of samples"):
            Allowance("default", bad)


def test_a_section_is_judged_on_its_own_rows_and_the_shared_ones():
    """Issue #32: the default section's verdict sees its own peers and gocopt row plus the rows that
    set nothing up; the generous section's peers, however strong, do not enter it."""
    from benchmarks.cells import section_rows
    from benchmarks.quality_table import verdicts

    row = {"steps": 20, "budget": 0.5}
    rows = [{**row, "method": "uncached", "budget": None, "cost": 1.0, "psnr_vs_uncached": None},
            {**row, "method": "fora", "section": "shared", "cost": 0.5, "psnr_vs_uncached": 30.0,
             "fd_vs_uncached": 2.0},
            {**row, "method": "composite", "section": "default", "cost": 0.5, "psnr_vs_uncached": 33.0,
             "fd_vs_uncached": 1.5},
            {**row, "method": "gocopt", "section": "default", "cost": 0.5, "psnr_vs_uncached": 34.0,
             "fd_vs_uncached": 1.0},
            {**row, "method": "composite", "section": "generous", "cost": 0.5, "psnr_vs_uncached": 36.0,
             "fd_vs_uncached": 0.9},
            {**row, "method": "gocopt", "section": "generous", "cost": 0.5, "psnr_vs_uncached": 35.0,
             "fd_vs_uncached": 0.8}]
    assert [r["section"] for r in section_rows(rows, "default")[1:]] == ["shared", "default", "default"]
    (default,) = verdicts(section_rows(rows, "default"))
    assert default["gocopt_wins"] and default["best_peer"] == "composite" and default["margin_db"] == pytest.approx(1.0)
    (generous,) = verdicts(section_rows(rows, "generous"))
    assert generous["loses_to"] == ["composite"] and generous["margin_db"] == pytest.approx(-1.0)
