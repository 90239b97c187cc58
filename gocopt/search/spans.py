"""Span errors measured on the model: the edge weights of the global path (:mod:`gocopt.search.path`).

A span ``(c, d)`` — compute every site at ``c`` and ``d``, reuse all of them in between — is run on
a few calibration seeds under the predictor the schedule will use, and weighed by the mean squared
error it leaves against the uncached run.

The steps before a span are uncached, so their result is known: with gocopt's DDIM the run
starts from the uncached latent a few steps before the span (as many as the predictor reads back)
instead of from noise; calibration's run keeps those latents, so the table does not run them
again. ``end-to-end`` then runs each span to the final sample (the exact weight, at the price of
the rest of the run per span: ~700 uncached-sample equivalents on 8 seeds at DDIM-20).
``lookahead`` (the default) stops where the span ends — every span that starts at ``c`` is one run
— and weighs it by the latent's error there, scaled by how much of such an error the remaining
steps let through, measured on four spans run to the end (on ``Effort.damping_seeds`` of the
seeds): 8–13 equivalents per seed, whatever the step count. Other samplers run every span whole.

Seeds are weighed as the search scores schedules: by mean per-sample PSNR, where every sample's
log-error counts the same. A plain mean of squared errors lets the seed with the largest errors
place every compute; so each seed's errors are scaled by its own error level first
(:func:`sample_weights`). On the reference model at DDIM-20/0.5 (3 span seeds) that moved the path
0.8 dB closer to the one 8 seeds end to end place, on 192 design seeds.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Container, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from gocopt.compiled import CachedModel
from gocopt.errors import ScheduleError
from gocopt.sampling import DDIMSampler, Sampler
from gocopt.schedule.fit import fit_predictor
from gocopt.schedule.goc import GOCConfig
from gocopt.schedule.predictors import Predictor
from gocopt.schedule.schedule import Schedule
from gocopt.search.path import EdgeTable, run_spans, span_row, spans_up_to

logger = logging.getLogger(__name__)
SPAN_SEEDS = 8
SPAN_METHODS = ("lookahead", "end-to-end")
ANCHOR_FRACTIONS, ANCHOR_GAP = (0.15, 0.3, 0.5, 0.7), 3  # the spans run to the end to measure damping


def max_gap_for(budgets: Sequence[float], steps: int) -> int:
    """Longest span worth measuring: twice the mean gap at the smallest budget, plus one."""
    return min(steps, math.ceil(2 / min(budgets)) + 1)


@torch.no_grad()
def measure_spans(compiled: CachedModel, sampler: Sampler, labels: torch.Tensor, noise: torch.Tensor,
                  reference: torch.Tensor, *, max_gap: int, gram: np.ndarray | None, history: int = 3,
                  num_classes: int | None, sites: Sequence[int] | None = None, progress: bool = False,
                  method: str = "lookahead", latents: Sequence[torch.Tensor] | None = None,
                  damping_seeds: int | None = None) -> EdgeTable:
    """Every span up to ``max_gap`` steps, under a fitted predictor of ``history`` values (plain
    reuse when ``gram`` is None), on the given seeds; restores the model's schedule after.
    ``sites``: the site indices a span reuses (all by default); the others are computed at every step.

    ``method``: ``"end-to-end"`` runs every span to the final sample (the exact weight of a path of
    spans, and the rest of the run per span). ``"lookahead"`` (gocopt's DDIM; other samplers measure
    end to end) weighs a span ``(c, d)`` by the error of the latent it leaves before ``d`` (against
    the uncached latent there, in clean-sample units), scaled by the damping the steps after ``d``
    apply (:func:`_damped`, four spans run to the end); the spans that start at ``c`` are one run
    (they share every step up to their ends, where they stop). About ``history + max_gap`` image-steps
    per start and seed, and four runs to the end: 15–30× less model work than end to end.

    ``latents``: the uncached run's latents of these seeds (:class:`Calibration` keeps them), which a
    restartable run starts its spans from; measured here when not given. ``damping_seeds``: the first
    this many seeds measure the damping (all by default): its runs to the end are a quarter to a third of
    the table's work, and the factor is the sampler's, far more alike across seeds than the errors are.
    """
    if method not in SPAN_METHODS:
        raise ScheduleError(f"span method {method!r}; expected one of {SPAN_METHODS}")
    ids, steps = tuple(compiled.sites["site"]), sampler.steps
    columns = list(range(len(ids))) if sites is None else list(sites)
    timesteps = tuple(sampler.timesteps) if sampler.timesteps is not None else None
    ddim = restartable(sampler, num_classes)
    if latents is None and ddim and num_classes:
        latents = ddim.latents(compiled.original, labels, noise, num_classes=num_classes)
    reference = reference.to(noise.device)
    previous = compiled.schedule

    def set_span(row: np.ndarray, first: int, stop: int) -> None:
        """Compute every step of ``first … stop − 1`` but the reused ones of ``row``."""
        mask = np.ones((steps, len(ids)), dtype=bool)
        mask[:, columns] = row[:, None]
        mask = mask[first:stop]
        predictor: Predictor = (fit_predictor(mask, gram[:, first:stop, first:stop], history) if gram is not None
                                else GOCConfig())
        compiled.set_schedule(Schedule(mask, ids, None if timesteps is None else timesteps[first:stop], predictor,
                                       "span", guidance=sampler.guidance), log=False)
        compiled.reset()

    def run_error(row: np.ndarray, seeds: slice = slice(None)) -> np.ndarray:  # per sample
        first = max(0, int(np.argmin(row)) - history) if ddim is not None else 0  # the span starts at argmin(row)
        set_span(row, first, steps)
        if ddim is not None and latents is not None and num_classes:
            out = dataclasses.replace(ddim, first_step=first).sample(compiled, labels[seeds], latents[first][seeds],
                                                                     num_classes=num_classes)
        else:
            out = sampler.sample(compiled, labels[seeds], noise[seeds], num_classes=num_classes)
        return _mse(out, reference[seeds])

    try:
        if method == "lookahead" and ddim is not None and latents is not None and num_classes:
            raw = _lookahead_edges(compiled, ddim, labels, latents, reference, set_span, max_gap, history,
                                   num_classes, progress)
            weights = sample_weights(raw)
            table = _damped(EdgeTable(steps, max_gap, combine(raw, weights)), raw, weights,
                            run_error, slice(0, damping_seeds))
        else:
            per_sample = run_spans(run_error, steps, max_gap, progress=progress)
            table = EdgeTable(steps, max_gap, combine(per_sample, sample_weights(per_sample)))
    finally:
        compiled.set_schedule(previous, log=False)
    logger.info("measured %d reuse spans of up to %d steps on %d seeds (%s)", len(table.error), max_gap, len(labels),
                method if ddim is not None else "end-to-end")
    return table


def span_image_steps(steps: int, max_gap: int, history: int, method: str, restartable: bool, *, seeds: int = 1,
                     damping_seeds: int | None = None, latents_given: bool = False) -> float:
    """The image-steps :func:`measure_spans` runs on ``seeds`` seeds: its model work, known before it
    runs. ``damping_seeds`` and ``latents_given`` (the uncached latents passed in) as it was called."""
    spans = spans_up_to(steps, max_gap)
    if not restartable:
        return float(seeds * len(spans) * steps)  # every span a whole run
    start = {c: max(0, c + 1 - history) for c in range(steps)}
    latents = 0 if latents_given else steps  # the uncached latents every span starts from
    if method == "end-to-end":
        return float(seeds * (latents + sum(steps - start[c] for c, _ in spans)))
    lookahead = sum(min(steps, c + max_gap) - start[c] for c in range(steps - 1))
    damping = sum(steps - start[c] for c, _ in _anchor_spans(steps, set(spans)))
    return float(seeds * (latents + lookahead) + min(seeds, damping_seeds or seeds) * damping)


def _lookahead_edges(compiled: CachedModel, ddim: DDIMSampler, labels: torch.Tensor, latents: Sequence[torch.Tensor],
                     reference: torch.Tensor, set_span, max_gap: int, history: int, num_classes: int,
                     progress: bool) -> dict[tuple[int, int], np.ndarray]:
    """One run per span start ``c``: from ``history`` steps before it (to fill the predictor's
    history) through ``c + max_gap − 1``, every step after ``c`` reused; span ``(c, d)``'s weight is
    the error of the latent before ``d``, in clean-sample units (the final sample's when ``d`` is
    the end)."""
    steps, timesteps = ddim.steps, ddim.timesteps
    alphas = ddim.diffusion.alphas_cumprod.tolist()
    error: dict[tuple[int, int], np.ndarray] = {}
    for c in tqdm(range(steps - 1), desc="path edges", disable=not progress, leave=False):
        first, stop = max(0, c + 1 - history), min(steps, c + max_gap)
        row = np.ones(steps, dtype=bool)
        row[c + 1 : stop] = False
        set_span(row, first, stop)
        run = dataclasses.replace(ddim, first_step=first, last_step=stop if stop < steps else None)
        xs = run.latents(compiled, labels, latents[first], num_classes=num_classes)  # xs[k]: before step first + k
        for d in range(c + 2, stop + 1):
            x = xs[d - first]
            # the latent's error in clean-sample units (x = √ᾱ·x0 + …); the final sample at the end
            error[(c, d)] = _mse(x, reference) if d == steps else _mse(x, latents[d]) / alphas[timesteps[d]]
    return error


def _damped(table: EdgeTable, raw: dict[tuple[int, int], np.ndarray], weights: np.ndarray, run_error,
            seeds: slice) -> EdgeTable:
    """The lookahead table with each span's weight scaled by how much of an error made before its
    end step survives to the final sample. An error in an early latent is largely damped by the
    denoising steps after it (on the reference model 10–100× at the first steps of 20, ~1× in the
    last quarter), which a one-step prediction cannot see; the factor depends mostly on the end
    step, so it is measured on a few spans run to the end (``ANCHOR_FRACTIONS`` of the run, gap
    ``ANCHOR_GAP``) and interpolated in log space, exactly 1 at the end. (A one-step clean-sample
    prediction after each span instead of the latent cost 50 % more and ranked no better, measured.)
    ``seeds``: the samples of ``raw`` (per-sample lookahead errors) the spans are run to the end on;
    each factor compares the two errors on the same ones."""
    steps = table.steps
    anchors: dict[int, float] = {steps: 0.0}
    for c, d in _anchor_spans(steps, table.error):
        # run even where it cannot be used: the work is known up front
        exact = float(np.mean(run_error(span_row(steps, c, d), seeds) * weights[seeds]))
        ahead = float(np.mean(raw[(c, d)][seeds] * weights[seeds]))
        if exact > 0 and ahead > 0:
            anchors[d] = math.log10(exact / ahead)
    ends = sorted(anchors)
    factors = 10 ** np.interp(np.arange(steps + 1), ends, [anchors[d] for d in ends])
    return EdgeTable(steps, table.max_gap, {(c, d): e * float(factors[d]) for (c, d), e in table.error.items()})


def _anchor_spans(steps: int, spans: Container[tuple[int, int]]) -> list[tuple[int, int]]:
    """The spans run to the end to measure damping, in step order: one definition for the
    measurement and for its planned cost."""
    ends = sorted({round(f * steps) for f in ANCHOR_FRACTIONS})
    return [(d - ANCHOR_GAP, d) for d in ends if (d - ANCHOR_GAP, d) in spans]


def restartable(sampler: Sampler, num_classes: int | None) -> DDIMSampler | None:
    """``sampler`` when it is gocopt's DDIM from step 0 (a run can restart from a latent at any
    step, and ``lookahead`` stop at any), else None."""
    ok = isinstance(sampler, DDIMSampler) and sampler.first_step == 0 and sampler.last_step is None and num_classes
    return sampler if ok else None  # type: ignore[return-value]


def _mse(out: torch.Tensor, reference: torch.Tensor) -> np.ndarray:
    """Per-sample mean squared error."""
    return ((out.to(reference.device) - reference) ** 2).flatten(1).mean(1).double().cpu().numpy()


def sample_weights(error: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
    """Per-sample weights that put every sample's errors on one level: the geometric mean of the
    samples' mean span errors over the sample's own (so the table keeps its units, and a sample
    whose errors are all 10× larger counts the same). All ones for one sample."""
    level = np.mean(np.stack(list(error.values())), axis=0)
    level = np.where(level > 0, level, 1.0)
    return float(np.exp(np.log(level).mean())) / level


def combine(error: dict[tuple[int, int], np.ndarray], weights: np.ndarray) -> dict[tuple[int, int], float]:
    """Per-sample span errors → one weight per span: their weighted mean."""
    return {span: float(np.mean(e * weights)) for span, e in error.items()}


__all__ = ["SPAN_METHODS", "SPAN_SEEDS", "combine", "max_gap_for", "measure_spans", "restartable", "sample_weights",
           "span_image_steps"]
