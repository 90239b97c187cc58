"""Fitted predictors: least-squares forecasts of a reused site from its last computed values.

For a mask, every reused ``(s, i)`` has a known set of earlier computed steps ``c_1 > c_2 > …``
(nearest first). The forecast is ``v̂_i[s] = Σ_k b_k · v_i[c_k]`` over the last ``history`` of them,
with the ``b`` that minimise ``‖v_i[s] − v̂_i[s]‖²`` over the calibration trajectories. Those need
only inner products between steps — calibration's Gram matrix ``G_i`` — so a fit for any mask
is a handful of ``history × history`` solves, cheap enough to run for every search trial.

``affine=True`` (the default) constrains ``Σ b_k = 1``: the forecast is the last computed value
plus a combination of differences, ``v[c_1] + Σ_{k≥2} β_k (v[c_1] − v[c_k])`` — plain reuse,
GOC-like and Taylor forecasts are all of this form. The constraint keeps a forecast from scaling
a feature it should only move, which is what lets coefficients fitted on the uncached trajectory
carry over to the cached one. ``ridge`` shrinks the β toward plain reuse.

:func:`fit_shared` is the other end of the trade between history and parameters: every computed
step before ``s`` (the whole history), but one set of coefficients per step for all the sites
computed at the same steps, fitted to their summed Gram — many data per coefficient, so a long
history does not overfit one site's trajectory. It is the whole-model forecast of L2P (CVPR 2026)
as a per-site predictor, for masks whose sites share their computed steps (the global path).
"""

from __future__ import annotations

import numpy as np

from gocopt.errors import ScheduleError
from gocopt.numerics import least_squares
from gocopt.schedule.predictors import Fitted, computed_steps_before
from gocopt.schedule.reuse import Term


def fit_predictor(mask: np.ndarray, gram: np.ndarray, history: int = 2, *, ridge: float = 1e-3,
                  affine: bool = True, memo: dict | None = None) -> Fitted:
    """The fitted predictor of ``mask`` from calibration's Gram matrices ``(sites, steps, steps)``.

    ``memo``: a dict kept with ``gram`` across calls (:class:`~gocopt.search.space.SpaceContext`
    holds one). A forecast depends only on its site, its step and the computed steps it reads, and a
    search fits thousands of masks that share most of them, so it reuses those fits exactly instead of
    solving them again."""
    mask = np.asarray(mask, dtype=bool)
    steps, sites = mask.shape
    if gram.shape != (sites, steps, steps):
        raise ScheduleError(f"calibration Gram has shape {gram.shape}, the mask needs {(sites, steps, steps)}; "
                            "calibrate with the same sampler and model")
    before = computed_steps_before(mask)
    memo = {} if memo is None else memo
    terms: dict[tuple[int, int], tuple[Term, ...]] = {}
    for s in range(steps):
        for i in np.flatnonzero(~mask[s]):
            points = before[s][i][::-1][:history]  # nearest first
            key = (int(i), s, tuple(points), ridge, affine)
            if key not in memo:
                memo[key] = _fit_one(gram[i], s, points, ridge, affine)
            terms[(s, int(i))] = memo[key]
    return Fitted(history, terms, {"ridge": ridge, "affine": affine})


def fit_shared(mask: np.ndarray, gram: np.ndarray, *, ridge: float = 1e-8) -> Fitted:
    """Whole-history coefficients shared by the sites that are computed at the same steps.

    For each group of sites with one mask column and each step ``s`` it reuses, the ``a`` that
    minimise ``Σ_i ‖v_i[s] − Σ_u a_u v_i[u]‖²`` over the group's sites and the computed steps
    ``u < s``, from the group's summed Gram matrix (``ridge`` relative to its mean diagonal only
    keeps a singular system solvable). Not affine: with many sites per coefficient the fit can
    afford to scale as well as move.
    """
    mask = np.asarray(mask, dtype=bool)
    steps, sites = mask.shape
    if gram.shape != (sites, steps, steps):
        raise ScheduleError(f"calibration Gram has shape {gram.shape}, the mask needs {(sites, steps, steps)}; "
                            "calibrate with the same sampler and model")
    groups: dict[bytes, list[int]] = {}
    for i in range(sites):
        groups.setdefault(mask[:, i].tobytes(), []).append(i)
    terms: dict[tuple[int, int], tuple[Term, ...]] = {}
    history = 1
    for members in groups.values():
        total = gram[members].sum(axis=0)
        computed = np.flatnonzero(mask[:, members[0]])
        for s in np.flatnonzero(~mask[:, members[0]]):
            points = computed[computed < s][::-1]  # nearest first
            coefs = ridge_solve(total[np.ix_(points, points)], total[points, s], ridge)
            history = max(history, len(points))
            forecast = tuple((int(s - u), float(a)) for u, a in zip(points, coefs))
            terms.update({(int(s), i): forecast for i in members})
    return Fitted(history, terms, {"method": "whole history, shared by the sites computed at the same steps",
                                   "ridge": ridge, "affine": False})


def _fit_one(g: np.ndarray, s: int, points: list[int], ridge: float, affine: bool) -> tuple[Term, ...]:
    c1 = points[0]
    if len(points) == 1:
        return ((s - c1, 1.0),)
    if affine:
        # r = v[s] − v[c1];  x_k = v[c1] − v[c_k] (k ≥ 2);  r ≈ Σ β_k x_k
        rest = points[1:]
        xx = np.array([[g[c1, c1] - g[c1, b] - g[a, c1] + g[a, b] for b in rest] for a in rest])
        xr = np.array([g[s, c1] - g[c1, c1] - g[s, a] + g[a, c1] for a in rest])
        beta = ridge_solve(xx, xr, ridge)
        coefs = [1.0 + float(beta.sum())] + [-float(b) for b in beta]
    else:
        xx = g[np.ix_(points, points)]
        coefs = [float(c) for c in ridge_solve(xx, g[points, s], ridge)]
    return tuple((s - c, coef) for c, coef in zip(points, coefs))


def ridge_solve(xx: np.ndarray, xy: np.ndarray, ridge: float) -> np.ndarray:
    """Ridge-regularised normal equations; the least-norm solution where they are singular (a site
    whose values never move, or fewer data than coefficients)."""
    scale = max(float(np.trace(xx)) / max(1, len(xx)), 1e-30)
    return least_squares(xx + ridge * scale * np.eye(len(xx)), xy, what="fitted forecast (ridge normal equations)")


__all__ = ["fit_predictor", "fit_shared", "ridge_solve"]
