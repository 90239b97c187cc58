"""SmoothCache-style static schedule: calibration errors and one threshold, bisected to the budget.

SmoothCache (Liu et al., 2024) runs the uncached model once, measures how much each layer's
output changes between steps, and skips a layer while the error it would accumulate since its
last computation stays below a threshold ``alpha``. Here the per-(step, site) error is
calibration's relative one-step change (the same statistics gocopt's search starts from), errors
add up along a run of reuses, and ``alpha`` is the largest value whose schedule costs at most the
budget. Reuse is plain, as in SmoothCache.
"""

from __future__ import annotations

import numpy as np


def threshold_mask(rel_change: np.ndarray, alpha: float) -> np.ndarray:
    """Compute a site when its error accumulated since its last computation would reach ``alpha``."""
    steps, sites = rel_change.shape
    mask = np.ones((steps, sites), dtype=bool)
    accumulated = np.zeros(sites)
    for s in range(1, steps):
        accumulated += np.nan_to_num(rel_change[s], nan=np.inf)
        mask[s] = accumulated >= alpha
        accumulated[mask[s]] = 0.0
    return mask


def smoothcache_mask(rel_change: np.ndarray, site_flops, budget: float, iterations: int = 60) -> np.ndarray:
    """The threshold mask with the largest ``alpha`` whose cost is at most ``budget``."""
    flops = np.asarray(site_flops, dtype=np.float64)

    def cost(mask: np.ndarray) -> float:
        return float((mask * flops).sum() / (mask.shape[0] * flops.sum()))

    low, high = 0.0, float(np.nansum(rel_change)) + 1.0  # alpha = high reuses every step after 0
    if cost(threshold_mask(rel_change, high)) > budget:
        raise ValueError(f"budget {budget} is below the cost of step 0 alone")
    for _ in range(iterations):
        mid = (low + high) / 2
        if cost(threshold_mask(rel_change, mid)) <= budget:
            high = mid
        else:
            low = mid
    return threshold_mask(rel_change, high)
