"""Predictors as schedule data (Taylor, fitted), the least-squares fit, and the global path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import OneSiteModel, ScriptedSampler, site_run

from gocopt.calibrate import calibrate
from gocopt.compiled import cache_model
from gocopt.errors import ScheduleError
from gocopt.schedule import GOCConfig, Schedule
from gocopt.schedule.fit import fit_predictor
from gocopt.schedule.plan import plan_run
from gocopt.schedule.predictors import Fitted, Taylor, from_json
from gocopt.search.path import EdgeTable, best_path, measure_edges, path_mask

SITE = ("blocks.0.attn",)


def _one_site():
    return cache_model(OneSiteModel(), None, (torch.zeros(1, 1, dtype=torch.float64), torch.tensor([5])))


def test_taylor_order_two_is_exact_on_a_quadratic_with_uneven_gaps():
    """Values s² computed at steps 0, 1, 3: step 4 → 16 and step 5 → 25 from a parabola through 0, 1, 9."""
    compiled = _one_site()
    mask = np.array([[True], [True], [False], [True], [False], [False]])
    compiled.set_schedule(Schedule(mask, SITE, None, Taylor(2), "taylor2"))
    used, _ = site_run(compiled, [0.0, 1.0, 0.0, 9.0, 0.0, 0.0], (5, 4, 3, 2, 1, 0))
    # step 2 has only two computed values (0, 1): a line through them → 2
    assert used == pytest.approx([0.0, 1.0, 2.0, 9.0, 16.0, 25.0])


@pytest.fixture
def quadratic_calibration():
    values = [float(s * s + 1) for s in range(6)]
    sampler = ScriptedSampler(values, (5, 4, 3, 2, 1, 0))
    return calibrate(_one_site(), sampler, torch.zeros(1), torch.zeros(1), num_classes=1), values


def test_calibration_records_the_trajectory_gram(quadratic_calibration):
    calibration, values = quadratic_calibration
    v = np.array(values)
    np.testing.assert_allclose(calibration.gram[0], np.outer(v, v))


def test_fitted_predictor_reproduces_the_trajectory_it_was_fitted_on(quadratic_calibration):
    """The forecast of a step from three past values is exact on the trajectory it was fitted on."""
    calibration, values = quadratic_calibration
    mask = np.array([[True], [True], [True], [False], [True], [False]])
    fitted = fit_predictor(mask, calibration.gram, history=3, ridge=0.0, affine=False)
    assert set(fitted.terms) == {(3, 0), (5, 0)}
    compiled = _one_site()
    compiled.set_schedule(Schedule(mask, SITE, None, fitted, "fitted"))
    inputs = [v if m else 0.0 for v, m in zip(values, mask[:, 0])]
    used, _ = site_run(compiled, inputs, (5, 4, 3, 2, 1, 0))
    assert used[3] == pytest.approx(values[3], abs=1e-6)
    # one data point per coefficient set: exact, whatever the form; here also the affine one
    affine = fit_predictor(mask, calibration.gram, history=2, ridge=0.0)
    assert sum(c for _, c in affine.terms[(3, 0)]) == pytest.approx(1.0)


def test_fitted_with_ridge_falls_back_toward_plain_reuse(quadratic_calibration):
    calibration, _ = quadratic_calibration
    mask = np.array([[True], [True], [True], [False], [True], [False]])
    heavy = fit_predictor(mask, calibration.gram, history=3, ridge=1e9)
    np.testing.assert_allclose([c for _, c in heavy.terms[(3, 0)]], [1.0, 0.0, 0.0], atol=1e-6)


def test_a_fitted_predictor_is_refused_on_another_mask(quadratic_calibration):
    calibration, _ = quadratic_calibration
    mask = np.array([[True], [True], [True], [False], [True], [False]])
    fitted = fit_predictor(mask, calibration.gram, history=2)
    other = mask.copy()
    other[2] = False
    with pytest.raises(ScheduleError, match="fitted for another mask"):
        Schedule(other, SITE, None, fitted)
    with pytest.raises(ScheduleError, match="calibrate with the same sampler"):
        fit_predictor(mask[:4], calibration.gram)


@pytest.mark.parametrize("predictor", [GOCConfig.at_steps(0.7, range(2, 6)), GOCConfig((0.5,), frozenset({3})),
                                       Taylor(1), Taylor(2),
                                       Fitted(2, {(3, 0): ((1, 1.5), (2, -0.5)), (5, 0): ((1, 1.0),)}, {"ridge": 0})])
def test_predictors_round_trip_through_json(predictor):
    mask = np.array([[True], [True], [True], [False], [True], [False]])
    again = from_json(predictor.to_json())
    assert again == predictor
    assert again.actions(mask) == predictor.actions(mask)


def test_every_predictor_becomes_static_step_plans():
    """Taylor and fitted predictors need no per-call decision: plans are made once, like GOC's, and
    their warm-up steps (fewer values to combine) share the graph of the steps after them."""
    mask = np.ones((20, 3), dtype=bool)
    mask[1::2] = False
    gram = np.stack([np.eye(20) + 0.5 for _ in range(3)])
    for predictor in (Taylor(2), GOCConfig.at_steps(0.8, range(2, 20)), fit_predictor(mask, gram, 3)):
        run = plan_run(Schedule(mask, ("a", "b", "c"), None, predictor))
        assert run.steps == 20 and len(run.plans) == 3  # step 0, compute, reuse
        assert all(run.at(0).computes) and all(run.at(0).fills)


def test_unknown_predictor_kind_names_the_fix():
    with pytest.raises(ScheduleError, match="upgrade gocopt"):
        from_json({"kind": "oracle"})


def test_best_path_finds_the_least_error_spans():
    """Spans ending early are cheap, late ones dear: the path computes densely at the end."""
    steps = 8

    def error(row: np.ndarray) -> float:
        reused = np.flatnonzero(~row)
        return float(np.sum(2.0 ** reused))

    table = measure_edges(error, steps, max_gap=steps)
    path = best_path(table, 4)
    assert path[0] == 0 and len(path) == 4
    brute = min((sum(table.weight(a, b) for a, b in zip((0, *p), (*p, steps))), p)
                for p in _combinations(range(1, steps), 3))
    assert tuple(path[1:]) == brute[1]
    assert path_mask(path, steps, 2)[:, 1].tolist() == [s in path for s in range(steps)]


def test_a_path_that_cannot_span_the_run_is_refused():
    table = EdgeTable(10, 2, {(c, c + 2): 1.0 for c in range(9)})
    with pytest.raises(ScheduleError, match="measure longer spans"):
        best_path(table, 2)


def _combinations(items, k):
    from itertools import combinations

    return combinations(items, k)


def test_the_shared_forecast_is_one_least_squares_fit_per_group_of_sites_computed_alike():
    """``fit_shared``: for the sites computed at the same steps, one set of whole-history weights per
    reused step, the least-squares solution over their features stacked (checked against numpy);
    a site computed at other steps is its own group, with its own weights."""
    from gocopt.schedule.fit import fit_shared

    rng = np.random.default_rng(1)
    v = rng.normal(size=(3, 6, 30))  # 3 sites, 6 steps, 30 features
    gram = np.einsum("isf,itf->ist", v, v)
    mask = np.array([[1, 1, 1], [0, 0, 1], [1, 1, 0], [0, 0, 1], [0, 0, 0], [1, 1, 1]], dtype=bool)
    fitted = fit_shared(mask, gram)
    for s in (3, 4):  # sites 0 and 1: computed at 0 and 2
        x = np.concatenate([v[i, [2, 0]].T for i in (0, 1)])  # nearest first
        y = np.concatenate([v[i, s] for i in (0, 1)])
        a = np.linalg.lstsq(x, y, rcond=None)[0]
        assert dict(fitted.terms[(s, 0)]) == pytest.approx({s - 2: a[0], s: a[1]}, rel=1e-6)
        assert fitted.terms[(s, 1)] == fitted.terms[(s, 0)]
    a = np.linalg.lstsq(v[2, [3, 1, 0]].T, v[2, 4], rcond=None)[0]  # site 2 alone: computed at 0, 1, 3
    assert dict(fitted.terms[(4, 2)]) == pytest.approx({1: a[0], 3: a[1], 4: a[2]}, rel=1e-6)
    assert fitted.history == 3 and set(fitted.terms) == {(s, i) for s, i in zip(*np.nonzero(~mask))}


def test_the_shared_forecast_on_a_whole_step_mask_is_the_l2p_style_peers():
    """On a mask where every site is computed at the same steps, the shared forecast is the head-to-head's
    L2P-style site forecast (benchmarks/peers/l2p.py), coefficient for coefficient."""
    from benchmarks.peers.l2p import l2p_predictor
    from gocopt.schedule.fit import fit_shared

    rng = np.random.default_rng(2)
    v = rng.normal(size=(4, 8, 20))
    gram = np.einsum("isf,itf->ist", v, v)
    mask = np.array([1, 1, 0, 1, 0, 0, 1, 0], dtype=bool)[:, None].repeat(4, axis=1)
    ours, peers = fit_shared(mask, gram), l2p_predictor(mask, gram)
    assert set(ours.terms) == set(peers.terms)
    for key, terms in ours.terms.items():
        assert dict(terms) == pytest.approx(dict(peers.terms[key]), rel=1e-9, abs=1e-12)
