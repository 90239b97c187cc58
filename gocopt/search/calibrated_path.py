"""Compute steps placed from calibration alone: the two published model-free placements.

A path of whole-model compute steps can be placed by measuring spans end to end
(:mod:`gocopt.search.path`, what the ``path`` family does), or from the uncached calibration
trajectory alone, at no model work beyond the calibration run: the error of serving a skipped
step from the computed ones, read off calibration's Gram matrices. Two rules of the 2026 peers
do the latter, and both beat the span table in the head-to-head's DDIM-50 cells (paired with a
whole-history forecast), which is why the search can try them (issue #34):

- **the reuse prior** (CEM, arXiv 2512.23258): ``err[C, t]``, plain reuse of step ``C`` at step
  ``t``; the path of least summed prior whose gaps stay within ``round(T / Ns) ± 1``, first and
  last step computed, so the computes stay near-evenly spread and the prior moves them a step or so;
- **the forecast table** (DPCache, arXiv 2602.22654): ``err[p, c, s]``, TaylorSeer's first-order
  forecast at ``s`` from the computes ``p < c``; the dynamic programme's state is the last two
  computes, which is exact for that forecast.

Errors are relative squared feature errors, summed over sites. ``benchmarks/peers`` rebuilds the
two peers on these functions, so a peer and gocopt place computes by the same arithmetic.
"""

from __future__ import annotations

import numpy as np

from gocopt.errors import ScheduleError


def reuse_prior(gram: np.ndarray) -> np.ndarray:
    """``err[C, t]`` for ``C < t`` (0 elsewhere): plain reuse of step ``C``'s values at step ``t``."""
    diag = np.einsum("iss->is", gram)  # (sites, steps): ‖F_i[s]‖²
    err = (diag[:, None, :] - 2 * gram + diag[:, :, None]) / np.maximum(diag[:, None, :], 1e-30)
    return np.triu(np.maximum(err, 0.0).sum(axis=0), k=1)  # (C, t), summed over sites


def even_gap_range(steps: int, computes: int, slack: int = 1) -> tuple[int, int]:
    """The allowed gaps between computes: ``round(T / Ns) ± slack``, at least 1 (CEM's rule: ± 1)."""
    centre = round(steps / computes)
    return max(1, centre - slack), centre + slack


def least_prior_path(err: np.ndarray, computes: int, slack: int = 1) -> list[int]:
    """The ``computes`` steps, first and last included, gaps in :func:`even_gap_range`, whose reuse
    spans' summed prior ``Σ_spans Σ_{C < t < D} err[C, t]`` is least. CEM's rule (``slack=1``)
    reaches no path for some step counts (20 steps, 3 computes: gaps of 6..8 cannot span 19 steps);
    :func:`least_prior_path_within` widens it until one does."""
    steps = err.shape[0]
    if not 2 <= computes <= steps:
        raise ScheduleError(f"a calibrated path computes the first and the last of {steps} steps: it needs 2..{steps} "
                            f"computes, got {computes}")
    low, high = even_gap_range(steps, computes, slack)
    cumulative = np.concatenate([np.zeros((steps, 1)), np.cumsum(err, axis=1)], axis=1)  # [C, t]: Σ_{u<t} err[C, u]

    def span(c: int, d: int) -> float:  # the steps c+1 … d−1, served from c
        return float(cumulative[c, d] - cumulative[c, c + 1])

    best: dict[int, tuple[float, list[int]]] = {0: (0.0, [0])}  # last compute → (cost, path)
    for _ in range(1, computes):
        layer: dict[int, tuple[float, list[int]]] = {}
        for c, (cost, path) in best.items():
            for d in range(c + low, min(steps, c + high + 1)):
                value = cost + span(c, d)
                if d not in layer or value < layer[d][0]:
                    layer[d] = (value, path + [d])
        best = layer
    if steps - 1 not in best:
        raise ScheduleError(f"no calibrated path of {computes} computes reaches step {steps - 1} with gaps of "
                            f"{low}..{high}")
    return best[steps - 1][1]


def least_prior_path_within(err: np.ndarray, computes: int) -> list[int]:
    """:func:`least_prior_path` with the least slack that reaches the last step (``[0]`` for one compute)."""
    steps = err.shape[0]
    if computes == 1:
        return [0]
    for slack in range(1, steps + 1):
        try:
            return least_prior_path(err, computes, slack)
        except ScheduleError:
            continue
    raise ScheduleError(f"no path of {computes} computes spans {steps} steps")  # pragma: no cover - slack = steps fits


def taylor_forecast_errors(gram: np.ndarray, max_gap: int) -> np.ndarray:
    """``err[p, c, s]``: the relative squared error, summed over sites, of TaylorSeer's order-1
    forecast at step ``s`` made from computes at ``p < c < s`` (``p = c``: only ``c`` computed so far,
    plain reuse); ``inf`` outside ``c − p ≤ max_gap`` and ``s − c < max_gap``."""
    sites, steps, _ = gram.shape
    diag = np.maximum(np.einsum("iss->is", gram), 1e-30)  # (sites, steps): ‖F_i[s]‖²
    err = np.full((steps, steps, steps), np.inf)
    for c in range(steps):
        for p in range(max(0, c - max_gap), c + 1):
            for s in range(c + 1, min(steps, c + max_gap)):
                x = s - c
                a, b = (1.0, 0.0) if p == c else (1.0 + x / (c - p), -x / (c - p))  # a·F[c] + b·F[p]
                e = (gram[:, s, s] - 2 * (a * gram[:, s, c] + b * gram[:, s, p]) + a * a * gram[:, c, c]
                     + 2 * a * b * gram[:, c, p] + b * b * gram[:, p, p])
                err[p, c, s] = float((np.maximum(e, 0.0) / diag[:, s]).sum())
    return err


def least_forecast_path(err: np.ndarray, computes: int, max_gap: int) -> list[int]:
    """The ``computes`` steps (step 0 first, gaps ≤ ``max_gap``) of least total forecast error,
    each skipped step forecast from the two computes before it."""
    steps = err.shape[0]
    if not 1 <= computes <= steps:
        raise ScheduleError(f"a path through {steps} steps needs 1..{steps} compute steps, got {computes}")

    def span(p: int, c: int, d: int) -> float:  # the skipped steps c+1 … d−1, forecast from (p, c)
        return float(err[p, c, c + 1:d].sum()) if d > c + 1 else 0.0

    # best[(p, c)] = (cost, path) over paths with k + 1 computes whose last two are p, c (p = c: one compute)
    best: dict[tuple[int, int], tuple[float, list[int]]] = {(0, 0): (0.0, [0])}
    for _ in range(1, computes):
        layer: dict[tuple[int, int], tuple[float, list[int]]] = {}
        for (p, c), (cost, path) in best.items():
            for d in range(c + 1, min(steps, c + max_gap + 1)):
                value = cost + span(p, c, d)
                if np.isfinite(value) and ((c, d) not in layer or value < layer[(c, d)][0]):
                    layer[(c, d)] = (value, path + [d])
        best = layer
    finished = [(cost + span(p, c, steps), path) for (p, c), (cost, path) in best.items()
                if steps - c <= max_gap]
    finished = [item for item in finished if np.isfinite(item[0])]
    if not finished:
        raise ScheduleError(f"no path with {computes} computes spans {steps} steps with gaps of at most {max_gap}")
    return min(finished)[1]


__all__ = ["even_gap_range", "least_forecast_path", "least_prior_path", "least_prior_path_within", "reuse_prior",
           "taylor_forecast_errors"]
