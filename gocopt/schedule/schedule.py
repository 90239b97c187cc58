"""A cache schedule: which site is computed at which sampling step, and how reused values are made.

Pure data, validated at construction; it knows nothing about torch modules. The JSON artifact
(fingerprint, provenance, quality) wraps one of these.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gocopt.errors import ScheduleError
from gocopt.schedule.goc import GOCConfig
from gocopt.schedule.predictors import Predictor


@dataclass(frozen=True, eq=False)
class Schedule:
    """A static step × site compute mask plus the predictor that makes reused values.

    Args:
        mask: bool array ``(steps, sites)``; ``True`` computes the site at that step, ``False``
            reuses its last value. Step 0 must compute every site.
        site_ids: the site each column belongs to (checked against the model it is applied to).
        timesteps: the model timestep of each step, first to last; ``None`` skips the check.
        predictor: how a reused site's value is made (:mod:`gocopt.schedule.predictors`): GOC
            weights and correction steps, a Taylor forecast or fitted coefficients. The default,
            ``GOCConfig()``, is plain reuse.
        name: a label for logs and reports (``"interval:2"``).
        guidance: ``"batched"``, ``"separate"`` or ``"none"`` — how the sampler calls the model
            per step; the runtime refuses calls made the other way. ``None`` skips the check.
        sampler: the rest of the sampler's description (name, guidance scale), for the record.
        fingerprint: what model this was made for (:mod:`gocopt.schedule.fingerprint`).
        budget: the site-FLOP budget the schedule was searched under, if any.
        provenance: calibration, search, measured quality, inflection points, creation.
    """

    mask: np.ndarray
    site_ids: tuple[str, ...]
    timesteps: tuple[float, ...] | None = None
    predictor: Predictor = field(default_factory=GOCConfig)
    name: str = ""
    guidance: str | None = None
    sampler: Mapping[str, Any] | None = None
    fingerprint: Mapping[str, Any] | None = None
    budget: float | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        mask = np.asarray(self.mask)
        if mask.dtype != bool:
            if not np.isin(mask, (0, 1)).all():
                raise ScheduleError("schedule mask must hold only booleans (or 0/1)")
            mask = mask.astype(bool)
        if mask.ndim != 2:
            raise ScheduleError(f"schedule mask must be 2-D (steps × sites), got shape {mask.shape}")
        object.__setattr__(self, "site_ids", tuple(self.site_ids))
        if mask.shape[1] != len(self.site_ids):
            raise ScheduleError(f"mask has {mask.shape[1]} site columns but {len(self.site_ids)} site ids")
        if mask.shape[0] < 1:
            raise ScheduleError("schedule has no steps")
        if not mask[0].all():
            missing = [self.site_ids[i] for i in np.flatnonzero(~mask[0])][:5]
            raise ScheduleError(f"step 0 must compute every site (nothing to reuse yet); not computed: {missing}")
        if self.timesteps is not None:
            object.__setattr__(self, "timesteps", tuple(float(t) for t in self.timesteps))
            if len(self.timesteps) != mask.shape[0]:
                raise ScheduleError(
                    f"mask has {mask.shape[0]} rows but the sampler has {len(self.timesteps)} steps; "
                    f"re-run the search with steps={len(self.timesteps)}"
                )
        self.predictor.check_sites(mask.shape[1])
        self.predictor.actions(mask)  # a predictor made for another mask (a fitted one) is refused here
        if self.guidance not in (None, "batched", "separate", "none"):
            raise ScheduleError(f"guidance must be batched, separate or none, got {self.guidance!r}")
        if self.budget is not None and not 0 < self.budget <= 1:
            raise ScheduleError(f"budget must be in (0, 1], got {self.budget}")
        mask = mask.copy()
        mask.setflags(write=False)
        object.__setattr__(self, "mask", mask)

    @property
    def steps(self) -> int:
        return self.mask.shape[0]

    @property
    def num_sites(self) -> int:
        return self.mask.shape[1]

    def cost(self, site_flops: Sequence[float] | np.ndarray) -> float:
        """FLOP-weighted fraction of site computations the schedule performs (1.0 = uncached)."""
        flops = np.asarray(site_flops, dtype=np.float64)
        if flops.shape != (self.num_sites,):
            raise ScheduleError(f"need {self.num_sites} site FLOP counts, got {flops.shape}")
        return float((self.mask * flops).sum() / (self.steps * flops.sum()))

    def reuse_fraction_per_step(self) -> np.ndarray:
        return 1.0 - self.mask.mean(axis=1)

    def check_sites(self, site_ids: Sequence[str]) -> None:
        """Refuse to run on a model whose sites differ from the ones this schedule was made for."""
        site_ids = tuple(site_ids)
        if site_ids != self.site_ids:
            diff = next((i for i, (a, b) in enumerate(zip(site_ids, self.site_ids)) if a != b),
                        min(len(site_ids), len(self.site_ids)))
            raise ScheduleError(
                f"schedule {self.name!r} was made for {len(self.site_ids)} sites, the model has {len(site_ids)}; "
                f"first difference at column {diff}: schedule "
                f"{self.site_ids[diff] if diff < len(self.site_ids) else '<none>'!r} vs model "
                f"{site_ids[diff] if diff < len(site_ids) else '<none>'!r}; re-run gocopt.compile for this model"
            )

    def replace(self, **changes: Any) -> Schedule:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        reused = 1.0 - self.mask.mean()
        return (f"Schedule(name={self.name!r}, steps={self.steps}, sites={self.num_sites}, "
                f"reused={reused:.1%} of site-steps, predictor={self.predictor!r})")


def all_compute(site_ids: Sequence[str], steps: int, timesteps: Sequence[float] | None = None,
                **fields: Any) -> Schedule:
    """The schedule that computes everything: the compiled model equals the original bit for bit."""
    return Schedule(np.ones((steps, len(site_ids)), dtype=bool), tuple(site_ids),
                    None if timesteps is None else tuple(timesteps), GOCConfig(), "none", **fields)
