"""BudCache-style placement (ICML 2026, arXiv 2606.13496): a fixed number of full steps, searched
as its code searches them.

BudCache fixes the number of full model evaluations (NFE) and searches *which* steps they are: a
binary step mask with exactly that many computes, scored end to end against the uncached output on
calibration seeds. Its search, as its code runs it:

1. **Start**: a random mask whose first ``max(1, nfe // 4)`` steps are computed (the early, fast-
   changing steps), the rest of the computes drawn at random from the later steps.
2. **Simulated annealing**, ``ANNEALING_ITERATIONS`` = 200 proposals, the temperature falling
   geometrically from 0.05 to 1e-5. A proposal is a *single swap* (90 %: one computed step moves to
   a skipped one; 70 % of those stay within ±3 steps of where it was, the rest jump anywhere) or a
   *double swap* (10 %: two such moves at once). A worse mask is accepted with ``exp(−Δ/T)``.
3. **Steepest-ascent hill climbing** from the best mask, at most ``CLIMB_ROUNDS`` = 20 rounds: each
   round scores every move of every computed step by ±1, ±2, ±3 steps plus ``FAR_JUMPS`` = 2 random
   far jumps per computed step, and takes the best if it improves; it stops at a round that does not.

Two adaptations, both stated where the head-to-head uses it: step 0 is never moved (gocopt's masks
compute every site at step 0, and BudCache's start computes it anyway), and the temperatures apply
to errors *relative to the start's* (BudCache's own score is normalised; our MSE is not), so the
acceptance rule sees the same scale. Every score is a sampling run, so the search is cut off once
``evaluations`` distinct masks have been scored (the head-to-head gives it the set-up work of
gocopt's compile); a mask already scored is not run again.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from gocopt.errors import ScheduleError

ANNEALING_ITERATIONS = 200
START_TEMPERATURE, END_TEMPERATURE = 0.05, 1e-5
SINGLE_SWAP_SHARE, LOCAL_SHARE, LOCAL_REACH = 0.9, 0.7, 3
CLIMB_ROUNDS, FAR_JUMPS = 20, 2


class _OutOfRuns(Exception):
    """The evaluation budget is spent: the search ends with the best mask so far."""


def budcache_start(steps: int, computes: int, rng: np.random.Generator) -> np.ndarray:
    """BudCache's random start: the first ``max(1, computes // 4)`` steps, the rest drawn from later."""
    if not 1 <= computes <= steps:
        raise ScheduleError(f"BudCache places 1..{steps} computes in {steps} steps, got {computes}")
    head = max(1, computes // 4)
    row = np.zeros(steps, dtype=bool)
    row[:head] = True
    row[rng.choice(np.arange(head, steps), size=computes - head, replace=False)] = True
    return row


def propose(row: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """One annealing proposal: a single swap (90 %) or a double swap (10 %); None if none exists."""
    moves = 1 if rng.random() < SINGLE_SWAP_SHARE else 2
    moved = row
    for _ in range(moves):
        candidate = _swap(moved, rng)
        if candidate is None:
            break
        moved = candidate
    return None if moved is row else moved


def _swap(row: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """Move one computed step (never step 0) to a skipped one: within ±3 steps 70 % of the time
    (anywhere if none is free there), anywhere otherwise."""
    on, off = np.flatnonzero(row[1:]) + 1, np.flatnonzero(~row)
    if not len(on) or not len(off):
        return None
    source = int(rng.choice(on))
    near = off[np.abs(off - source) <= LOCAL_REACH]
    target = int(rng.choice(near)) if len(near) and rng.random() < LOCAL_SHARE else int(rng.choice(off))
    moved = row.copy()
    moved[source], moved[target] = False, True
    return moved


def climbing_moves(row: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Every move of one round of hill climbing: each computed step (not step 0) by ±1..±3 to a
    skipped step, and ``FAR_JUMPS`` random jumps of it to skipped steps farther away."""
    steps, moves = len(row), []
    for source in np.flatnonzero(row[1:]) + 1:
        for delta in (d for r in range(1, LOCAL_REACH + 1) for d in (-r, r)):
            target = source + delta
            if 0 < target < steps and not row[target]:
                moves.append(_moved(row, source, target))
        far = [t for t in np.flatnonzero(~row) if abs(t - source) > LOCAL_REACH]
        for target in rng.choice(far, size=min(FAR_JUMPS, len(far)), replace=False) if far else ():
            moves.append(_moved(row, source, int(target)))
    return moves


def _moved(row: np.ndarray, source: int, target: int) -> np.ndarray:
    moved = row.copy()
    moved[source], moved[target] = False, True
    return moved


def budcache_row(score: Callable[[np.ndarray], float], steps: int, computes: int, evaluations: int,
                 seed: int = 0) -> np.ndarray:
    """The best ``(steps,)`` compute row with ``computes`` computes that BudCache's search finds in at
    most ``evaluations`` distinct runs of ``score`` (lower is better)."""
    if evaluations < 1:
        raise ScheduleError(f"BudCache needs at least one evaluation, got {evaluations}")
    rng = np.random.default_rng(seed)
    seen: dict[bytes, float] = {}

    def evaluate(row: np.ndarray) -> float:
        key = row.tobytes()
        if key not in seen:
            if len(seen) >= evaluations:
                raise _OutOfRuns
            seen[key] = float(score(row))
        return seen[key]

    current = budcache_start(steps, computes, rng)
    best, best_error = current, evaluate(current)
    scale = max(best_error, 1e-30)  # temperatures act on errors relative to the start's
    current_error = best_error
    try:
        for k in range(ANNEALING_ITERATIONS):
            temperature = START_TEMPERATURE * (END_TEMPERATURE / START_TEMPERATURE) ** (k / (ANNEALING_ITERATIONS - 1))
            candidate = propose(current, rng)
            if candidate is None:
                break
            error = evaluate(candidate)
            if error <= current_error or rng.random() < math.exp(-(error - current_error) / scale / temperature):
                current, current_error = candidate, error
                if error < best_error:
                    best, best_error = candidate, error
        for _ in range(CLIMB_ROUNDS):
            scored = [(evaluate(move), i, move) for i, move in enumerate(climbing_moves(best, rng))]
            if not scored or min(scored, key=lambda item: item[:2])[0] >= best_error:
                break
            best_error, _, best = min(scored, key=lambda item: item[:2])
    except _OutOfRuns:
        pass
    return min(((e, np.frombuffer(k, dtype=bool)) for k, e in seen.items()), key=lambda item: item[0])[1].copy()


__all__ = ["budcache_row", "budcache_start", "climbing_moves", "propose"]
