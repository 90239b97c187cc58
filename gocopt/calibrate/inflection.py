"""Inflection points: sampling steps where features turn back on their trajectory.

GOC extrapolates ``O[s−1] + w·(O[s−1] − O[s−2])``: right after a turn the last difference
points the wrong way. The seed paper hand-picked one such step for DiT-XL/2 (step 17 of 20) and
did not publish how. gocopt flags a step when, across sites, the step-to-step differences stop
agreeing in direction: the FLOP-weighted mean of ``direction_cos`` falls below ``threshold``.
Whether switching correction off there pays is left to the search to decide, on end-to-end
quality (at small scale it did not, GOC.md §8).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULT_THRESHOLD = 0.3


def direction_by_step(stats: pd.DataFrame, site_flops: np.ndarray | None = None) -> pd.Series:
    """FLOP-weighted mean over sites of ``direction_cos``, per step (NaN for steps 0 and 1)."""
    frame = stats[["step", "site", "direction_cos"]].dropna()
    weights = np.ones(int(stats["site"].max()) + 1) if site_flops is None else np.asarray(site_flops, dtype=float)
    if frame.empty:  # fewer than three steps, or no site ever moved: no direction to compare
        return pd.Series(dtype=np.float64)
    frame = frame.assign(weight=weights[frame["site"].to_numpy()])
    grouped = frame.groupby("step")
    return grouped.apply(lambda g: float(np.average(g["direction_cos"], weights=g["weight"])), include_groups=False)


def detect_inflections(stats: pd.DataFrame, site_flops=None, threshold: float = DEFAULT_THRESHOLD) -> list[int]:
    """Steps whose FLOP-weighted mean direction cosine is below ``threshold``."""
    direction = direction_by_step(stats, site_flops)
    return [int(step) for step, value in direction.items() if value < threshold]
