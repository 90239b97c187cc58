"""CEM-style placement (ICLR 2026, arXiv 2512.23258), as its code computes it.

CEM measures, once, a 2-D prior by sampling: ``err[C][t]``, the error of serving step ``t`` from
the values computed at step ``C`` (plain reuse). A path of compute steps then costs the sum, over
its reuse spans, of the prior along each span — cumulative sums of ``err[C]`` make each span one
subtraction. Its search is a dynamic programme with two constraints of its own: the first and
the last step are always computed, and every gap between computes stays within ``round(T / Ns) ± 1``
(``T`` steps, ``Ns`` computes), so the computes are near-evenly spread and the prior only moves
them by a step or so.

The prior here is measured on the calibration runs every peer shares: the relative squared
feature error of plain reuse, summed over sites, ``Σ_i ‖F_i[t] − F_i[C]‖² / ‖F_i[t]‖²``, from
calibration's Gram matrices — no model work beyond that run.
"""

from __future__ import annotations

import numpy as np

from gocopt.errors import ScheduleError


def cem_prior(gram: np.ndarray) -> np.ndarray:
    """``err[C, t]`` for ``C < t`` (0 elsewhere): plain reuse of step ``C``'s values at step ``t``."""
    diag = np.einsum("iss->is", gram)  # (sites, steps): ‖F_i[s]‖²
    err = (diag[:, None, :] - 2 * gram + diag[:, :, None]) / np.maximum(diag[:, None, :], 1e-30)
    return np.triu(np.maximum(err, 0.0).sum(axis=0), k=1)  # (C, t), summed over sites


def cem_gap_range(steps: int, computes: int) -> tuple[int, int]:
    """CEM's allowed gaps between computes: ``round(T / Ns) ± 1``, at least 1."""
    centre = round(steps / computes)
    return max(1, centre - 1), centre + 1


def cem_path(err: np.ndarray, computes: int) -> list[int]:
    """The ``computes`` steps, first and last included, gaps in :func:`cem_gap_range`, whose reuse
    spans' summed prior ``Σ_spans Σ_{C < t < D} err[C, t]`` is least."""
    steps = err.shape[0]
    if not 2 <= computes <= steps:
        raise ScheduleError(f"a CEM path computes the first and the last of {steps} steps: it needs 2..{steps} "
                            f"computes, got {computes}")
    low, high = cem_gap_range(steps, computes)
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
        raise ScheduleError(f"no CEM path of {computes} computes reaches step {steps - 1} with gaps of "
                            f"{low}..{high}")
    return best[steps - 1][1]


__all__ = ["cem_gap_range", "cem_path", "cem_prior"]
