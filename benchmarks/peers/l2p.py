"""L2P-style forecasting (CVPR 2026, arXiv 2604.26365): per-step linear weights over the whole history.

L2P keeps every feature the model computed so far and makes a skipped step's feature as a
linear combination of *all* of them — one weight per (skipped step, earlier computed step), a
lower-triangular matrix over the steps — fitted by least squares against the uncached features
of a few calibration runs (its paper: about 20 s). The weights belong to the timestep, not to a
layer: one set per skipped step, shared by every cache site, fitted jointly over all of them.
It runs on its tuned interval mask (here FORA's interval at the budget).

The least-squares problem needs only inner products between steps, summed over sites and
calibration runs — calibration's Gram matrices — so the fit is one small solve per skipped step.
The result is a gocopt :class:`~gocopt.schedule.predictors.Fitted` predictor (unconstrained, the
same coefficients at every site), so the step plans run it and a schedule file can hold it.
"""

from __future__ import annotations

import numpy as np

from gocopt.errors import ScheduleError
from gocopt.schedule.fit import ridge_solve
from gocopt.schedule.predictors import Fitted
from gocopt.schedule.reuse import Term

RIDGE = 1e-8  # relative to the mean diagonal: only keeps a singular system (a site that never moves) solvable


def l2p_predictor(mask: np.ndarray, gram: np.ndarray) -> Fitted:
    """L2P's weights for a whole-model ``mask`` (every site computed at the same steps) from
    calibration's Gram matrices ``(sites, steps, steps)``: for each skipped step ``s``, the
    ``a`` minimising ``Σ_i ‖v_i[s] − Σ_u a_u v_i[u]‖²`` over the computed steps ``u < s``."""
    mask = np.asarray(mask, dtype=bool)
    steps, sites = mask.shape
    if gram.shape != (sites, steps, steps):
        raise ScheduleError(f"calibration Gram has shape {gram.shape}, the mask needs {(sites, steps, steps)}")
    if not (mask == mask[:, :1]).all():
        raise ScheduleError("L2P forecasts whole steps: every site must be computed at the same steps")
    total = gram.sum(axis=0)
    computed = np.flatnonzero(mask[:, 0])
    terms: dict[tuple[int, int], tuple[Term, ...]] = {}
    history = 1
    for s in np.flatnonzero(~mask[:, 0]):
        points = computed[computed < s]
        if not len(points):
            raise ScheduleError(f"step {s} is skipped before any step was computed")
        weights = ridge_solve(total[np.ix_(points, points)], total[points, s], RIDGE)
        history = max(history, len(points))
        for i in range(sites):
            terms[(int(s), i)] = tuple((int(s - u), float(a)) for u, a in zip(points[::-1], weights[::-1]))
    return Fitted(history, terms, {"method": "L2P-style: per-step weights over the whole history, shared by all "
                                             "sites, least squares on the calibration runs", "ridge": RIDGE})

