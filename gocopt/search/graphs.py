"""A graph budget for masks: at most ``max_graphs`` step graphs per schedule, cost still ≤ budget.

Each distinct row of a mask (which sites compute at a step) is one step graph once the schedule
is set (:mod:`gocopt.schedule.plan`): one inductor compilation before the first image, one set of
CUDA graphs kept alive. A mask filled site by site has nearly one row per step. This pass keeps
the mask's intent and few rows:

1. **merge**: while there are too many rows, the two whose merge loses the least computes become
   one — the sites both compute (computing less never breaks the budget);
2. **spend back, row-wide**: what the merges freed is spent without making new rows — a site added
   to every step of a row, or a step moved to a row that computes more — best value per FLOP first;
3. **top up**: the last graph of the budget is one new row — an existing row plus a few sites,
   for some of its steps — that spends what is left, so the cost ends close to the budget (within
   one site-step when one step has room for the rest, as the fill left it).

"Value" of computing (step, site) is the search's priority (:func:`~gocopt.search.space.priority`:
high = reusing it hurts), so the pass removes the computes the candidate itself valued least.
Step 0 computes everything and is its own graph (it fills the histories), so rows count from 1.
"""

from __future__ import annotations

import numpy as np

from gocopt.errors import ScheduleError
from gocopt.schedule.plan import distinct_graphs

MIN_GRAPHS = 2  # step 0, and one row for every other step
DEFAULT_MAX_GRAPHS = 6  # inductor compilations (and CUDA graph sets) per schedule


def check_max_graphs(max_graphs: int | None) -> None:
    """Refuse a graph limit no schedule can meet (``None``: no limit)."""
    if max_graphs is not None and (isinstance(max_graphs, bool) or not isinstance(max_graphs, int)
                                   or max_graphs < MIN_GRAPHS):
        raise ScheduleError(f"max_graphs={max_graphs!r}: a schedule needs at least {MIN_GRAPHS} step graphs (step 0 "
                            f"and one more); use max_graphs >= {MIN_GRAPHS}, or None for no limit")


def limit_graphs(mask: np.ndarray, scores: np.ndarray, flops: np.ndarray, budget: float,
                 max_graphs: int) -> np.ndarray:
    """``mask`` with at most ``max_graphs`` step graphs and cost ≤ ``budget`` (see the module docstring).

    ``scores`` are the candidate's (steps, sites) priorities (lower = reuse first; step 0 ignored).
    Returns ``mask`` itself when it already fits.
    """
    check_max_graphs(max_graphs)
    if distinct_graphs(mask) <= max_graphs:
        return mask
    steps = mask.shape[0]
    unit = flops / (steps * flops.sum())  # cost of one site-step
    value = _values(scores)
    rows = max_graphs - 1  # graphs for steps 1..: one is kept for the top-up
    patterns, members = _merge(mask[1:], value[1:], rows - 1 if rows > 1 else 1)
    out = mask.copy()
    for pattern, steps_of in zip(patterns, members):
        out[[s + 1 for s in steps_of]] = pattern
    spent = float((out * unit).sum())
    out, spent = _spend_row_wide(out, value, unit, budget, spent)
    if rows > 1:
        out = _top_up(out, value, unit, budget, spent)
    assert distinct_graphs(out) <= max_graphs and float((out * unit).sum()) <= budget + 1e-12
    return out


def _values(scores: np.ndarray) -> np.ndarray:
    """Priority → positive value of computing; step 0 (always computed) gets none."""
    finite = np.where(np.isfinite(scores), scores, np.nan)
    top = np.nanmax(finite[1:]) if np.isfinite(finite[1:]).any() else 0.0
    value = np.exp(np.clip(np.nan_to_num(finite, nan=top) - top, -50.0, 0.0))
    value[0] = 0.0
    return value


def _merge(rows: np.ndarray, value: np.ndarray, keep: int) -> tuple[list[np.ndarray], list[list[int]]]:
    """Distinct rows merged pairwise (intersection) until ``keep`` remain; least value lost first."""
    groups: dict[bytes, list[int]] = {}
    for s, row in enumerate(rows):
        groups.setdefault(row.tobytes(), []).append(s)
    patterns = [rows[g[0]].copy() for g in groups.values()]
    members = [list(g) for g in groups.values()]
    worth = [value[g].sum(axis=0) for g in members]  # per pattern: value of each site over its steps
    while len(patterns) > keep:
        best, pair = np.inf, (0, 1)
        for a in range(len(patterns)):
            for b in range(a + 1, len(patterns)):
                lost = worth[a][patterns[a] & ~patterns[b]].sum() + worth[b][patterns[b] & ~patterns[a]].sum()
                if lost < best:
                    best, pair = lost, (a, b)
        a, b = pair
        patterns[a] = patterns[a] & patterns[b]
        members[a] += members[b]
        worth[a] = worth[a] + worth[b]
        del patterns[b], members[b], worth[b]
    return patterns, members


def _rows(mask: np.ndarray) -> dict[bytes, list[int]]:
    """Steps 1.. grouped by their row."""
    rows: dict[bytes, list[int]] = {}
    for s in range(1, mask.shape[0]):
        rows.setdefault(mask[s].tobytes(), []).append(s)
    return rows


def _spend_row_wide(mask: np.ndarray, value: np.ndarray, unit: np.ndarray, budget: float,
                    spent: float) -> tuple[np.ndarray, float]:
    """Spend the budget left without new rows: add a site to a whole row, or move a step to another
    existing row that is worth more; the best value per cost first (a move that gains value for no
    more cost first of all), while the budget allows."""
    mask = mask.copy()
    while True:
        rows = _rows(mask)
        patterns = [mask[g[0]] for g in rows.values()]
        costs = [float(unit[p].sum()) for p in patterns]
        best = 0.0
        move: tuple[list[int], int | None, np.ndarray | None, float] | None = None  # steps, site, row, cost
        for k, (pattern, steps_of) in enumerate(zip(patterns, rows.values())):
            gain = value[steps_of].sum(axis=0)
            cost = len(steps_of) * unit
            for i in np.flatnonzero(~pattern):
                if spent + cost[i] <= budget + 1e-12 and gain[i] / cost[i] > best:
                    best, move = gain[i] / cost[i], (steps_of, int(i), None, float(cost[i]))
            for j, other in enumerate(patterns):
                extra = costs[j] - costs[k]
                if j == k or spent + extra > budget + 1e-12:
                    continue
                for s in steps_of:
                    delta = float(value[s, other].sum() - value[s, pattern].sum())
                    ratio = np.inf if extra <= 0 else delta / extra
                    if delta > 1e-15 and ratio > best:
                        best, move = ratio, ([s], None, other, extra)
        if move is None:
            return mask, spent
        chosen, site, row, extra_cost = move
        if row is None:
            mask[chosen, site] = True
        else:
            mask[chosen[0]] = row
        spent += extra_cost


def _top_up(mask: np.ndarray, value: np.ndarray, unit: np.ndarray, budget: float, spent: float) -> np.ndarray:
    """One new row: an existing row plus a few sites, for some of that row's steps. Tried for every
    row and number of steps ``m``, the sites added best value per cost first while ``m`` copies fit
    the budget; the choice that spends the most (then gains most) wins, so the cost ends as close to
    the budget as one new row allows (within one site-step when one step has room for the rest)."""
    left = budget - spent
    best, chosen = (-np.inf, 0.0), None
    for steps_of in _rows(mask).values():
        row = mask[steps_of[0]]
        free = np.flatnonzero(~row)
        for m in range(1, len(steps_of) + 1):
            chosen_steps = sorted(steps_of, key=lambda s: -value[s, free].sum())[:m]
            worth = value[chosen_steps].sum(axis=0)
            added, room = [], left / m
            for i in sorted(free, key=lambda i: -worth[i] / unit[i]):
                if unit[i] <= room + 1e-15:
                    added.append(i)
                    room -= unit[i]
            if not added:
                break
            rank = (m * float(unit[added].sum()), float(worth[added].sum()))
            if rank > best:
                best, chosen = rank, (chosen_steps, added)
    if chosen is None:
        return mask
    mask = mask.copy()
    for s in chosen[0]:
        mask[s, chosen[1]] = True
    return mask


__all__ = ["DEFAULT_MAX_GRAPHS", "MIN_GRAPHS", "limit_graphs"]
