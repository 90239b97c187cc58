"""One compiled model per budget: what ``gocopt.compile(model, [0.25, 0.5])`` returns.

A compile of several budgets measures calibration and the span table once and searches each
budget on them; each result is a :class:`~gocopt.compiled.CachedModel` sharing the original's
parameters. This container keeps them in the order the budgets were given, finds one by its
budget, and saves every schedule under the file names ``schedules/`` uses.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from gocopt.compiled import CachedModel
from gocopt.errors import ArgumentError


class CompiledBudgets(tuple[CachedModel, ...]):
    """The compiled models of one compile, one per budget, in the order the budgets were given."""

    def __new__(cls, compiled: Iterable[CachedModel]) -> CompiledBudgets:
        items = tuple(compiled)
        if any(model.schedule is None for model in items):
            raise ArgumentError("CompiledBudgets holds compiled models with their schedules set")
        return super().__new__(cls, items)

    @property
    def budgets(self) -> tuple[float, ...]:
        """The budget each schedule was searched for."""
        return tuple(_schedule(model).budget for model in self)

    def at(self, budget: float) -> CachedModel:
        """The model compiled for ``budget`` (one of :attr:`budgets`)."""
        for model in self:
            if abs(_schedule(model).budget - budget) < 1e-9:
                return model
        raise ArgumentError(f"no schedule was compiled for budget {budget:g}; compiled: "
                            f"{', '.join(f'{b:g}' for b in self.budgets)}")

    def save(self, directory: str | Path, prefix: str) -> list[Path]:
        """Write every schedule as ``{directory}/{prefix}_b{budget:.2f}.json`` (atomically, each one
        whole or not at all) and return the paths, in budget order."""
        paths = []
        for model in self:
            path = Path(directory) / f"{prefix}_b{_schedule(model).budget:.2f}.json"
            model.save(path)
            paths.append(path)
        return paths

    def __repr__(self) -> str:
        return f"CompiledBudgets(budgets={list(self.budgets)})"


def _schedule(model: CachedModel):  # noqa: ANN202 - a Schedule, set (checked in __new__)
    schedule = model.schedule
    assert schedule is not None, "checked when the container was made"
    return schedule


__all__ = ["CompiledBudgets"]
