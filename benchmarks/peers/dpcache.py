"""DPCache-style placement (CVPR 2026, arXiv 2602.22654); CEM, the other DP peer, is rebuilt as its
code computes it in :mod:`benchmarks.peers.cem`.

DPCache places whole-model compute steps by dynamic programming over an error table measured once
on a small calibration set, for any number of computes, and forecasts the skipped steps with
TaylorSeer. What sets it apart from LeMiCa's graph is that the cost is *path-aware*: a
skipped step's error depends on which computes the forecast is made from, so the table is a
tensor over (compute before last, last compute, next compute) and the DP state is the last two
computes. That is exact for TaylorSeer's first-order forecast, which reads exactly those two.
"Style": this is the method as its paper states it, not a port of its code.

The table here is the forecast's relative squared feature error on the calibration runs,
``Σ_sites ‖F[s] − F̂[s]‖² / ‖F[s]‖²`` summed over the skipped steps, computed from calibration's
Gram matrices — no model work beyond the calibration run every method shares.
"""

from __future__ import annotations

import numpy as np

from gocopt.errors import ScheduleError


def forecast_errors(gram: np.ndarray, max_gap: int) -> np.ndarray:
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


def dp_path(err: np.ndarray, computes: int, max_gap: int) -> list[int]:
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
