"""TaylorSeer-style caching: its published schedule shape, forecast with its own predictor.

TaylorSeer (Liu et al., ICCV 2025) computes the first steps in full, then the whole model once
every ``N`` steps, and forecasts every skipped step from finite differences of the last computed
features, scaled by step distance (order 1–2). The forecast is gocopt's
:class:`~gocopt.schedule.predictors.Taylor` predictor; this module gives the shape at a budget.

At a budget the shape is the one of its own kind that computes the most while costing at most
the budget: the smallest interval ``N`` that fits with the first ``warmup`` steps computed, then
as many extra warm-up steps as the rest of the budget pays for.
"""

from __future__ import annotations

import math

import numpy as np

from gocopt.errors import ScheduleError


def taylorseer_mask(steps: int, num_sites: int, budget: float, warmup: int = 2) -> np.ndarray:
    """The first ``warmup`` (or more) steps computed, then one full step every ``N``; cost ≤ ``budget``."""

    def rows(first: int, interval: int) -> np.ndarray:
        computed = np.zeros(steps, dtype=bool)
        computed[:first] = True
        computed[first - 1::interval] = True  # the period starts at the last warm-up step
        return computed

    limit = math.floor(budget * steps + 1e-9)  # most full steps the budget pays for
    if limit < 1:
        raise ScheduleError(f"budget {budget} pays for no full step of {steps}")
    first = min(warmup, limit)
    interval = next(n for n in range(1, steps + 1) if rows(first, n).sum() <= limit)
    while first < steps and rows(first + 1, interval).sum() <= limit:
        first += 1
    return np.repeat(rows(first, interval)[:, None], num_sites, axis=1)
