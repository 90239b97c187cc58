"""Predictors: how a reused site's value is made, stored in the schedule as data.

A schedule's mask says *whether* a site is computed at a step; its predictor says what a reused
site hands on instead. Every predictor here is a linear combination of values the site produced
at earlier steps, ``Σ c_k · v[s − a_k]``, with ages and coefficients fixed by the mask alone — so
the step plans (:mod:`gocopt.schedule.plan`) are made once when the schedule is set and run
without a single per-call decision, whichever predictor the search picked.

* :class:`~gocopt.schedule.goc.GOCConfig` — GOC (GOC.md §3): ``v1 + w (v1 − v2)`` from the two
  values last *used*; ``w = 0`` is plain reuse.
* :class:`Taylor` — polynomial extrapolation: the polynomial through the last ``order + 1``
  *computed* values, evaluated at the reused step (Lagrange's form, any gaps). It is *not*
  TaylorSeer's forecast, which truncates a Taylor series of backward differences (one interval
  ahead at order 2: ``2.5, −2, 0.5`` where this is ``3, −3, 1``); that one is rebuilt as a peer in
  ``benchmarks/peers/taylorseer.py``.
* :class:`Fitted` — coefficients over the last ``history`` computed values, fitted per
  (step, site) by least squares on the uncached calibration trajectories
  (:func:`gocopt.schedule.fit.fit_predictor`). It subsumes the two above on the data it was fitted
  on; it is stored coefficient by coefficient, so the file alone reproduces the run.

Each predictor turns a mask into per-(step, site) actions (``None`` = compute, or a
:class:`~gocopt.schedule.plan.Reuse`) and round-trips through JSON (``to_json`` / :func:`from_json`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from gocopt.errors import ScheduleError
from gocopt.schedule.goc import GOCConfig
from gocopt.schedule.reuse import PLAIN, Action, Reuse, Term, checked_coefficient


class Predictor(Protocol):
    """What a schedule needs of a predictor: its actions for a mask, and its JSON form."""

    @property
    def kind(self) -> str: ...

    def actions(self, mask: np.ndarray) -> list[list[Action]]: ...

    def check_sites(self, num_sites: int) -> None: ...

    def to_json(self) -> dict[str, Any]: ...


def computed_steps_before(mask: np.ndarray) -> list[list[list[int]]]:
    """Per (step, site): the steps before it at which the site was computed, oldest first."""
    steps, sites = mask.shape
    seen: list[list[int]] = [[] for _ in range(sites)]
    out = []
    for step in range(steps):
        out.append([list(seen[i]) for i in range(sites)])
        for i in np.flatnonzero(mask[step]):
            seen[i].append(step)
    return out


def lagrange_terms(step: int, points: list[int]) -> tuple[Term, ...]:
    """The polynomial through the values at ``points`` evaluated at ``step``, as (age, coefficient)."""
    terms = []
    for j, cj in enumerate(points):
        coef = 1.0
        for k, ck in enumerate(points):
            if k != j:
                coef *= (step - ck) / (cj - ck)
        terms.append((step - cj, coef))
    return tuple(terms)


@dataclass(frozen=True)
class Taylor:
    """The polynomial of order 0–3 through the last computed values, extrapolated (lower order
    while fewer are available; plain reuse with one)."""

    order: int = 1
    kind: str = field(default="taylor", init=False, repr=False)

    def __post_init__(self) -> None:
        if self.order not in (0, 1, 2, 3):
            raise ScheduleError(f"Taylor order must be 0–3, got {self.order}")

    def actions(self, mask: np.ndarray) -> list[list[Action]]:
        before = computed_steps_before(mask)
        return [[None if mask[s, i] else (Reuse(lagrange_terms(s, before[s][i][-(self.order + 1):]))
                                          if len(before[s][i]) > 1 and self.order else PLAIN)
                 for i in range(mask.shape[1])] for s in range(mask.shape[0])]

    def check_sites(self, num_sites: int) -> None:
        pass

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "order": self.order}


@dataclass(frozen=True, eq=False)
class Fitted:
    """Least-squares coefficients over the last ``history`` computed values, per reused (step, site).

    Args:
        history: how many past computed values each forecast combines (fewer where fewer exist).
        terms: ``(step, site) → ((age, coefficient), ...)`` for every reused pair of the mask it
            was fitted for; another mask is refused (refit with the new mask).
        fit: how the coefficients were fitted (calibration seeds, ridge), for the record.
    """

    history: int
    terms: Mapping[tuple[int, int], tuple[Term, ...]]
    fit: Mapping[str, Any] = field(default_factory=dict)
    kind: str = field(default="fitted", init=False, repr=False)

    def __post_init__(self) -> None:
        if self.history < 1:
            raise ScheduleError(f"a fitted predictor needs history >= 1, got {self.history}")
        object.__setattr__(self, "terms", {
            (int(s), int(i)): tuple((int(a), checked_coefficient(c, f"fitted predictor at step {s}, site {i}"))
                                    for a, c in t)
            for (s, i), t in self.terms.items()})

    def actions(self, mask: np.ndarray) -> list[list[Action]]:
        out: list[list[Action]] = []
        for s in range(mask.shape[0]):
            row: list[Action] = []
            for i in range(mask.shape[1]):
                terms = self.terms.get((s, i))
                if mask[s, i]:
                    if terms is not None:
                        raise ScheduleError(f"fitted predictor has coefficients for step {s}, site {i}, which the "
                                            "mask computes: it was fitted for another mask; refit it")
                    row.append(None)
                    continue
                if terms is None:
                    raise ScheduleError(f"fitted predictor has no coefficients for reused step {s}, site {i}: it "
                                        "was fitted for another mask; refit it (gocopt.compile does)")
                if any(a > s or not mask[s - a, i] for a, _ in terms):
                    raise ScheduleError(f"fitted predictor at step {s}, site {i} reads a step the mask does not "
                                        "compute: it was fitted for another mask; refit it")
                row.append(Reuse(terms))
            out.append(row)
        return out

    def check_sites(self, num_sites: int) -> None:
        bad = [i for _, i in self.terms if not 0 <= i < num_sites]
        if bad:
            raise ScheduleError(f"fitted predictor names site {bad[0]} but the schedule has {num_sites} sites")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "history": self.history, "fit": dict(self.fit),
                "terms": [[s, i, [[a, c] for a, c in t]] for (s, i), t in sorted(self.terms.items())]}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fitted) and (self.history, dict(self.terms)) == (other.history, dict(other.terms))

    def __hash__(self) -> int:
        return hash((self.history, len(self.terms)))

    def __repr__(self) -> str:
        return f"Fitted(history={self.history}, {len(self.terms)} reused site-steps)"


def from_json(data: Mapping[str, Any]) -> Predictor:
    """The predictor a schedule file's ``predictor`` section describes."""
    kind = data.get("kind")
    if kind == "goc":
        w = data["w"] if isinstance(data["w"], (int, float)) else tuple(data["w"])
        return GOCConfig(w, frozenset(data["correction_steps"]))
    if kind == "taylor":
        return Taylor(int(data["order"]))
    if kind == "fitted":
        terms = {(s, i): t for s, i, t in data["terms"]}  # Fitted normalises the types
        return Fitted(int(data["history"]), terms, dict(data.get("fit", {})))
    raise ScheduleError(f"unknown predictor kind {kind!r}; this gocopt knows goc, taylor and fitted — upgrade gocopt")


__all__ = ["Fitted", "Predictor", "Taylor", "computed_steps_before", "from_json", "lagrange_terms"]
