"""diffusers pipelines: compile and load cache schedules for a pipeline's own transformer.

    pipe = DiTPipeline(...)                      # or PixArt, SD3, Flux: any pipeline with .transformer
    compiled = gocopt.compile_pipeline(pipe, 0.5, inputs=[{"class_labels": c} for c in range(8)], steps=25)
    compiled.save("schedules/dit_ddim25_b0.50.json")
    gocopt.load_pipeline(pipe, "schedules/dit_ddim25_b0.50.json")   # deploy: checks model, scheduler, steps
    gocopt.remove(pipe)                                    # the original transformer, untouched

The pipeline's scheduler and step count define the steps; the schedule records the timesteps the
*transformer* receives (SD3 passes sigmas·1000, Flux sigmas), the scheduler class and the
guidance mode (one batched call per step, or Flux's ``cache_context("cond"/"uncond")`` calls).

While installed, gocopt wraps the scheduler's ``set_timesteps``, which every pipeline calls once at
the start of ``__call__``: it refuses a step count or scheduler the schedule was not made for,
before any denoising, and resets the cache, so each pipeline call is a fresh run (also after an
interrupted one). Progress bars and ``callback_on_step_end`` are untouched.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gocopt.compiled import CachedModel, cache_model
from gocopt.driver import HELDOUT_SEED_BASE, SEARCH_SEED_BASE, HeldOut, load_model, plan_compile, search_budgets
from gocopt.errors import GocoptError, ScheduleError
from gocopt.evaluate import SampleSet
from gocopt.models.convention import DiTSpec
from gocopt.runtime.runtime import DEFAULT_CONTEXT, timestep_value
from gocopt.schedule.io import load_schedule
from gocopt.search import check_budget
from gocopt.search.effort import Effort
from gocopt.search.study_config import StudyConfig
from gocopt.trace.capture import first_call
from gocopt.work import WorkMeter

logger = logging.getLogger(__name__)
_HOOK_ATTR = "_gocopt_set_timesteps"


def is_pipeline(obj: Any) -> bool:
    """A diffusers-style pipeline: callable, with a transformer and a scheduler."""
    return (callable(obj) and hasattr(obj, "transformer") and hasattr(obj, "scheduler")
            and not isinstance(obj, nn.Module))


def _original_transformer(pipe: Any) -> nn.Module:
    transformer = pipe.transformer
    return transformer.original if isinstance(transformer, CachedModel) else transformer


@contextlib.contextmanager
def using_transformer(pipe: Any, transformer: nn.Module) -> Iterator[None]:
    """``pipe`` runs ``transformer`` inside the block; its own transformer is put back after."""
    previous = pipe.transformer
    _set_transformer(pipe, transformer)
    try:
        yield
    finally:
        _set_transformer(pipe, previous)


def _set_transformer(pipe: Any, transformer: nn.Module) -> None:
    # not pipe.transformer = ...: DiffusionPipeline would re-register its config to gocopt's class
    pipe.__dict__["transformer"] = transformer


def merge_inputs(inputs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-sample pipeline arguments → one batched call: tensors concatenated, the rest listed."""
    keys = list(inputs[0])
    if any(list(i) != keys for i in inputs):
        raise GocoptError("every calibration input must name the same pipeline arguments, e.g. all "
                          "{'class_labels': ...} or all {'prompt_embeds': ..., 'negative_prompt_embeds': ...}")
    out = {}
    for key in keys:
        values = [i[key] for i in inputs]
        out[key] = torch.cat(values) if isinstance(values[0], torch.Tensor) else values
    return out


class PipelineSampler:
    """gocopt's sampler interface over a diffusers pipeline, so calibration and search run it.

    ``sample(model, input_indices, seeds)`` runs the pipeline once with ``model`` as its transformer:
    ``input_indices`` index ``inputs`` (one dict of pipeline arguments per entry: ``class_labels``,
    ``prompt`` or precomputed ``prompt_embeds``), ``seeds`` holds one seed per sample (each sample
    gets its own generator, so a sample never depends on its batch). It returns the pipeline's
    final latents (or, for pipelines without latent output, its ``pt`` images). A
    :class:`~gocopt.sampling.Sampler`.
    """

    def __init__(self, pipe: Any, inputs: Sequence[dict[str, Any]], steps: int,
                 call_kwargs: dict | None = None) -> None:
        if not inputs:
            raise GocoptError("compiling a pipeline needs calibration inputs: inputs=[{'class_labels': 3}, …] or "
                              "[{'prompt': 'a photo of a cat'}, …] or precomputed prompt embeddings")
        self.pipe, self.inputs, self.steps = pipe, list(inputs), int(steps)
        self.call_kwargs = dict(call_kwargs or {})
        source = inspect.getsource(type(pipe).__call__)
        self.output_type = "latent" if '"latent"' in source else "pt"
        self.timesteps: list[float] | None = None  # what the transformer receives, recorded on the first run
        self.scheduler_timesteps: list[float] | None = None  # the scheduler's own, for the deploy-time guard
        self.guidance: str | None = None

    def describe(self) -> dict[str, Any]:
        if self.timesteps is None:
            raise GocoptError("the pipeline has not been run yet; call sample() once first")
        example = self.inputs[0]
        serialisable = all(isinstance(v, (int, float, str, bool)) for v in example.values())
        return {"name": type(self.pipe).__name__, "steps": self.steps, "timesteps": list(self.timesteps),
                "scheduler_timesteps": self.scheduler_timesteps,
                "guidance": self.guidance, "scheduler": type(self.pipe.scheduler).__name__,
                "pipeline": type(self.pipe).__name__, "call_kwargs": _plain(self.call_kwargs),
                "example_input": example if serialisable else None}

    @torch.no_grad()
    def sample(self, model: nn.Module, input_indices: torch.Tensor, seeds: torch.Tensor, /, *,
               num_classes: int | None = None, progress: bool = False) -> torch.Tensor:
        """The pipeline run once with ``model`` as its transformer on ``inputs[i]`` for each index,
        sample ``k`` drawn from its own generator seeded ``seeds[k]``."""
        inputs = merge_inputs([self.inputs[int(i)] for i in input_indices])
        device = next(_original_transformer(self.pipe).parameters()).device
        generators = [torch.Generator(device).manual_seed(int(s)) for s in seeds]
        recorded: list[tuple[float | None, str]] = []
        hook = None
        if isinstance(model, CachedModel) and self.timesteps is None:
            def record(module, args, kwargs) -> None:
                call = dict(zip(("hidden_states", "timestep"), args)) | kwargs
                recorded.append((timestep_value(call.get("timestep")), module.runtime.context_name))
            hook = model.register_forward_pre_hook(record, with_kwargs=True)
        bar = getattr(self.pipe, "_progress_bar_config", None)
        self.pipe.set_progress_bar_config(disable=not progress)
        try:
            with using_transformer(self.pipe, model), _unhooked(self.pipe):
                out = self.pipe(**inputs, **self.call_kwargs, generator=generators, num_inference_steps=self.steps,
                                output_type=self.output_type, return_dict=False)[0]
        finally:
            if hook is not None:
                hook.remove()
            if bar is None:
                del self.pipe._progress_bar_config
            else:
                self.pipe._progress_bar_config = bar
        if recorded:
            self._record(recorded)
            self.scheduler_timesteps = [float(t) for t in torch.as_tensor(self.pipe.scheduler.timesteps).tolist()]
        return torch.as_tensor(out).float()

    def _record(self, calls: list[tuple[float | None, str]]) -> None:
        contexts = {c for _, c in calls}
        self.guidance = "batched" if contexts == {DEFAULT_CONTEXT} else "separate"
        first = next(iter(sorted(contexts)))
        self.timesteps = [t for t, c in calls if c == first and t is not None]
        if len(self.timesteps) != self.steps:
            raise GocoptError(f"the pipeline called its transformer {len(self.timesteps)} times per context for "
                              f"{self.steps} steps; gocopt schedules need one call per step and context")


def capture_call(pipe: Any, sampler: PipelineSampler, seed: int) -> tuple[tuple, dict]:
    """The arguments of the pipeline's first transformer call (tracing needs one real call)."""
    transformer = _original_transformer(pipe)
    return first_call(transformer, lambda: sampler.sample(transformer, torch.tensor([0]), torch.tensor([seed])))


PIPELINE_EFFORT = Effort.for_pipeline()  # a pipeline's default samples per phase


def compile_pipeline(pipe: Any, budgets: Sequence[float], *, inputs: Sequence[dict[str, Any]], steps: int,
                     call_kwargs: dict | None = None, effort: Effort | None = None, study: StudyConfig | None = None,
                     progress: bool = True, join: bool = False) -> list[CachedModel]:
    """Search a schedule per budget for ``pipe.transformer`` under ``pipe``'s scheduler at ``steps``,
    install the first, and return every compiled transformer (``[]`` for a joining worker).

    Calibration and search sample ``effort.search_samples`` inputs (cycling through ``inputs``),
    quality is scored on ``effort.heldout_samples`` other seeds. A pipeline's scheduler cannot
    restart a run midway, so its span table runs every span whole: by default
    (``PIPELINE_EFFORT``) 16 search and 8 held-out samples, spans on 2 of them (whole runs cost a
    pipeline 1.5× more per seed than lookahead costs a DiT), and as many trials as the cap pays for.
    """
    for b in budgets:
        check_budget(b, steps)
    remove(pipe)
    sampler = PipelineSampler(pipe, inputs, steps, call_kwargs)
    plan = plan_compile(effort or PIPELINE_EFFORT, sampler, budgets, None)
    seed, study = plan.effort.seed, study or StudyConfig()
    transformer = _original_transformer(pipe)
    meter = WorkMeter([transformer], steps=steps, rows_per_image_step=2)  # CFG; checked on the recording run
    with meter:
        with meter.phase("tracing"):
            example = capture_call(pipe, sampler, SEARCH_SEED_BASE + seed)
            compiled = cache_model(transformer, None, example)
            meter.watch(compiled)
            search = SampleSet.make(plan.effort.search_samples, SEARCH_SEED_BASE + seed, len(inputs))
            held = SampleSet.make(plan.effort.heldout_samples, HELDOUT_SEED_BASE + seed, len(inputs))
            with torch.no_grad(), meter.phase("recording"):  # an all-compute run records the transformer's timesteps
                compiled.reset()
                sampler.sample(compiled, search.labels[:1], torch.tensor(search.seeds[:1]))
            meter.rows_per_image_step = max(1, round(meter.phases["recording"].rows / steps))  # 1 image: rows per step
        with meter.phase("held-out scoring"):
            heldout = None if join else HeldOut(compiled, sampler, held.labels, torch.tensor(held.seeds),
                                                num_classes=None)
        if study.name is None:
            study = replace(study, name=f"gocopt-{type(pipe).__name__}-{type(pipe.scheduler).__name__}{steps}")
        results = search_budgets(compiled, sampler, budgets, search.labels, torch.tensor(search.seeds), search.seeds,
                                 heldout, num_classes=None, plan=plan, study=study, progress=progress,
                                 example_inputs=example, join=join, meter=meter)
    if results:
        install(pipe, results[0])
    return results


def install(pipe: Any, compiled: CachedModel) -> Any:
    """Put ``compiled`` in ``pipe`` and guard the scheduler (see the module docstring)."""
    schedule = compiled.schedule
    if schedule is None:
        raise ScheduleError("the compiled transformer has no schedule to install")
    if _original_transformer(pipe) is not compiled.original:
        raise GocoptError("the compiled transformer was made from another model than this pipeline's transformer")
    scheduler = pipe.scheduler
    expected_scheduler = (schedule.sampler or {}).get("scheduler")
    if expected_scheduler not in (None, type(scheduler).__name__):
        raise ScheduleError(f"pipeline scheduler: schedule was made for {expected_scheduler}, the pipeline uses "
                            f"{type(scheduler).__name__}; compile again with this scheduler, or swap it back")
    remove(pipe)
    set_timesteps = scheduler.set_timesteps

    expected = (schedule.sampler or {}).get("scheduler_timesteps")

    @functools.wraps(set_timesteps)
    def checked_set_timesteps(*args: Any, **kwargs: Any) -> Any:
        out = set_timesteps(*args, **kwargs)
        steps = len(scheduler.timesteps)
        if steps != schedule.steps:
            raise ScheduleError(f"num_inference_steps: schedule was made for {schedule.steps} steps, the pipeline was "
                                f"called with {steps}; call it with num_inference_steps={schedule.steps} or compile "
                                f"for {steps} steps")
        # every pipeline call is a new run, also after an interrupted one; with the scheduler's timesteps
        # checked here, once, before any denoising, the transformer calls need no device reads at all
        compiled.runtime.announce_run(_checked_timesteps(scheduler, expected, schedule.timesteps))
        return out

    scheduler.__dict__[_HOOK_ATTR] = scheduler.__dict__.get("set_timesteps")  # a wrapper of the user's, if any
    scheduler.__dict__["set_timesteps"] = checked_set_timesteps
    _set_transformer(pipe, compiled)
    logger.info("gocopt schedule %r installed in %s: %d steps, cost %.3f of site FLOPs", schedule.name,
                type(pipe).__name__, schedule.steps, schedule.cost(compiled.site_flops))
    return pipe


def _checked_timesteps(scheduler: Any, expected: list[float] | None, transformer_timesteps) -> Any:
    """The transformer timesteps of this run if the scheduler's match the schedule's, else refuse.

    ``None`` (a schedule file without the scheduler's timesteps): the run's timesteps are then
    checked on the device, call by call (see :mod:`gocopt.runtime.runtime`).
    """
    if expected is None:
        return None
    got = [float(t) for t in torch.as_tensor(scheduler.timesteps).tolist()]  # one read, before the first step
    bad = next((i for i, (a, b) in enumerate(zip(got, expected)) if abs(a - b) > 1e-4 * max(1.0, abs(b))), None)
    if bad is not None:
        raise ScheduleError(f"the scheduler's timesteps differ from the schedule's at step {bad} ({got[bad]:g} vs "
                            f"{expected[bad]:g}): another shift, resolution or spacing than the schedule was made for; "
                            "compile again with this pipeline configuration")
    return transformer_timesteps


def remove(pipe: Any) -> Any:
    """Undo :func:`install`: the pipeline's original transformer and scheduler, exactly."""
    _restore_scheduler(pipe.scheduler)
    _set_transformer(pipe, _original_transformer(pipe))
    return pipe


def _restore_scheduler(scheduler: Any) -> dict[str, Any]:
    """Take gocopt's guard off ``scheduler`` (a wrapper the user installed before stays); returns what was taken."""
    if _HOOK_ATTR not in scheduler.__dict__:
        return {}
    taken = {"set_timesteps": scheduler.__dict__.pop("set_timesteps"), _HOOK_ATTR: scheduler.__dict__.pop(_HOOK_ATTR)}
    if taken[_HOOK_ATTR] is not None:
        scheduler.__dict__["set_timesteps"] = taken[_HOOK_ATTR]
    return taken


@contextlib.contextmanager
def _unhooked(pipe: Any) -> Iterator[None]:
    """The scheduler without gocopt's guard (compile runs candidate schedules of its own)."""
    scheduler = pipe.scheduler
    taken = _restore_scheduler(scheduler)
    try:
        yield
    finally:
        scheduler.__dict__.update(taken)


def load_pipeline(pipe: Any, path: str | Path, *, inputs: Sequence[dict[str, Any]] | None = None,
                  call_kwargs: dict[str, Any] | None = None, check_weights: bool = True) -> Any:
    """Install the schedule in ``path`` after checking it was made for this transformer and scheduler.

    Tracing needs one real transformer call: the pipeline is started on ``inputs[0]`` (or the
    example input the schedule recorded, for class labels and prompts) with the pipeline
    arguments recorded at compile time (updated by ``call_kwargs``) and stopped at that call.
    """

    remove(pipe)
    schedule = load_schedule(path)
    recorded = schedule.sampler or {}
    if recorded.get("scheduler") not in (None, type(pipe.scheduler).__name__):
        raise ScheduleError(f"pipeline scheduler: schedule {path} was made for {recorded['scheduler']}, the pipeline "
                            f"uses {type(pipe.scheduler).__name__}; compile again with this scheduler")
    example = list(inputs or ([recorded["example_input"]] if recorded.get("example_input") else []))
    if not example:
        raise GocoptError(f"{path} was compiled from prompt embeddings; pass inputs=[one input like them] to "
                          "gocopt.load so the transformer can be traced on a real call")
    kwargs = {**recorded.get("call_kwargs", {}), **(call_kwargs or {})}
    call = capture_call(pipe, PipelineSampler(pipe, example, schedule.steps, kwargs), 0)
    return install(pipe, load_model(_original_transformer(pipe), path, spec=DiTSpec(example_inputs=call),
                                    check_weights=check_weights))


def _plain(kwargs: dict) -> dict:
    """The arguments a JSON file can hold (numbers, strings, booleans, None)."""
    return {k: v for k, v in kwargs.items() if isinstance(v, (int, float, str, bool, type(None)))}
