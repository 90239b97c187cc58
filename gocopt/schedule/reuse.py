"""A reused value as data: ``Σ coefficient · (value the site used ``age`` steps ago)``.

Every predictor (:mod:`gocopt.schedule.predictors`) produces these; the step plans carry them and
the specialised graphs evaluate them. Nothing here knows tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

from gocopt.errors import ScheduleError

Term = tuple[int, float]  # (age >= 1, coefficient)


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

__all__ = ["PLAIN", "Action", "Reuse", "Term"]
