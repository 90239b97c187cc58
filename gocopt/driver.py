"""The compile driver: calibrate → search → score → stamp, one schedule per budget.

Both entry points run it: :func:`gocopt.compile` on a class-conditional DiT (:func:`compile_model`)
and on a diffusers pipeline (:mod:`gocopt.integrations.diffusers`), and both load through
:func:`load_model`. ``gocopt.api`` is the thin façade users call.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gocopt.calibrate import Calibration, calibrate, detect_inflections, first_non_finite
from gocopt.compiled import CachedModel, cache_model
from gocopt.errors import CalibrationError, NumericalError, ScheduleError
from gocopt.evaluate import SampleSet
from gocopt.metrics.fidelity import paired_fidelity
from gocopt.metrics.frechet import frechet_distance
from gocopt.metrics.quality import QualityEvaluator
from gocopt.models.convention import DiTSpec, ResolvedSpec, check_null_class, dit_spec
from gocopt.sampling import DDIMSampler, Sampler, initial_noise
from gocopt.schedule.fingerprint import check_fingerprint, model_fingerprint
from gocopt.schedule.goc import GOCConfig
from gocopt.schedule.io import load_schedule
from gocopt.schedule.named import interval_at_budget, l2c_mask, paper_goc
from gocopt.schedule.schedule import Schedule
from gocopt.search import ScheduleObjective, SearchSet, SpaceContext, check_budget
from gocopt.search.effort import Effort, WorkPlan, default_max_samples, plan_work
from gocopt.search.finalists import choose_finalist
from gocopt.search.path import EdgeTable
from gocopt.search.shared import shared_record
from gocopt.search.spans import max_gap_for, measure_spans, restartable
from gocopt.search.strategy import family_space, predictor_space, search_budget, step_weights
from gocopt.search.study import best_trials
from gocopt.search.study_config import StudyConfig
from gocopt.trace.capture import first_call
from gocopt.work import WorkMeter

logger = logging.getLogger(__name__)
DEFAULT_STEPS = 20  # DiT's own DDIM step count, when no sampler is given
SEARCH_SEED_BASE, HELDOUT_SEED_BASE = 10_000, 20_000  # seed sets: search and held-out never overlap
DEGENERATE_NOTE = ("no reuse span changed the samples (every measured span error is 0): the model's output does not "
                   "depend on what caching skips, so any schedule at the budget samples the same images; this one "
                   "is valid, but its quality says nothing about a trained model: compile the trained weights")


def compile_model(model: nn.Module, budgets: Sequence[float], *, sampler: Sampler | None = None,
                  spec: DiTSpec | None = None, effort: Effort | None = None, study: StudyConfig | None = None,
                  progress: bool = True, join: bool = False) -> list[CachedModel]:
    """Search, score and stamp one schedule per budget for a class-conditional DiT (see
    :func:`gocopt.compile`); a joining worker (``join``) runs trials only and returns ``[]``."""
    resolved = dit_spec(model, spec)
    spec, study = spec or DiTSpec(), study or StudyConfig()
    sampler = sampler if sampler is not None else default_sampler(DEFAULT_STEPS)
    for b in budgets:
        check_budget(b, sampler.steps)  # refuse before any work
    check_null_class(model, resolved, sampler.guidance)
    plan = plan_compile(effort, sampler, budgets, resolved.num_classes)  # refuse an impossible cap too
    effort = plan.effort
    parameter = next(model.parameters())
    device, dtype = parameter.device, parameter.dtype
    shape = resolved.latent_shape
    search = SampleSet.make(effort.search_samples, SEARCH_SEED_BASE + effort.seed, resolved.num_classes)
    held = SampleSet.make(effort.heldout_samples, HELDOUT_SEED_BASE + effort.seed, resolved.num_classes)
    search_noise = initial_noise(search.seeds, shape, device).to(dtype)
    meter = work_meter([model], sampler)
    example_inputs = spec.example_inputs
    with meter:
        with meter.phase("tracing"):  # the example call, and the traced model run on it
            if example_inputs is None and getattr(model, "example_inputs", None) is None:
                example_inputs = sampler_call(model, sampler, resolved)
            compiled = cache_model(model, None, example_inputs)
        meter.watch(compiled)
        with meter.phase("held-out scoring"):
            heldout = None if join else HeldOut(  # a joining worker scores nothing: no uncached held-out run
                compiled, sampler, held.labels.to(device), initial_noise(held.seeds, shape, device).to(dtype),
                num_classes=resolved.num_classes, evaluator=spec.evaluator, decode=spec.decode)
        if study.name is None:
            study = replace(study, name=_default_study_name(model, sampler))
        return search_budgets(compiled, sampler, budgets, search.labels.to(device), search_noise, search.seeds,
                              heldout, num_classes=resolved.num_classes, plan=plan, study=study, progress=progress,
                              example_inputs=example_inputs, join=join, meter=meter, decode=spec.decode)


def budget_list(budget: Any) -> list[float]:
    """``budget`` (one number or a sequence of them) as a list of floats, or a ScheduleError saying
    what was passed: a string or a tensor is not silently iterated."""
    items = [budget] if isinstance(budget, (numbers.Real, str, bytes)) or not isinstance(budget, Sequence) else budget
    if not items or any(isinstance(b, bool) or not isinstance(b, numbers.Real) for b in items):
        raise ScheduleError(f"budget={budget!r}: give a fraction of site FLOPs in (0, 1], or a list of them "
                            "(budget=0.5 or budget=[0.25, 0.5])")
    return [float(b) for b in items]


def plan_compile(effort: Effort | None, sampler: Sampler, budgets: Sequence[float],
                 num_classes: int | None) -> WorkPlan:
    """The compile's work, phase by phase, before any of it is done: ``effort`` (the defaults when
    None) sized to its ``max_samples``. With neither a cap nor a number of trials, the cap is
    :func:`default_max_samples`, raised (with a warning) to the least that samples every
    always-sampled candidate where this sampler's spans cost more (one that cannot restart a run
    midway runs every span whole); a cap the caller gives is never raised."""
    effort = effort or Effort()
    max_samples = effort.max_samples
    shape: dict[str, Any] = {"steps": sampler.steps, "budgets": len(budgets),
                             "max_gap": max_gap_for(budgets, sampler.steps),
                             "restartable": restartable(sampler, num_classes) is not None}
    if max_samples is None and effort.trials is None:
        fewest = max(effort.fewest_trials, len(effort.always_names))  # the raised cap samples every always-sampled one
        least = plan_work(effort.with_overrides(trials=fewest), **shape, max_samples=None).total
        max_samples = default_max_samples(len(budgets))
        if least > max_samples + 1e-9:
            logger.warning("the default cap of %g uncached-sample equivalents cannot pay for this compile (%s spans "
                           "run whole); it spends the least that works, %.0f; set Effort(max_samples=...) to cap it",
                           max_samples, sampler.describe().get("name", type(sampler).__name__), least)
            max_samples = math.ceil(least)
    plan = plan_work(effort, **shape, max_samples=max_samples)
    logger.info("compile plan: %s", plan.describe())
    return plan


def search_budgets(compiled: CachedModel, sampler: Sampler, budgets: Sequence[float], labels: torch.Tensor,
                   noise: torch.Tensor, seeds: Sequence[int], heldout: HeldOut | None, *, num_classes: int | None,
                   plan: WorkPlan, study: StudyConfig, progress: bool, example_inputs: Any = None,
                   join: bool = False, meter: WorkMeter | None = None,
                   decode: Callable[[torch.Tensor], torch.Tensor] | None = None) -> list[CachedModel]:
    """Calibrate once on the search inputs, then search, score and stamp one schedule per budget.

    ``sampler`` is anything with gocopt's sampler interface (``steps``, ``timesteps``,
    ``guidance``, ``describe()``, ``sample(model, labels, noise, num_classes=)``): gocopt's DDIM,
    or a diffusers pipeline behind :class:`gocopt.integrations.diffusers.PipelineSampler`.

    ``join=True`` makes this process a worker of a shared study (``study.storage``): it runs trials
    until the study holds ``trials`` complete ones and returns nothing; the process started
    without it (the leader) scores the best schedule and is the only one that writes it.

    ``plan`` (:func:`plan_compile`) says how many samples each phase uses and how many trials each
    budget's study runs. ``meter`` (watching the models) attributes the model work to calibration,
    spans, search trials and held-out scoring; every schedule records the whole compile's work
    (``provenance["work"]``), next to what was planned. ``decode`` (``DiTSpec.decode``): trials are
    scored on decoded images.
    """
    meter = meter if meter is not None else work_meter([compiled, compiled.original], sampler)
    with meter:
        results = _search_budgets(compiled, sampler, budgets, labels, noise, seeds, heldout, meter,
                                  num_classes=num_classes, plan=plan, study=study, progress=progress,
                                  example_inputs=example_inputs, join=join, decode=decode)
    work = {**meter.summary(), "budgets": list(budgets), "max_samples": plan.max_samples,
            "planned": {name: round(value, 3) for name, value in plan.phases.items()}}
    for result in results:
        schedule = result.schedule
        assert schedule is not None, "every result has its schedule"
        result.set_schedule(schedule.replace(provenance={**schedule.provenance, "work": work}), log=False)
    if results:
        _log_work(work)
    return results


def _search_budgets(compiled: CachedModel, sampler: Sampler, budgets: Sequence[float], labels: torch.Tensor,
                    noise: torch.Tensor, seeds: Sequence[int], heldout: HeldOut | None, meter: WorkMeter, *,
                    num_classes: int | None, plan: WorkPlan, study: StudyConfig, progress: bool,
                    example_inputs: Any, join: bool,
                    decode: Callable[[torch.Tensor], torch.Tensor] | None) -> list[CachedModel]:
    assert study.name is not None, "named by the entry point"
    study_name, max_graphs, seed = study.name, plan.effort.max_graphs, plan.effort.seed
    effort = plan.effort
    model = compiled.original
    fingerprint = model_fingerprint(model, compiled.sites)
    identity = {k: fingerprint.get(k) for k in ("class", "parameters_sha256", "weights_sha256", "config")}
    span_seeds, max_gap = slice(0, effort.span_seeds), max_gap_for(budgets, sampler.steps)
    restarts = restartable(sampler, num_classes) is not None  # the spans start from calibration's latents

    def measure() -> dict[str, Any]:
        with meter.phase("calibration"):
            calibration = calibrate(compiled, sampler, labels, noise, num_classes=num_classes, seeds=tuple(seeds),
                                    keep_latents=restarts)
        with meter.phase("spans"):
            edges = measure_spans(compiled, sampler, labels[span_seeds], noise[span_seeds],
                                  calibration.samples[span_seeds], max_gap=max_gap, gram=calibration.gram,
                                  num_classes=num_classes, progress=progress, method=effort.span_method,
                                  latents=None if calibration.latents is None
                                  else [x[span_seeds] for x in calibration.latents],
                                  damping_seeds=effort.damping_seeds)
        return {"calibration": calibration.to_record(), "edges": edges.to_record()}

    search_seeds = [int(seeds[0]), int(seeds[-1]), len(seeds)]
    # budgets, though only max_gap (derived from them) shapes the record: the refusal names what the user changed
    measured_for = {"model": identity, "sampler": sampler.describe(), "budgets": list(budgets),
                    "search_seeds": search_seeds, "span_seeds": effort.span_seeds, "span_method": effort.span_method,
                    "damping_seeds": effort.damping_seeds, "max_gap": max_gap}
    record = shared_record(study.storage, study_name, measured_for, measure)  # measured here, or by the study's first
    calibration, edges = Calibration.from_record(record["calibration"]), EdgeTable.from_record(record["edges"])
    flops = np.asarray(compiled.site_flops, dtype=np.float64)
    inflections = detect_inflections(calibration.stats, flops)
    degenerate = DEGENERATE_NOTE if edges.error and edges.changes_nothing else None
    if degenerate:
        logger.warning("%s: %s", type(model).__name__, degenerate)
    ctx = SpaceContext(sampler.steps, flops, compiled.sites["block"].to_numpy(),
                       compiled.sites["kind"].isin(["mlp"]).to_numpy(), calibration.matrix("rel_change").numpy(),
                       tuple(inflections), calibration.gram, edges, max_graphs)
    search_set = SearchSet.scored_on(labels, noise, calibration.samples, decode)
    weights = step_weights(plan, edges, calibration.gram, len(flops))
    results = []
    for b in budgets:
        objective = ScheduleObjective(compiled, sampler, ctx, b, search_set, num_classes, predictor_space(effort),
                                      family_space(effort))
        name = f"{study_name}-b{b:g}"
        metadata = {"model": identity, "sampler": sampler.describe(), "budget": b, "budgets": list(budgets),
                    "max_graphs": max_graphs, "surrogate_trials": effort.surrogate_trials,
                    "search_seeds": search_seeds}
        with meter.phase("search trials"):
            found = search_budget(objective, ctx, plan, weights, study=study, study_name=name, group=study_name,
                                  metadata=metadata, progress=progress, worker=os.getpid() % 10_000 + 1 if join else 0)
        if join:
            logger.info("joined study %r: it holds %d complete trials; its leader scores and writes the schedule",
                        name, found.trials)
            continue
        assert heldout is not None, "only a joining worker searches without held-out inputs"
        with meter.phase("held-out scoring"):
            kept, finalists = choose_finalist(best_trials(found.study, effort.finalists),
                                              partial(objective.schedule, name=f"gocopt@{b:g}"),
                                              heldout.score, len(seeds))
            schedule = kept.schedule
            quality: dict[str, Any] = {"heldout": kept.heldout,
                                       "search": {"psnr_vs_uncached": kept.search_psnr, "samples": len(seeds)},
                                       "scored_on": "samples" if decode is None else "decoded images"}
            if effort.finalists > 1:  # the held-out seeds helped choose: every finalist's scores, for the record
                quality["finalists"] = [finalist.to_record() for finalist in finalists]
            if effort.baselines:
                quality["baselines"] = _baselines(heldout, compiled, sampler, b)
        provenance = {
            "inflection_points": inflections,
            "calibration": calibration.summary(),
            "search": {"study": name, "trials": found.trials, "best_value": kept.search_psnr, "seed": seed,
                       "objective": "mean per-sample PSNR vs uncached (dB) on the search seeds"
                                    + (", on decoded images" if decode is not None else ""),
                       "surrogate_trials": effort.surrogate_trials,
                       "best_params": kept.candidate.as_params(), **({"note": degenerate} if degenerate else {})},
            "quality": quality,
        }
        schedule = for_model(schedule.replace(provenance=provenance), compiled, sampler)
        result = cache_model(model, schedule, example_inputs) if len(budgets) > 1 else compiled
        result.set_schedule(schedule)
        _log_summary(result, quality)
        results.append(result)
    return results


def default_sampler(steps: int) -> DDIMSampler:
    """DiT's own sampling setting: DDIM, classifier-free guidance 4 in one batched call, and no x0
    clipping (latent DiTs). Nothing is guessed from the model: pixel-space models (the reference
    DiT) pass ``sampler=DDIMSampler(..., clip_denoised=True)``."""
    return DDIMSampler(steps=steps, guidance_scale=4.0, clip_denoised=False)


def sampler_call(model: nn.Module, sampler: Sampler, spec: ResolvedSpec) -> tuple[tuple, dict]:
    """The sampler's first call of ``model`` (one sample, in the model's device and dtype): the
    example call to trace, exactly as sampling will call it."""
    parameter = next(model.parameters())
    noise = initial_noise([0], spec.latent_shape, parameter.device).to(parameter.dtype)
    labels = torch.zeros(1, dtype=torch.long, device=parameter.device)
    return first_call(model, lambda: sampler.sample(model, labels, noise, num_classes=spec.num_classes))


def _default_study_name(model: nn.Module, sampler: Sampler) -> str:
    """Named after what it searches, so a rerun of the same compile on a storage resumes it."""
    return f"gocopt-{type(model).__name__}-{sampler.describe()['name']}{sampler.steps}"


class HeldOut:
    """The held-out inputs: one uncached run, then any schedule scored against it."""

    def __init__(self, compiled: CachedModel, sampler: Sampler, labels: torch.Tensor, noise: torch.Tensor, *,
                 num_classes: int | None, evaluator: QualityEvaluator | None = None,
                 decode: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self._compiled, self._sampler, self._num_classes = compiled, sampler, num_classes
        self._labels, self._noise = labels, noise
        with torch.no_grad():
            self._reference = sampler.sample(compiled.original, labels, noise, num_classes=num_classes).cpu()
        bad = first_non_finite(self._reference)
        if bad is not None:
            _refuse_non_finite(compiled, sampler, labels[bad:bad + 1], noise[bad:bad + 1], bad, num_classes)
        # what a sample is scored as (decoded once here for the reference), the same rule as the search's
        self._scored = SearchSet.scored_on(labels, noise, self._reference, decode)
        self._evaluator = evaluator  # FD to the uncached samples in its features, when the caller has one
        if evaluator is not None:
            self._features = evaluator.features(self._reference)

    @torch.no_grad()
    def score(self, schedule: Schedule) -> dict[str, float]:
        previous = self._compiled.schedule
        self._compiled.set_schedule(schedule, log=False)
        self._compiled.reset()
        samples = self._sampler.sample(self._compiled, self._labels, self._noise, num_classes=self._num_classes).cpu()
        self._compiled.set_schedule(previous, log=False)
        if first_non_finite(samples) is not None:
            raise NumericalError(f"schedule {schedule.name!r} samples non-finite values on the held-out seeds, "
                                 "where the uncached model's are finite: its forecast diverges; compile again with "
                                 "another seed or a larger budget, and report this")
        result = {**paired_fidelity(self._scored.images(samples), self._scored.reference),
                  "cost": schedule.cost(self._compiled.site_flops),
                  "samples": len(samples)}  # on decoded images with a decoder: the search objective says so
        if self._evaluator is not None:
            result["fd_vs_uncached"] = frechet_distance(self._evaluator.features(samples), self._features)
        return result


def _refuse_non_finite(compiled: CachedModel, sampler: Sampler, labels: torch.Tensor, noise: torch.Tensor,
                       bad: int, num_classes: int | None) -> None:
    """The uncached held-out run went non-finite at sample ``bad`` (its ``labels`` and ``noise``
    given): calibrating it names the step and site where its values first stop being finite."""
    calibrate(compiled, sampler, labels, noise, num_classes=num_classes)
    raise CalibrationError(f"the uncached model's held-out sample {bad} is not finite (and was finite when run again "
                           "alone): the model's output depends on what else is in the batch, or is not deterministic")


def _baselines(heldout: HeldOut, compiled: CachedModel, sampler: Sampler, budget: float) -> dict[str, dict[str, float]]:
    """FORA + GOC with the paper's hand-set values, and the L2C-like schedule, at this budget."""
    ids, steps = tuple(compiled.sites["site"]), sampler.steps
    timesteps = None if sampler.timesteps is None else tuple(sampler.timesteps)
    fora = Schedule(interval_at_budget(steps, len(ids), budget), ids, timesteps, paper_goc(steps), "fora+goc(paper)")
    l2c = Schedule(l2c_mask(steps, compiled.sites["block"].to_numpy(), compiled.site_flops, budget), ids,
                   timesteps, GOCConfig(), "l2c")
    return {"fora_goc_paper": heldout.score(fora), "l2c": heldout.score(l2c)}


def work_meter(models: Sequence[nn.Module], sampler: Sampler) -> WorkMeter:
    """A meter counting ``models``' calls in uncached samples of ``sampler`` (two batch rows per image
    and step with guidance, batched or in separate calls; one without)."""
    return WorkMeter(models, steps=sampler.steps, rows_per_image_step=1 if sampler.guidance == "none" else 2)


def _log_work(work: dict) -> None:
    phases = ", ".join(f"{name} {w['sample_equivalents']:.0f}" for name, w in work["phases"].items())
    logger.info("the compile did the model work of %.0f uncached samples (%s) in %.0f s",
                work["total"]["sample_equivalents"], phases, work["total"]["seconds"])


def _log_summary(compiled: CachedModel, quality: dict) -> None:
    schedule = compiled.schedule
    assert schedule is not None, "logged after set_schedule"
    cost = schedule.cost(compiled.site_flops)
    coverage = compiled.sites.attrs["coverage"]
    held = quality["heldout"]
    fora = quality.get("baselines", {}).get("fora_goc_paper")
    logger.info("compiled %s at budget %g: %d sites × %d steps, %.1f%% of site-steps reused, cost %.3f, expected "
                "speedup %.2fx (site FLOPs %.2fx); held-out PSNR vs uncached %.2f ± %.2f dB on %d samples%s",
                type(compiled.original).__name__, schedule.budget, schedule.num_sites, schedule.steps,
                100 * (1 - schedule.mask.mean()), cost, 1 / (coverage * cost + 1 - coverage), 1 / cost,
                held["psnr_vs_uncached"], held.get("psnr_vs_uncached_stderr", float("nan")), held["samples"],
                "" if fora is None else f" (FORA+GOC paper: {fora['psnr_vs_uncached']:.2f} dB)")


def for_model(schedule: Schedule, compiled: CachedModel, sampler: Sampler) -> Schedule:
    """``schedule`` stamped with the model and sampler it is for, ready to save."""
    description = sampler.describe()
    return schedule.replace(
        fingerprint=model_fingerprint(compiled.original, compiled.sites),
        timesteps=tuple(description["timesteps"]),
        guidance=description["guidance"],
        sampler={k: v for k, v in description.items() if k not in ("steps", "timesteps", "guidance")},
    )


def load_model(model: nn.Module, path: str | Path, *, sampler: Sampler | None = None, spec: DiTSpec | None = None,
               check_weights: bool = True) -> CachedModel:
    """``model`` compiled with the schedule in ``path``, checked against the model (and ``sampler``);
    see :func:`gocopt.load`."""
    schedule = load_schedule(path)
    example_inputs = (spec or DiTSpec()).example_inputs
    if example_inputs is None and getattr(model, "example_inputs", None) is None:
        caller: Sampler = sampler if sampler is not None else DDIMSampler(
            steps=schedule.steps, guidance=schedule.guidance or "batched")
        example_inputs = sampler_call(model, caller, dit_spec(model, spec))
    compiled = cache_model(model, None, example_inputs)
    recorded = schedule.fingerprint or {}  # the file format requires one; io.load_schedule checks it
    found = model_fingerprint(model, compiled.sites, weights=check_weights and "weights_sha256" in recorded)
    check_fingerprint(recorded, found, check_weights=check_weights)
    if sampler is not None:
        check_sampler(schedule, sampler.describe())
    compiled.set_schedule(schedule)
    return compiled


def check_sampler(schedule: Schedule, description: dict[str, Any]) -> None:
    fix = "re-run gocopt.compile with this sampler"
    if description["steps"] != schedule.steps:
        raise ScheduleError(f"sampler.steps: schedule was made for {schedule.steps} steps, the sampler runs "
                            f"{description['steps']}; {fix}")
    expected = schedule.timesteps or ()
    if tuple(float(t) for t in description["timesteps"]) != tuple(expected):
        first = next(i for i, (a, b) in enumerate(zip(description["timesteps"], expected)) if float(a) != b)
        raise ScheduleError(f"sampler.timesteps[{first}]: schedule expects {expected[first]:g}, the sampler "
                            f"uses {description['timesteps'][first]:g}; {fix}")
    if description["guidance"] != schedule.guidance:
        raise ScheduleError(f"sampler.guidance: schedule was made for {schedule.guidance!r} guidance, the sampler uses "
                            f"{description['guidance']!r}; {fix}")
    recorded_clip = (schedule.sampler or {}).get("clip_denoised")
    clip = description.get("clip_denoised")
    if recorded_clip is not None and clip is not None and clip != recorded_clip:
        raise ScheduleError(f"sampler.clip_denoised: schedule was made for a sampler with clip_denoised="
                            f"{recorded_clip}, the sampler has clip_denoised={clip} (clipping the predicted clean "
                            f"image changes every step after the first); {fix}")
    recorded_scale = (schedule.sampler or {}).get("guidance_scale")
    if recorded_scale is not None and description.get("guidance_scale") != recorded_scale:
        logger.warning("schedule %r was searched at guidance scale %s, the sampler uses %s: the steps match, but its "
                       "measured quality may not carry over; re-run gocopt.compile to be sure", schedule.name,
                       recorded_scale, description.get("guidance_scale"))
