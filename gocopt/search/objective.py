"""Trial → candidate → schedule → samples → fidelity to the uncached model on the search seeds.

Kept apart from the study: an objective can be run with ``optuna.trial.FixedTrial`` and no
storage at all, which is how it is tested.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import optuna
import torch

from gocopt.compiled import CachedModel
from gocopt.metrics.fidelity import psnr
from gocopt.sampling import Sampler
from gocopt.schedule.schedule import Schedule
from gocopt.search.space import FAMILIES, PREDICTORS, Candidate, SpaceContext, build_mask, build_predictor

logger = logging.getLogger(__name__)
DIVERGED_DB = -1.0  # the score of a schedule whose samples are not finite: below every finite PSNR of [-1, 1] images
W_MAX = 0.95  # GOC is unstable for w >= 1 at interval 2 and earlier at longer runs (GOC.md §8)


def suggest(trial: optuna.Trial, families: tuple[str, ...] = FAMILIES,
            predictors: tuple[str, ...] = PREDICTORS) -> Candidate:
    """A candidate; GOC's weights and the path's share are asked only where they mean something."""
    family = trial.suggest_categorical("family", families)
    predictor = trial.suggest_categorical("predictor", predictors)
    goc = predictor == "goc"
    return Candidate(
        family=family,
        alpha=trial.suggest_float("alpha", 0.0, 2.0),
        step_bias=trial.suggest_float("step_bias", -3.0, 3.0),
        depth_bias=trial.suggest_float("depth_bias", -3.0, 3.0),
        mlp_bias=trial.suggest_float("mlp_bias", -3.0, 3.0),
        max_run=trial.suggest_int("max_run", 1, 4),
        w_attn=trial.suggest_float("w_attn", 0.0, W_MAX) if goc else 0.0,
        w_mlp=trial.suggest_float("w_mlp", 0.0, W_MAX) if goc else 0.0,
        skip_inflections=trial.suggest_categorical("skip_inflections", (False, True)) if goc else False,
        predictor=predictor,
        path_share=trial.suggest_float("path_share", 0.5, 1.0) if family == "path" else 1.0,
        path_tilt=trial.suggest_float("path_tilt", -0.3, 0.3) if family == "path" else 0.0,
    )


@dataclass
class SearchSet:
    """The inputs a search scores candidates on, with the uncached samples for those inputs.

    ``decode``: where the samples are latents, the map to the images users judge; ``reference``
    is then the decoded uncached samples, and every candidate's samples are decoded before scoring."""

    labels: torch.Tensor
    noise: torch.Tensor
    reference: torch.Tensor
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None

    @classmethod
    def scored_on(cls, labels: torch.Tensor, noise: torch.Tensor, uncached: torch.Tensor,
                  decode: Callable[[torch.Tensor], torch.Tensor] | None) -> SearchSet:
        reference = uncached if decode is None else decode(uncached).detach().cpu().float()
        return cls(labels, noise, reference, decode)

    def images(self, samples: torch.Tensor) -> torch.Tensor:
        """What a sample is scored as: itself, or its decoded image."""
        return samples if self.decode is None else self.decode(samples).detach().cpu().float()


class ScheduleObjective:
    """Maximise mean per-sample PSNR against the uncached samples, at cost ≤ budget."""

    def __init__(self, compiled: CachedModel, sampler: Sampler, ctx: SpaceContext, budget: float, search_set: SearchSet,
                 num_classes: int | None, predictors: tuple[str, ...] = PREDICTORS,
                 families: tuple[str, ...] = FAMILIES) -> None:
        """``predictors`` and ``families``: the choices a trial may take (``PREDICTORS`` and
        ``FAMILIES``, and the extra ones an always-sampled candidate names: an enqueued trial must
        lie in the space)."""
        self._compiled = compiled
        self._sampler = sampler
        self._ctx = ctx
        self._budget = budget
        self._set = search_set
        self._num_classes = num_classes
        self._predictors = predictors
        self._families = families

    def schedule(self, candidate: Candidate, name: str = "") -> Schedule:
        mask = build_mask(candidate, self._ctx, self._budget)
        timesteps = self._sampler.timesteps
        return Schedule(mask, tuple(self._compiled.sites["site"]), None if timesteps is None else tuple(timesteps),
                        build_predictor(candidate, self._ctx, mask), name or f"{candidate.family}@{self._budget:g}",
                        guidance=self._sampler.guidance, budget=self._budget)

    @torch.no_grad()
    def sample_scores(self, schedule: Schedule) -> torch.Tensor:
        """``(search samples,)``: each search seed's PSNR against its uncached sample. Kept per seed
        because two schedules scored on the same seeds are compared paired: their per-seed
        differences vary far less than either's PSNR does."""
        self._compiled.set_schedule(schedule, log=False)
        self._compiled.reset()
        samples = self._sampler.sample(self._compiled, self._set.labels, self._set.noise,
                                       num_classes=self._num_classes)
        return psnr(self._set.images(samples).cpu(), self._set.reference)

    def score(self, schedule: Schedule) -> float:
        """The mean of :meth:`sample_scores`; ``DIVERGED_DB`` where a sample is not finite."""
        value = float(self.sample_scores(schedule).mean())
        if not np.isfinite(value):  # the uncached run was finite (calibration checks): this forecast diverged
            logger.warning("schedule %r samples non-finite values on the search seeds (its forecast diverges); "
                           "scored %g dB, below any schedule that samples finite images", schedule.name, DIVERGED_DB)
            return DIVERGED_DB
        return value

    def __call__(self, trial: optuna.Trial) -> float:
        families = tuple(f for f in self._families if self._ctx.edges is not None or f != "path")
        candidate = suggest(trial, families, self._predictors)
        schedule = self.schedule(candidate)
        cost = schedule.cost(self._ctx.site_flops)
        trial.set_user_attr("cost", cost)
        return self.score(schedule)
