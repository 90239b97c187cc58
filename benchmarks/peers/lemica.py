"""LeMiCa (NeurIPS 2025): whole-model compute steps placed by a lexicographic minimax path.

LeMiCa builds the same error graph as gocopt's path family — a node per step, an edge ``c → d``
weighted by the end-to-end error of computing at ``c`` and ``d`` and reusing (plain) every step
between — but does not add the edge errors up. Its path with a given number of computes is the
one whose *largest* edge error is least, ties broken by the next largest, and so on
(lexicographic minimax): it bounds the worst reuse span instead of the total, which its paper
argues is robust where edge errors do not add. Edges that reuse nothing weigh 0. As in its code, a
path always computes the last step, and its paper weighs each span end to end (the head-to-head
measures LeMiCa's spans with ``method="end-to-end"``, not gocopt's lookahead estimate).

Dynamic programming is exact for this order: extending two paths by the same edge keeps their
order (inserting one value into two multisets compared largest-first), so each (computes, last
step) keeps only its best path, as in :func:`gocopt.search.path.best_path`.
"""

from __future__ import annotations

from gocopt.errors import ScheduleError
from gocopt.search.path import EdgeTable


def lexicographic_minimax_path(table: EdgeTable, computes: int) -> list[int]:
    """The ``computes`` steps (step 0 first, the last step last, as LeMiCa's paths always end) whose
    reuse spans' errors, sorted largest first, are lexicographically least."""
    n = table.steps
    if not 2 <= computes <= n:
        raise ScheduleError(f"a LeMiCa path through {n} steps computes the first and the last step: it needs "
                            f"2..{n} compute steps, got {computes}")
    # best[d]: (errors sorted largest first, path) of the best path with k + 1 computes ending at d
    best: dict[int, tuple[tuple[float, ...], list[int]]] = {0: ((), [0])}
    for _ in range(1, computes):
        layer: dict[int, tuple[tuple[float, ...], list[int]]] = {}
        for c, (errors, path) in best.items():
            for d in range(c + 1, min(n, c + table.max_gap + 1)):
                weight = table.weight(c, d)
                if weight == float("inf"):
                    continue
                candidate = (_insert(errors, weight), path + [d])
                if d not in layer or candidate[0] < layer[d][0]:
                    layer[d] = candidate
        best = layer
    finished = [(errors, path) for c, (errors, path) in best.items() if c == n - 1]
    if not finished:
        raise ScheduleError(f"no path with {computes} computes spans {n} steps with gaps of at most "
                            f"{table.max_gap}; measure longer spans")
    return min(finished)[1]


def _insert(errors: tuple[float, ...], error: float) -> tuple[float, ...]:
    return tuple(sorted((*errors, error), reverse=True))
