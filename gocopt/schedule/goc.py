"""Gradient-Optimized Cache: cached-gradient propagation for reused branch outputs (GOC.md §3).

At a reused step ``s`` a site hands back ``O[s-1] + w * (O[s-1] - O[s-2])`` instead of plain
``O[s-1]``, where ``O`` are the two most recent values the site actually *used* (fresh when
computed, corrected when reused). Correction only at ``correction_steps`` and only with two
values queued; ``w = 0`` is plain reuse, bit for bit (the correction is skipped, not zeroed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gocopt.errors import ScheduleError
from gocopt.schedule.reuse import PLAIN, Action, Reuse, checked_coefficient


@dataclass(frozen=True)
class GOCConfig:
    """GOC parameters of a schedule.

    Args:
        w: step size of the extrapolation; one float for every site, or one per site (schedule
            column order). 0 means plain reuse. GOC.md §8: stable only for w < 1 at interval 2.
        correction_steps: sampling steps (0-based) at which reused sites are corrected; reused
            steps outside it (inflection points, the first reuse) fall back to plain reuse.
    """

    w: float | tuple[float, ...] = 0.0
    correction_steps: frozenset[int] = field(default_factory=frozenset)
    kind: str = field(default="goc", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.w, (int, float)):
            checked_coefficient(self.w, "GOC weight w")
        else:
            object.__setattr__(self, "w", tuple(checked_coefficient(v, f"GOC weight w of site {k}")
                                                for k, v in enumerate(self.w)))
        object.__setattr__(self, "correction_steps", frozenset(int(s) for s in self.correction_steps))
        if any(s < 0 for s in self.correction_steps):
            raise ScheduleError(f"correction steps must be >= 0, got {sorted(self.correction_steps)}")

    @classmethod
    def plain(cls) -> GOCConfig:
        return cls()

    @classmethod
    def at_steps(cls, w: float | Iterable[float], steps: Iterable[int]) -> GOCConfig:
        return cls(w if isinstance(w, (int, float)) else tuple(w), frozenset(steps))

    def weight(self, site: int) -> float:
        return float(self.w) if isinstance(self.w, float | int) else self.w[site]

    def check_sites(self, num_sites: int) -> None:
        if not isinstance(self.w, (int, float)) and len(self.w) != num_sites:
            raise ScheduleError(f"GOC has {len(self.w)} per-site weights but the model has {num_sites} sites")

    def actions(self, mask: np.ndarray) -> list[list[Action]]:
        """Plain reuse, or ``v1 + w (v1 − v2)`` at correction steps once two values exist; ``w = 0``
        gives plain reuse exactly (no term for the older value at all)."""
        actions: list[list[Action]] = []
        for step, row in enumerate(np.asarray(mask).tolist()):
            corrects = step >= 2 and step in self.correction_steps
            out: list[Action] = []
            for site, computed in enumerate(row):
                w = self.weight(site) if corrects and not computed else 0.0
                out.append(None if computed else (Reuse(((1, 1.0 + w), (2, -w))) if w != 0.0 else PLAIN))
            actions.append(out)
        return actions

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "w": self.w if isinstance(self.w, (int, float)) else list(self.w),
                "correction_steps": sorted(self.correction_steps)}

    def __repr__(self) -> str:
        w = f"{self.w:g}" if isinstance(self.w, (int, float)) else f"<{len(self.w)} per-site weights>"
        return f"GOCConfig(w={w}, correction_steps={sorted(self.correction_steps)})"

