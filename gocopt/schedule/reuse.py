"""A reused value as data: ``Σ coefficient · (value the site used ``age`` steps ago)``.

Every predictor (:mod:`gocopt.schedule.predictors`) produces these; the step plans carry them and
the specialised graphs evaluate them. Nothing here knows tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gocopt.errors import ScheduleError

Term = tuple[int, float]  # (age >= 1, coefficient)
MAX_COEFFICIENT = 1e3  # fitted forecasts stay within ±10, GOC's w within [0, 1.2]: beyond this a value is damage


def checked_coefficient(value: float, where: str) -> float:
    """``value`` as a float, if a forecast may use it: finite and within ``±MAX_COEFFICIENT``
    (one such coefficient turns a whole sample non-finite); else a ScheduleError naming ``where``."""
    value = float(value)
    if not math.isfinite(value) or abs(value) > MAX_COEFFICIENT:
        problem = "out of range" if math.isfinite(value) else "not finite"
        raise ScheduleError(f"{where}: coefficient {value!r} is {problem} (a forecast coefficient lies within "
                            f"±{MAX_COEFFICIENT:g}); the schedule is damaged or was edited by hand: restore it from "
                            "git or re-run gocopt.compile")
    return value


@dataclass(frozen=True)
class Reuse:
    """A reused site's value: ``Σ coefficient · (value used ``age`` steps ago)``."""

    terms: tuple[Term, ...]

    def __post_init__(self) -> None:
        if not self.terms or any(age < 1 for age, _ in self.terms):
            raise ScheduleError(f"a reuse needs terms with age >= 1, got {self.terms}")

    @property
    def is_plain(self) -> bool:
        return len(self.terms) == 1 and self.terms[0] == (1, 1.0)


PLAIN = Reuse(((1, 1.0),))
Action = Reuse | None  # None: compute the site

__all__ = ["MAX_COEFFICIENT", "PLAIN", "Action", "Reuse", "Term", "checked_coefficient"]
