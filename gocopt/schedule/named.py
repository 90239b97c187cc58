"""Named host schedules: the baselines every searched schedule is compared with and seeded by.

* ``none`` — compute everything (the uncached model).
* ``interval:K`` — FORA-style: every site is computed at steps divisible by K, reused otherwise.
* ``l2c:B`` — Learning-to-Cache-like static schedule at cost B: reuse concentrated in the early,
  noisy steps and almost none in the last ones, alternating blocks so that no site is reused many
  steps in a row (L2C's learned DDIM-20 router looks like this; GOC.md §6).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from gocopt.errors import ScheduleError
from gocopt.schedule.goc import GOCConfig
from gocopt.schedule.predictors import Predictor
from gocopt.schedule.schedule import Schedule

PAPER_W = 1.2  # the GOC paper's hand-set step size for the interval-2 schedule (GOC.md §3)


def paper_goc(steps: int, w: float = PAPER_W) -> GOCConfig:
    """The GOC paper's hand-set correction, for any step count: every step from 2 on (the first step
    with two values queued), except the inflection step at 85 % of the run (17 of 20, GOC.md §4).
    On the interval-2 schedule the corrected (reused) steps are exactly the paper's {3, 5, …, 15, 19}."""
    inflection = round(0.85 * steps)
    return GOCConfig.at_steps(w, [s for s in range(2, steps) if s != inflection])


def interval_mask(steps: int, num_sites: int, k: int) -> np.ndarray:
    if k < 1:
        raise ScheduleError(f"interval must be >= 1, got {k}")
    return np.repeat((np.arange(steps) % k == 0)[:, None], num_sites, axis=1)


def interval_at_budget(steps: int, num_sites: int, budget: float) -> np.ndarray:
    """FORA at a budget, the way the GOC paper sets its baselines: interval-K where 1/budget is
    K; between 1/2 and 1, interval 2 over the first steps only (0.75 = the first half at
    interval 2, GOC.md §8); otherwise the smallest K whose cost fits. Where interval-K still costs
    more than the budget (K = 4 at 50 steps computes 13 of 50), its last computed steps are
    reused instead until it fits: a baseline never runs over the budget it is compared at."""
    if budget > 0.5 and budget < 1:
        mask = np.ones((steps, num_sites), dtype=bool)
        for s in range(1, steps, 2):
            if mask.mean() <= budget + 1e-12:
                break
            mask[s] = False
        return mask
    mask = interval_mask(steps, num_sites, max(1, int(np.ceil(1 / budget - 1e-9))))
    for s in range(steps - 1, 0, -1):
        if mask.mean() <= budget + 1e-12:
            break
        mask[s] = False
    return mask


def interval_covering(steps: int, num_sites: int, budget: float) -> np.ndarray:
    """The densest interval schedule that costs at least ``budget`` (interval ``floor(1/budget)``):
    where the search's interval family starts before it fills the mask down to the budget. Not a
    baseline — FORA at a budget is :func:`interval_at_budget`, which never exceeds it."""
    return interval_mask(steps, num_sites, max(1, math.floor(1 / budget)))


def l2c_mask(steps: int, site_blocks: Sequence[int] | np.ndarray, site_flops: Sequence[float] | np.ndarray,
             budget: float) -> np.ndarray:
    """Reuse (step, site) pairs in order of an early-step priority until the cost is <= budget."""
    if not 0 < budget <= 1:
        raise ScheduleError(f"l2c budget must be in (0, 1], got {budget}")
    flops = np.asarray(site_flops, dtype=np.float64)
    mask = np.ones((steps, len(flops)), dtype=bool)
    total = steps * flops.sum()
    cost = 1.0
    pairs = []
    for s in range(1, steps):
        earliness = 1.0 - s / max(1, steps - 1)
        for i, block in enumerate(site_blocks):
            alternate = 1.0 if (s + block) % 2 == 1 else 0.5
            pairs.append((-(earliness * alternate), s, i))
    for _, s, i in sorted(pairs):
        if cost <= budget:
            break
        mask[s, i] = False
        cost -= flops[i] / total
    return mask


def named_schedule(
    spec: str,
    site_ids: Sequence[str],
    *,
    steps: int,
    site_flops: Sequence[float] | None = None,
    site_blocks: Sequence[int] | None = None,
    timesteps: Sequence[float] | None = None,
    predictor: Predictor | None = None,
) -> Schedule:
    """Build ``none``, ``interval:K`` or ``l2c:B`` for these sites and this many steps."""
    name, _, arg = spec.partition(":")
    n = len(site_ids)
    if name == "none":
        mask = np.ones((steps, n), dtype=bool)
    elif name == "interval":
        try:
            mask = interval_mask(steps, n, int(arg))
        except ValueError as e:
            raise ScheduleError(f"bad schedule {spec!r}: write interval:K with an integer K >= 1") from e
    elif name == "l2c":
        if site_flops is None or site_blocks is None:
            raise ScheduleError("l2c schedules need the sites' FLOPs and blocks")
        try:
            budget = float(arg)
        except ValueError as e:
            raise ScheduleError(f"bad schedule {spec!r}: write l2c:B with a budget B in (0, 1]") from e
        mask = l2c_mask(steps, site_blocks, site_flops, budget)
    else:
        raise ScheduleError(f"unknown schedule {spec!r}; named schedules are none, interval:K, l2c:B (or a file path)")
    return Schedule(mask, tuple(site_ids), None if timesteps is None else tuple(timesteps), predictor or GOCConfig(),
                    spec)
