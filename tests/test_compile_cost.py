"""What a compile spends: the plan, the cheap span table, the surrogate that ranks before sampling."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from quick import QUICK

from gocopt.compiled import cache_model
from gocopt.driver import sampler_call, work_meter
from gocopt.errors import ScheduleError
from gocopt.models.convention import dit_spec
from gocopt.sampling import DDIMSampler, initial_noise
from gocopt.schedule.fit import fit_predictor
from gocopt.schedule.goc import GOCConfig
from gocopt.search.effort import Effort, default_max_samples, plan_work
from gocopt.search.path import EdgeTable
from gocopt.search.spans import measure_spans, span_image_steps
from gocopt.search.surrogate import feature_errors, fit_step_weights


def test_a_run_stopped_early_is_the_start_of_the_whole_run(tiny_model):
    sampler = DDIMSampler(steps=8, guidance_scale=4.0, clip_denoised=False)
    spec = dit_spec(tiny_model)
    noise, labels = initial_noise([1, 2], spec.latent_shape), torch.tensor([0, 3])
    whole = sampler.latents(tiny_model, labels, noise, num_classes=spec.num_classes)
    part = replace(sampler, first_step=2, last_step=5).latents(tiny_model, labels, whole[2],
                                                                num_classes=spec.num_classes)
    assert len(part) == 4 and all(torch.equal(a, b) for a, b in zip(part, whole[2:6]))
    with pytest.raises(ValueError, match="last_step"):
        replace(sampler, first_step=3, last_step=3)


@pytest.mark.parametrize("method", ["lookahead", "end-to-end"])
def test_the_span_table_costs_what_was_planned(tiny_model, method):
    sampler = DDIMSampler(steps=8, guidance_scale=4.0, clip_denoised=False)
    spec = dit_spec(tiny_model)
    compiled = cache_model(tiny_model, None, sampler_call(tiny_model, sampler, spec))
    noise, labels = initial_noise([5, 6], spec.latent_shape), torch.tensor([1, 2])
    reference = sampler.sample(tiny_model, labels, noise, num_classes=spec.num_classes)
    meter = work_meter([compiled, tiny_model], sampler)
    with meter, meter.phase("spans"):
        table = measure_spans(compiled, sampler, labels, noise, reference, max_gap=4, gram=None,
                              num_classes=spec.num_classes, method=method)
    spent = meter.summary()["phases"]["spans"]["image_steps"]
    assert spent == 2 * span_image_steps(8, 4, 3, method, restartable=True)
    assert set(table.error) == {(c, d) for c in range(8) for d in range(c + 2, min(8, c + 4) + 1)}
    assert all(np.isfinite(e) and e >= 0 for e in table.error.values())


def test_the_span_table_starts_from_calibrations_latents_and_measures_damping_on_fewer_seeds(tiny_model):
    """Calibration keeps the uncached latents the span table would run again (the model's own, bit
    for bit, on calibration's batch); given the latents, the table is the same and costs a run less
    per seed. Damping measured on the first seed alone costs what was planned and changes one factor
    per end step, nothing else."""
    from gocopt.calibrate.statistics import calibrate

    sampler = DDIMSampler(steps=8, guidance_scale=4.0, clip_denoised=False)
    spec = dit_spec(tiny_model)
    compiled = cache_model(tiny_model, None, sampler_call(tiny_model, sampler, spec))
    noise, labels = initial_noise([5, 6, 7], spec.latent_shape), torch.tensor([1, 2, 3])
    calibration = calibrate(compiled, sampler, labels, noise, num_classes=spec.num_classes, keep_latents=True)
    assert calibration.latents is not None and len(calibration.latents) == 9
    assert torch.equal(calibration.latents[-1].cpu(), calibration.samples)
    own = sampler.latents(tiny_model, labels, noise, num_classes=spec.num_classes)
    assert all(torch.equal(a, b) for a, b in zip(calibration.latents, own))
    assert calibrate(compiled, sampler, labels, noise, num_classes=spec.num_classes).latents is None
    with pytest.raises(ScheduleError, match="needs a sampler with latents"):  # a pipeline's sampler has none
        calibrate(compiled, object(), labels, noise, num_classes=spec.num_classes, keep_latents=True)  # type: ignore[arg-type]
    span = labels[:2], noise[:2], calibration.samples[:2]
    options = {"max_gap": 4, "gram": calibration.gram, "num_classes": spec.num_classes}
    spent, tables = {}, {}
    latents = sampler.latents(tiny_model, *span[:2], num_classes=spec.num_classes)  # what the table would run
    for name, extra in {"measured": {}, "given": {"latents": latents},
                        "one seed": {"latents": latents, "damping_seeds": 1}}.items():
        meter = work_meter([compiled, tiny_model], sampler)
        with meter, meter.phase("spans"):
            tables[name] = measure_spans(compiled, sampler, *span, **options, **extra)
        spent[name] = meter.summary()["phases"]["spans"]["image_steps"]
    assert tables["given"].error == tables["measured"].error
    assert spent["measured"] - spent["given"] == 2 * 8
    assert spent["one seed"] == span_image_steps(8, 4, 3, "lookahead", True, seeds=2, damping_seeds=1,
                                                 latents_given=True) < spent["given"]
    given = tables["given"].error  # a span that changes nothing on both seeds (error 0) stays 0
    assert all(tables["one seed"].error[span] == 0 for span, error in given.items() if error == 0)
    ratios = {span: tables["one seed"].error[span] / error for span, error in given.items() if error > 0}
    for d in {d for _, d in ratios}:  # one factor per end step scales every span ending there
        factors = [r for (_, e), r in ratios.items() if e == d]
        assert np.allclose(factors, factors[0])
    assert all(ratios[(c, 8)] == 1.0 for c in range(4, 6))  # exactly 1 at the end, whatever the seeds


def test_lookahead_ends_at_the_final_sample_exactly_like_end_to_end(tiny_model):
    """A span that reuses to the end is weighed by the final sample in both methods: same number."""
    sampler = DDIMSampler(steps=8, guidance_scale=4.0, clip_denoised=False)
    spec = dit_spec(tiny_model)
    compiled = cache_model(tiny_model, None, sampler_call(tiny_model, sampler, spec))
    noise, labels = initial_noise([7], spec.latent_shape), torch.tensor([4])
    reference = sampler.sample(tiny_model, labels, noise, num_classes=spec.num_classes)
    tables = {m: measure_spans(compiled, sampler, labels, noise, reference, max_gap=3, gram=None,
                               num_classes=spec.num_classes, method=m) for m in ("lookahead", "end-to-end")}
    for span in ((5, 8), (6, 8)):  # no anchor scales these: the damping factor is 1 at the end
        assert tables["lookahead"].error[span] == pytest.approx(tables["end-to-end"].error[span], rel=1e-6)


def _gram(values: np.ndarray) -> np.ndarray:
    """(sites, steps, dims) trajectories → (sites, steps, steps) Gram matrices."""
    return np.einsum("isd,itd->ist", values, values)


def test_feature_errors_are_the_exact_errors_on_the_trajectory():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(2, 6, 50)).cumsum(axis=1)
    gram = _gram(values)
    mask = np.ones((6, 2), dtype=bool)
    mask[2:4, 0] = False  # site 0 reused at 2, 3 (computed at 0, 1, 4, 5)
    mask[5, 1] = False
    plain = feature_errors(mask, GOCConfig(), gram)
    assert plain[2, 0] == pytest.approx(((values[0, 2] - values[0, 1]) ** 2).sum())
    assert plain[3, 0] == pytest.approx(((values[0, 3] - values[0, 1]) ** 2).sum())
    assert plain[5, 1] == pytest.approx(((values[1, 5] - values[1, 4]) ** 2).sum())
    assert plain[mask].sum() == 0
    goc = GOCConfig(0.5, frozenset(range(2, 6)))  # v1 + w(v1 − v2) of *used* values, unrolled
    used2 = values[0, 1] + 0.5 * (values[0, 1] - values[0, 0])
    used3 = used2 + 0.5 * (used2 - values[0, 1])
    errors = feature_errors(mask, goc, gram)
    assert errors[2, 0] == pytest.approx(((values[0, 2] - used2) ** 2).sum())
    assert errors[3, 0] == pytest.approx(((values[0, 3] - used3) ** 2).sum())
    fitted = fit_predictor(mask, gram, 2, ridge=0.0)  # least squares: no worse than plain reuse
    assert (feature_errors(mask, fitted, gram) <= plain + 1e-9).all()


def test_memos_shared_across_masks_give_exactly_the_fits_and_errors_made_afresh():
    """A surrogate study reuses fits and site errors across thousands of masks: every one must be
    what a fresh computation gives, bit for bit, whatever masks came before it."""
    rng = np.random.default_rng(1)
    gram = _gram(rng.normal(size=(3, 10, 20)).cumsum(axis=1))
    fits: dict = {}
    errors: dict = {}
    for _ in range(12):
        mask = rng.random((10, 3)) < 0.5
        mask[0] = True
        for history in (1, 2, 3):
            fresh = fit_predictor(mask, gram, history)
            remembered = fit_predictor(mask, gram, history, memo=fits)
            assert remembered.terms == fresh.terms
            expected = feature_errors(mask, fresh, gram)
            assert np.array_equal(feature_errors(mask, remembered, gram, errors), expected)
    assert 0 < len(errors) < 12 * 3 * 3 and len(fits) > 0  # the memos were used, and shared


def test_step_weights_recover_how_each_step_carries_its_error_to_the_end():
    """Span errors made from known weights λ_s and the spans' feature errors: the fit finds λ."""
    rng = np.random.default_rng(1)
    steps, sites = 10, 3
    values = rng.normal(size=(sites, steps, 40)).cumsum(axis=1)
    gram = _gram(values)
    true = np.linspace(0.1, 2.0, steps) ** 2
    error = {}
    for c in range(steps):
        for d in range(c + 2, min(steps, c + 4) + 1):
            mask = np.ones((steps, sites), dtype=bool)
            mask[c + 1 : d] = False
            error[(c, d)] = float(feature_errors(mask, fit_predictor(mask, gram, 3), gram).sum(axis=1) @ true)
    weights = fit_step_weights(EdgeTable(steps, 4, error), gram, sites)
    assert np.allclose(weights[1:], true[1:], rtol=1e-4)  # step 0 is never reused: no data, no weight


def test_the_plan_sizes_the_search_to_the_cap_and_refuses_what_it_cannot_pay():
    plan = plan_work(Effort(), steps=20, budgets=1, max_gap=5, restartable=True, max_samples=default_max_samples(1))
    assert plan.total <= 100 and plan.trials >= 2
    assert plan.phases["held-out scoring"] == 12 and plan.phases["calibration"] == 8
    assert plan.trials >= len(Effort().always_sample)  # the default cap samples every always-sampled candidate
    four = plan_work(Effort(), steps=50, budgets=4, max_gap=9, restartable=True, max_samples=default_max_samples(4))
    assert four.total <= 250 and default_max_samples(4) == 250
    full = plan_work(Effort.full(), steps=20, budgets=1, max_gap=5, restartable=True, max_samples=None)
    assert full.trials == 40 and full.phases["search trials"] == 40 * 64 and full.total > 3000
    with pytest.raises(ScheduleError, match=r"max_samples=50 cannot pay.*use max_samples >= \d+"):
        plan_work(Effort(), steps=20, budgets=1, max_gap=5, restartable=True, max_samples=50)
    whole_runs = plan_work(Effort(trials=2), steps=20, budgets=1, max_gap=5, restartable=False, max_samples=None)
    whole_run_per_span = sum(min(20, c + 5) - c - 1 for c in range(19))
    assert whole_runs.phases["spans"] == Effort().span_seeds * whole_run_per_span
    with pytest.raises(ScheduleError, match="trials=None sizes the search"):
        plan_work(Effort(), steps=20, budgets=1, max_gap=5, restartable=True, max_samples=None)


def test_workers_share_one_calibration_through_the_storage(tiny_model, tmp_path, monkeypatch):
    from shared_storage import shared_calibration_check

    shared_calibration_check(tiny_model, f"sqlite:///{tmp_path / 'study.db'}", monkeypatch)


def test_measurements_for_something_else_are_refused(tiny_model, tmp_path):
    import gocopt

    url = f"sqlite:///{tmp_path / 'study.db'}"
    kw = dict(sampler=gocopt.default_sampler(6), study=gocopt.StudyConfig(storage=url, name="shared", heartbeat=None),
              progress=False)
    effort = replace(QUICK, trials=2, heldout_samples=4)
    gocopt.compile(tiny_model, 0.5, effort=replace(effort, search_samples=4), **kw)
    with pytest.raises(ScheduleError, match="shared-measurements.*search_seeds"):
        gocopt.compile(tiny_model, 0.5, effort=replace(effort, search_samples=6), **kw)


def test_a_surrogate_led_search_always_samples_the_global_path(tiny_model, tmp_path):
    """The surrogate misranks the global path's neighbours (issue #20 note), so GLOBAL_PATH is one of
    the sampled trials even when the search affords only two, whatever the surrogate thinks of it."""
    import optuna

    import gocopt
    from gocopt.search.study import GLOBAL_PATH

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    gocopt.compile(tiny_model, 0.4, sampler=gocopt.default_sampler(8), effort=replace(QUICK, trials=2),
                   study=gocopt.StudyConfig(storage=storage, name="s"), progress=False)
    trials = optuna.load_study(study_name="s-b0.4", storage=storage).get_trials()
    expected = GLOBAL_PATH.as_params()
    assert len(trials) == 2
    assert any(all(t.params[k] == expected[k] for k in t.params) for t in trials), [t.params for t in trials]


def test_the_effort_names_the_candidates_sampled_whatever_the_surrogate_says(tiny_model, tmp_path):
    """``Effort.always_sample`` puts FORA's mask with the Taylor forecast among the sampled trials next
    to the global path (the surrogate, measured on the uncached trajectory, always prefers a fitted
    forecast on the same mask), and the paths placed from calibration alone, whose families the
    search does not suggest; a name it does not know is refused before any work."""
    import optuna

    import gocopt
    from gocopt.search.effort import Effort
    from gocopt.search.study import ALWAYS_SAMPLED, GLOBAL_PATH, INTERVAL_TAYLOR

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    names = ("global-path", "interval-taylor1", "prior-path-shared", "forecast-path-shared")
    effort = replace(QUICK, always_sample=names, trials=5)
    gocopt.compile(tiny_model, 0.4, sampler=gocopt.default_sampler(8), effort=effort,
                   study=gocopt.StudyConfig(storage=storage, name="s"), progress=False)
    trials = optuna.load_study(study_name="s-b0.4", storage=storage).get_trials()
    assert GLOBAL_PATH == ALWAYS_SAMPLED["global-path"] and INTERVAL_TAYLOR == ALWAYS_SAMPLED["interval-taylor1"]
    for expected in (ALWAYS_SAMPLED[name].as_params() for name in names):
        assert any(all(t.params[k] == expected[k] for k in t.params) for t in trials), [t.params for t in trials]
    with pytest.raises(ScheduleError, match="always_sample names \\['fora'\\]"):
        Effort(always_sample=("fora",))


def test_the_default_samples_the_levers_that_won_and_a_search_without_a_surrogate_samples_none():
    """The default always-sampled candidates are issue #34's winning lever; they follow the surrogate
    (``with_overrides(surrogate_trials=0)``, as the CLI's ``--surrogate-trials 0`` does, leaves them
    out instead of being refused), while ones the caller named stay and are refused without one."""
    from gocopt.search.effort import DEFAULT_ALWAYS_SAMPLED, Effort

    assert Effort().always_sample == DEFAULT_ALWAYS_SAMPLED == ("global-path", "path-shared", "interval-taylor1",
                                                                "forecast-path-shared")
    assert Effort().heldout_samples == 6
    assert Effort.for_pipeline().heldout_samples == 8
    assert Effort(surrogate_trials=0, trials=4).always_sample == () == Effort.full().always_sample
    assert Effort().with_overrides(surrogate_trials=0).always_sample == ()
    without = Effort(surrogate_trials=0, trials=4)
    assert without.with_overrides(surrogate_trials=9).always_sample == DEFAULT_ALWAYS_SAMPLED
    assert Effort(always_sample=("global-path",)).with_overrides(surrogate_trials=0).always_sample == ("global-path",)
    with pytest.raises(ScheduleError, match="only a surrogate-led search samples"):
        Effort(always_sample=("path-shared",)).with_overrides(surrogate_trials=0)


def test_every_span_seed_counts_the_same_whatever_its_error_level():
    """Mean PSNR weighs each sample's log-error equally: a seed whose errors are all 50× larger
    must not decide the table alone, as it does in a plain mean of squared errors."""
    from gocopt.search.spans import combine, sample_weights

    quiet = {(0, 2): 1.0, (0, 3): 8.0, (1, 3): 3.0}  # level (mean) 4: prefers (0, 2) by 8×
    loud = {(0, 2): 400.0, (0, 3): 100.0, (1, 3): 100.0}  # level 200: prefers (0, 3) by 4×
    error = {span: np.array([quiet[span], loud[span]]) for span in quiet}
    weights = sample_weights(error)
    assert weights == pytest.approx(np.sqrt(4 * 200) / np.array([4, 200]))  # the levels' geometric mean over each
    table, plain = combine(error, weights), combine(error, np.ones(2))
    assert plain[(0, 3)] < plain[(0, 2)]  # the loud seed alone decides
    assert table[(0, 2)] < table[(0, 3)]  # the stronger preference wins once both seeds are on one level
    assert table[(0, 2)] == pytest.approx((1.0 * weights[0] + 400.0 * weights[1]) / 2)
    assert sample_weights({(0, 2): np.array([3.0])}) == pytest.approx([1.0])


def test_always_sampled_candidates_that_cannot_be_sampled_are_refused_or_named(tiny_model, caplog):
    """No silent no-op: without a surrogate the study never samples an always-candidate that is not one
    of its seed candidates (refused up front); with too few trials for them all, the ones left out
    are named in a warning."""
    import gocopt
    from gocopt.search.effort import Effort

    with pytest.raises(ScheduleError, match="only a surrogate-led search samples"):
        Effort(surrogate_trials=0, trials=4, always_sample=("interval-taylor1",))
    Effort(surrogate_trials=0, trials=4)  # the global path is a seed candidate: nothing to refuse
    effort = replace(QUICK, always_sample=("global-path", "interval-taylor1", "interval-taylor2", "path-taylor2"),
                     trials=2)
    with caplog.at_level("WARNING", logger="gocopt.search.surrogate"):
        gocopt.compile(tiny_model, 0.4, sampler=gocopt.default_sampler(8), effort=effort, progress=False)
    assert "do not fit in 2 sampled trials" in caplog.text


def test_finalists_keep_the_best_over_search_and_held_out_seeds_at_the_planned_cost(tiny_model, tmp_path):
    """``Effort.finalists=2``: the search's two best trials are scored on the held-out seeds and the
    one best over both seed sets pooled is kept, for one more held-out scoring, as planned; with one
    finalist the study's best trial is kept, as before finalists existed."""
    import optuna

    import gocopt

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    effort = replace(QUICK, trials=3, heldout_samples=4)
    kept = {}
    for finalists in (1, 2):
        compiled = gocopt.compile(tiny_model, 0.4, sampler=gocopt.default_sampler(8),
                                  effort=replace(effort, finalists=finalists), progress=False,
                                  study=gocopt.StudyConfig(storage=storage, name=f"f{finalists}"))
        provenance = compiled.schedule.provenance
        study = optuna.load_study(study_name=f"f{finalists}-b0.4", storage=storage)
        work = provenance["work"]
        assert work["planned"]["held-out scoring"] == 4 * (1 + finalists)
        assert work["phases"]["held-out scoring"]["sample_equivalents"] == pytest.approx(4 * (1 + finalists))
        kept[finalists] = provenance
    best = study.best_trial  # both studies sample the same trials: the finalists change only the last choice
    assert kept[1]["search"]["best_params"] == {**kept[1]["search"]["best_params"], **best.params}
    assert "finalists" not in kept[1]["quality"]
    records = kept[2]["quality"]["finalists"]
    values = sorted((t.value for t in study.get_trials() if t.value is not None), reverse=True)
    assert [r["search_psnr"] for r in records] == pytest.approx(values[:2])
    for record in records:  # the pooled mean weighs each seed alike: 8 search seeds, 4 held-out
        assert record["pooled_psnr"] == pytest.approx((8 * record["search_psnr"] + 4 * record["heldout_psnr"]) / 12)
    winner = max(records, key=lambda r: r["pooled_psnr"])
    assert kept[2]["search"]["best_params"] == winner["params"]
    assert kept[2]["quality"]["heldout"]["psnr_vs_uncached"] == winner["heldout_psnr"]
    assert kept[2]["search"]["best_value"] == winner["search_psnr"]
    with pytest.raises(ScheduleError, match="finalists=0: must be at least 1"):
        Effort(finalists=0)
    with pytest.raises(ScheduleError, match="finalists=3 > Effort.trials=2"):
        Effort(trials=2, finalists=3)
