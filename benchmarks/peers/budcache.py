"""BudCache-style placement (ICML 2026, arXiv 2606.13496): a fixed number of full steps, searched.

BudCache fixes the number of full model evaluations (the budget, in NFE) and searches *which*
steps they are: a binary step mask with exactly that many computes, scored end to end against the
uncached output on calibration seeds, explored by simulated annealing (swap one computed step for
one skipped step, accept a worse mask with probability ``exp(−Δ/T)``, ``T`` cooling geometrically)
and finished by hill climbing (take any improving swap until none of the sampled ones improves).
Step 0 is always computed (there is nothing to reuse before it).

Every score is a sampling run, so the search is sized in evaluations; the head-to-head gives it
the model work of gocopt's own span table (``QualityBench.budcache_mask``). A mask already scored
is not run again.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from gocopt.errors import ScheduleError

ANNEALING_SHARE = 0.7  # of the evaluations; the rest climb from the best mask found
START_TEMPERATURE, END_TEMPERATURE = 0.3, 0.003  # relative to the starting mask's error


def budcache_row(score: Callable[[np.ndarray], float], start: np.ndarray, evaluations: int,
                 seed: int = 0) -> np.ndarray:
    """The best ``(steps,)`` compute row with ``start``'s number of computes that ``evaluations``
    runs of ``score`` (lower is better) found, annealing from ``start`` then climbing."""
    start = np.asarray(start, dtype=bool)
    if not start[0]:
        raise ScheduleError("BudCache's masks compute step 0")
    if evaluations < 1:
        raise ScheduleError(f"BudCache needs at least one evaluation, got {evaluations}")
    rng = np.random.default_rng(seed)
    seen: dict[bytes, float] = {}

    def evaluate(row: np.ndarray) -> float | None:
        key = row.tobytes()
        if key not in seen:
            if len(seen) >= evaluations:
                return None  # out of runs
            seen[key] = float(score(row))
        return seen[key]

    def neighbour(row: np.ndarray) -> np.ndarray | None:
        on, off = np.flatnonzero(row[1:]) + 1, np.flatnonzero(~row)
        if not len(on) or not len(off):
            return None
        moved = row.copy()
        moved[rng.choice(on)], moved[rng.choice(off)] = False, True
        return moved

    def propose(row: np.ndarray) -> tuple[np.ndarray, float] | None:
        """A random swap of ``row`` and its error; None when no swap exists or the runs are spent."""
        candidate = neighbour(row)
        error = None if candidate is None else evaluate(candidate)
        return None if candidate is None or error is None else (candidate, error)

    current = start.copy()
    current_error = evaluate(current)
    assert current_error is not None
    best, best_error = current, current_error
    anneal = max(0, int(ANNEALING_SHARE * evaluations) - 1)
    scale = max(current_error, 1e-30)
    for k in range(anneal):
        temperature = scale * START_TEMPERATURE * (END_TEMPERATURE / START_TEMPERATURE) ** (k / max(anneal - 1, 1))
        proposal = propose(current)
        if proposal is None:
            break
        candidate, error = proposal
        if error <= current_error or rng.random() < math.exp(-(error - current_error) / temperature):
            current, current_error = candidate, error
            if error < best_error:
                best, best_error = candidate, error
    misses = 0
    while misses < 4 * len(start):  # hill climbing: stop when many sampled swaps did not improve
        proposal = propose(best)
        if proposal is None:
            break
        candidate, error = proposal
        if error < best_error:
            best, best_error, misses = candidate, error, 0
        else:
            misses += 1
    return best
