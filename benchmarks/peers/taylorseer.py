"""TaylorSeer (Liu et al., ICCV 2025): its schedule shape and its forecast, as its code computes them.

**Shape.** The first steps in full, then the whole model once every ``N`` steps. At a budget the
shape is the one of its own kind that computes the most while costing at most the budget: the
smallest interval ``N`` that fits with the first ``warmup`` steps computed, then as many extra
warm-up steps as the rest of the budget pays for (:func:`taylorseer_mask`).

**Forecast** (:class:`TaylorSeerForecast`). At every computed step ``c`` (the one before it ``p``,
``δ = c − p``) TaylorSeer refreshes its Taylor factors by *backward differences of the factors
it held*: ``f₀ = F[c]``, ``fᵢ₊₁ = (fᵢ − fᵢ_old) / δ``, as far as the old factors reach and only
from the step before the warm-up ends on (its ``first_enhance − 2`` gate); a skipped step ``s``
is the truncated Taylor series ``Σᵢ fᵢ · xⁱ / i!`` with ``x = s − c``. With even gaps ``N`` one
interval ahead this is ``2.5 F[c] − 2 F[c−N] + 0.5 F[c−2N]`` at order 2 — *not* the polynomial
through the three values (``3, −3, 1``), which is gocopt's own
:class:`~gocopt.schedule.predictors.Taylor`. Both are linear in the computed values, so the
forecast is a gocopt predictor: its coefficients are fixed by the mask, the step plans run it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gocopt.errors import ScheduleError
from gocopt.schedule.predictors import computed_steps_before
from gocopt.schedule.reuse import PLAIN, Action, Reuse

ORDERS = (1, 2, 3, 4)


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


@dataclass(frozen=True)
class TaylorSeerForecast:
    """TaylorSeer's forecast of ``order`` 1 to 4 (a gocopt predictor, for the benchmarks only:
    ``gocopt.load`` does not know its kind). ``warmup``: TaylorSeer's ``first_enhance``, the steps
    computed in full first; its factors above order 0 start at the computed step after
    ``warmup − 2``, so on FORA's mask (nothing computed twice in a row) pass ``warmup=1``."""

    order: int = 2
    warmup: int = 2
    kind: str = field(default="taylorseer", init=False, repr=False)

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ScheduleError(f"TaylorSeer's order is one of {ORDERS} (its DiT code defaults to 4), got {self.order}")

    @classmethod
    def for_mask(cls, mask: np.ndarray, order: int) -> TaylorSeerForecast:
        """The forecast with the warm-up ``mask`` has (its steps computed before the first reuse)."""
        return cls(order, warmup=warmup_steps(mask))

    def actions(self, mask: np.ndarray) -> list[list[Action]]:
        before = computed_steps_before(mask)
        return [[None if mask[s, i] else self._reuse(s, before[s][i]) for i in range(mask.shape[1])]
                for s in range(mask.shape[0])]

    def _reuse(self, step: int, computed: list[int]) -> Reuse:
        if not computed:
            raise ScheduleError(f"step {step} reuses a site that was never computed")
        factors = taylor_factors(computed, self.order, self.warmup)
        x = step - computed[-1]
        value: dict[int, float] = {}
        for i, factor in enumerate(factors):
            for u, c in factor.items():
                value[u] = value.get(u, 0.0) + c * x**i / math.factorial(i)
        terms = tuple((step - u, c) for u, c in sorted(value.items(), reverse=True) if c != 0.0)
        return Reuse(terms) if terms else PLAIN

    def check_sites(self, num_sites: int) -> None:
        pass

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "order": self.order, "warmup": self.warmup}


def warmup_steps(mask: np.ndarray) -> int:
    """The steps a mask computes in full before its first reuse: TaylorSeer's ``first_enhance``."""
    reused = np.flatnonzero(~np.asarray(mask, dtype=bool).all(axis=1))
    return int(reused[0]) if len(reused) else len(mask)


def taylor_factors(computed: list[int], order: int, warmup: int) -> list[dict[int, float]]:
    """TaylorSeer's factors after the computes at ``computed`` (steps, oldest first), each as
    coefficients over the computed values: refreshed at every compute by backward differences
    of the factors held before it, divided by the gap to the previous compute."""
    held: list[dict[int, float]] = []
    for k, c in enumerate(computed):
        fresh = [{c: 1.0}]
        if k and c > warmup - 2:
            gap = c - computed[k - 1]
            for i in range(min(order, len(held))):
                keys = set(fresh[i]) | set(held[i])
                fresh.append({u: (fresh[i].get(u, 0.0) - held[i].get(u, 0.0)) / gap for u in keys})
        held = fresh
    return held
