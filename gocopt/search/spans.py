"""Span errors measured on the model: the edge weights of the global path (:mod:`gocopt.search.path`).

A span ``(c, d)`` — compute every site at ``c`` and ``d``, reuse all of them in between — is run
end to end on a few calibration seeds under the predictor the schedule will use, and weighed by
the mean squared error of the final samples against the uncached ones.

The steps before a span are uncached, so their result is known: with gocopt's DDIM the run
starts from the uncached latent a few steps before the span (as many as the predictor reads back)
instead of from noise, which halves the cost of measuring every span. Other samplers run whole.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence

import numpy as np
import torch

from gocopt.compiled import CachedModel
from gocopt.sampling import DDIMSampler, Sampler
from gocopt.schedule.fit import fit_predictor
from gocopt.schedule.goc import GOCConfig
from gocopt.schedule.predictors import Predictor
from gocopt.schedule.schedule import Schedule
from gocopt.search.path import EdgeTable, measure_edges

logger = logging.getLogger(__name__)
SPAN_SEEDS = 8


def max_gap_for(budgets: Sequence[float], steps: int) -> int:
    """Longest span worth measuring: twice the mean gap at the smallest budget, plus one."""
    return min(steps, math.ceil(2 / min(budgets)) + 1)


@torch.no_grad()
def measure_spans(compiled: CachedModel, sampler: Sampler, labels: torch.Tensor, noise: torch.Tensor,
                  reference: torch.Tensor, *, max_gap: int, gram: np.ndarray | None, history: int = 3,
                  num_classes: int | None, sites: Sequence[int] | None = None, progress: bool = False) -> EdgeTable:
    """Every span up to ``max_gap`` steps, under a fitted predictor of ``history`` values (plain
    reuse when ``gram`` is None), on the given seeds; restores the model's schedule after.
    ``sites``: the site indices a span reuses (all by default); the others are computed at every step."""
    ids, steps = tuple(compiled.sites["site"]), sampler.steps
    columns = list(range(len(ids))) if sites is None else list(sites)
    timesteps = tuple(sampler.timesteps) if sampler.timesteps is not None else None
    ddim = sampler if isinstance(sampler, DDIMSampler) and sampler.first_step == 0 and num_classes else None
    latents = ddim.latents(compiled.original, labels, noise, num_classes=num_classes) if ddim and num_classes else None
    reference = reference.to(noise.device)
    previous = compiled.schedule

    def run_error(row: np.ndarray) -> float:
        mask = np.ones((steps, len(ids)), dtype=bool)
        mask[:, columns] = row[:, None]
        first = max(0, int(np.argmin(row)) - history) if ddim is not None else 0  # the span starts at argmin(row)
        mask = mask[first:]
        predictor: Predictor = (fit_predictor(mask, gram[:, first:, first:], history) if gram is not None
                                else GOCConfig())
        compiled.set_schedule(Schedule(mask, ids, None if timesteps is None else timesteps[first:], predictor,
                                       "span", guidance=sampler.guidance), log=False)
        compiled.reset()
        if ddim is not None and latents is not None and num_classes:
            out = dataclasses.replace(ddim, first_step=first).sample(compiled, labels, latents[first],
                                                                     num_classes=num_classes)
        else:
            out = sampler.sample(compiled, labels, noise, num_classes=num_classes)
        return float(((out.to(reference.device) - reference) ** 2).mean())

    try:
        table = measure_edges(run_error, steps, max_gap, progress=progress)
    finally:
        compiled.set_schedule(previous, log=False)
    logger.info("measured %d reuse spans of up to %d steps on %d seeds", len(table.error), max_gap, len(labels))
    return table


__all__ = ["SPAN_SEEDS", "max_gap_for", "measure_spans"]
