"""The user's entry points: compile a model at a budget; load a committed schedule.

    compiled = gocopt.compile(model, budget=0.5)            # search, then apply
    compiled.save("schedules/my_dit_ddim20_b0.50.json")      # commit this
    compiled = gocopt.load(model, "schedules/my_dit_ddim20_b0.50.json", sampler=sampler)  # deploy

What a compile spends is an :class:`~gocopt.search.effort.Effort`, where its study lives a
:class:`~gocopt.search.study_config.StudyConfig`, what gocopt cannot read off the model a
:class:`~gocopt.models.convention.DiTSpec`: frozen, validated objects, so a call takes a handful of
arguments and every bad value is refused before any work, naming the field. A process that only
adds trials to a shared study calls :func:`join_study`; diffusers pipelines have their own three
entry points. The keyword arguments of gocopt 0.1 still work, with a ``DeprecationWarning`` saying
what to write instead (:mod:`gocopt.legacy`).

A façade: models go to :mod:`gocopt.driver`, pipelines to :mod:`gocopt.integrations.diffusers`,
which runs the same driver.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar, overload

from torch import nn

from gocopt.compiled import CachedModel
from gocopt.compiled_budgets import CompiledBudgets
from gocopt.driver import DEFAULT_STEPS, budget_list, compile_model, default_sampler, load_model
from gocopt.errors import ArgumentError
from gocopt.integrations import diffusers as pipelines
from gocopt.legacy import LegacyArguments
from gocopt.models.convention import DiTSpec
from gocopt.sampling import Sampler
from gocopt.search.effort import Effort
from gocopt.search.study_config import StudyConfig

Pipeline = TypeVar("Pipeline")


@overload
def compile(model: nn.Module, budget: float = 0.5, *, sampler: Sampler | None = None, spec: DiTSpec | None = None,
            effort: Effort | None = None, study: StudyConfig | None = None, progress: bool = True,
            **legacy: Any) -> CachedModel: ...
@overload
def compile(model: nn.Module, budget: Sequence[float], *, sampler: Sampler | None = None,
            spec: DiTSpec | None = None, effort: Effort | None = None, study: StudyConfig | None = None,
            progress: bool = True, **legacy: Any) -> CompiledBudgets: ...
def compile(  # noqa: A001 - the product's verb, as in torch.compile
    model: nn.Module,
    budget: float | Sequence[float] = 0.5,
    *,
    sampler: Sampler | None = None,
    spec: DiTSpec | None = None,
    effort: Effort | None = None,
    study: StudyConfig | None = None,
    progress: bool = True,
    **legacy: Any,
) -> CachedModel | CompiledBudgets:
    """Search the cache schedule that keeps samples closest to the uncached model's while
    computing at most ``budget`` of the site FLOPs, and return the model running it.

    The model is a class-conditional DiT called as ``model(x, t, y)``. The search calibrates on
    uncached runs, measures what each reuse span costs end to end, ranks thousands of schedules on
    a model-free surrogate, samples the best few, and scores the winner on seeds it never saw.

    Args:
        model: the DiT; never edited (gocopt traces it into a graph of its own, sharing parameters).
        budget: the fraction of the site FLOPs a run may compute, in (0, 1]; or a list of them,
            compiled together on one calibration (one schedule each).
        sampler: the diffusion sampler the schedule is for (its steps, timesteps and guidance);
            ``None``: :func:`default_sampler`, DiT's DDIM-20 with CFG 4 and no x0 clipping.
        spec: what the model does not state itself (class count, latent shape, an example call, a
            feature extractor for the Fréchet distance); ``None``: read off the model.
        effort: what the compile may spend (samples per phase, trials, the cap on model work in
            uncached-sample equivalents, the step-graph limit, the seed); ``None``: ``Effort()``,
            at most 100 samples' work for one budget, 50 more per extra budget.
        study: where the search's study lives (in memory by default; a database to share it with
            :func:`join_study` workers or to resume a killed compile).
        progress: show progress bars.

    Returns:
        The compiled model (a :class:`~gocopt.compiled.CachedModel`, ``.schedule`` recording the
        model fingerprint, the sampler, the search and the held-out quality; ``.save(path)``
        writes the file to commit), or a :class:`~gocopt.compiled_budgets.CompiledBudgets` of
        them, one per budget, when ``budget`` is a list.

    Raises:
        ScheduleError: a budget, sampler or effort no schedule can meet, named with the least that works.
        GocoptError: a model gocopt cannot sample or trace, naming what to pass in ``spec``.
        ArgumentError: an argument that does not apply (``steps=`` beside ``sampler=``, a diffusers
            pipeline here: use :func:`compile_pipeline`).

    Example:
        >>> import gocopt
        >>> from gocopt.models import model_by_name
        >>> model = model_by_name("DiT-Tiny", seed=0)
        >>> quick = gocopt.Effort(search_samples=4, heldout_samples=4, trials=2, surrogate_trials=100)
        >>> compiled = gocopt.compile(model, 0.5, sampler=gocopt.default_sampler(8), effort=quick, progress=False)
        >>> compiled.schedule.cost(compiled.site_flops) <= 0.5
        True
    """
    if pipelines.is_pipeline(model):
        return _legacy_pipeline_compile(model, budget, sampler=sampler, spec=spec, effort=effort, study=study,
                                        progress=progress, legacy=legacy)
    args = LegacyArguments("compile", legacy, pipeline=False)
    sampler, spec, effort, study = args.sampler(sampler), args.spec(spec), args.effort(effort), args.study(study)
    budgets = budget_list(budget)
    if args.join:
        args.warn()
        join_study(model, budgets, study=study or StudyConfig(), sampler=sampler, spec=spec, effort=effort,
                   progress=progress)
        return None if isinstance(budget, numbers.Real) else []  # type: ignore[return-value]  # 0.1's contract
    args.warn()
    return _one_or_many(budget, compile_model(model, budgets, sampler=sampler, spec=spec, effort=effort,
                                              study=study, progress=progress))


def join_study(model: nn.Module, budget: float | Sequence[float] = 0.5, *, study: StudyConfig,
               sampler: Sampler | None = None, spec: DiTSpec | None = None, effort: Effort | None = None,
               progress: bool = True) -> None:
    """Run trials of a shared study until it holds its planned count, as one more worker.

    The study's leader (the process that calls :func:`compile` with the same arguments and
    ``study``) measures calibration and spans once, scores the best schedule and writes it; a
    joining worker loads those measurements from the storage, runs trials, and returns. Start any
    number of them, at any time; one that dies mid-trial has its trial re-run by another.

    Args:
        model: as the leader's :func:`compile` (a study made for another model is refused).
        budget: as the leader's (another budget list is refused).
        study: the shared study: a :class:`~gocopt.search.study_config.StudyConfig` with a storage
            other processes can reach (a database URL or a journal file).
        sampler: as the leader's (another sampler is refused).
        spec: as the leader's.
        effort: as the leader's: the trial count and the search seeds must match.
        progress: show progress bars.

    Raises:
        ArgumentError: ``study`` keeps the study in memory, where nobody else can see it.
        StorageError: the storage cannot be reached, naming the URL (password masked).

    Example:
        >>> study = gocopt.StudyConfig(storage="sqlite:///search.db", name="dit-b0.5")  # doctest: +SKIP
        >>> gocopt.join_study(model, 0.5, study=study)  # doctest: +SKIP
    """
    _require_shared(study, "join_study")
    compile_model(model, budget_list(budget), sampler=sampler, spec=spec, effort=effort, study=study,
                  progress=progress, join=True)


def load(model: nn.Module, path: str | Path, *, sampler: Sampler | None = None, spec: DiTSpec | None = None,
         check_weights: bool = True, **legacy: Any) -> CachedModel:
    """The model running the schedule in ``path``, after checking the file was made for it.

    Args:
        model: the model the schedule was compiled for (the same class, parameter shapes, sites
            and, with ``check_weights``, weights).
        path: the schedule file (JSON, as :meth:`CachedModel.save` writes it).
        sampler: the sampler it will run under; when given, its step count, timesteps, guidance
            mode and clipping are checked now. Without it the timesteps are still checked at every
            run: once on the host when the sampler announces them (gocopt's samplers, diffusers
            pipelines), else on the device.
        spec: as for :func:`compile`, where the model does not state its class count and latent
            shape and has no ``example_inputs()`` (it is traced on the sampler's first call).
        check_weights: refuse other weights (fine-tuned, another checkpoint) than compiled.

    Returns:
        A :class:`~gocopt.compiled.CachedModel`, sharing ``model``'s parameters.

    Raises:
        ScheduleError: the file is damaged, or was made for another model, sampler, step count,
            timestep list, guidance mode or weights, naming the field, both values and the fix.

    Example:
        >>> import gocopt
        >>> from gocopt.models import reference
        >>> model = gocopt.load(reference(), "schedules/reference_ddim20_b0.50.json")
        >>> model.schedule.steps
        20
    """
    allowed = ("example_inputs", "num_classes", "latent_shape", "inputs", "call_kwargs")
    if pipelines.is_pipeline(model):
        args = LegacyArguments("load", legacy, pipeline=True, allowed=allowed)
        _refuse_for_pipeline("load", sampler=sampler, spec=spec, **args.model_only())
        args.warn(instead="gocopt.load_pipeline(pipe, path, inputs=..., call_kwargs=...)")
        return pipelines.load_pipeline(model, path, inputs=args.inputs, call_kwargs=args.call_kwargs,
                                       check_weights=check_weights)
    args = LegacyArguments("load", legacy, pipeline=False, allowed=allowed)
    spec = args.spec(spec)
    args.warn()
    return load_model(model, path, sampler=sampler, spec=spec, check_weights=check_weights)


def compile_pipeline(pipe: Any, budget: float | Sequence[float] = 0.5, *, inputs: Sequence[dict[str, Any]],
                     steps: int = DEFAULT_STEPS, call_kwargs: dict[str, Any] | None = None,
                     effort: Effort | None = None, study: StudyConfig | None = None,
                     progress: bool = True) -> CachedModel | CompiledBudgets:
    """:func:`compile` for a diffusers pipeline (DiT, PixArt, SD3, Flux, …): search a schedule for
    ``pipe.transformer`` under the pipeline's own scheduler, and install it in the pipeline.

    Args:
        pipe: the pipeline; its scheduler at ``steps`` defines the steps.
        budget: as for :func:`compile`.
        inputs: the calibration inputs, one dict of pipeline arguments each
            (``{"class_labels": 3}``, ``{"prompt": "…"}`` or precomputed prompt embeddings).
        steps: the pipeline's ``num_inference_steps``.
        call_kwargs: fixed pipeline arguments (``guidance_scale``, …), recorded in the schedule.
        effort: as for :func:`compile`; ``None``: ``Effort.for_pipeline()``, 16 search and 8
            held-out samples, spans on 2 (a scheduler cannot restart a run midway, so spans run
            whole); start from it to change one field: ``Effort.for_pipeline().with_overrides(trials=20)``.
        study: as for :func:`compile`.
        progress: show progress bars.

    Returns:
        The compiled transformer (installed in ``pipe``, whose calls now run the schedule), or one
        per budget (the first installed). ``.save(path)`` writes the file to commit.

    Raises:
        ScheduleError, GocoptError: as for :func:`compile`; also inputs that do not name the same
            pipeline arguments.

    Example:
        >>> compiled = gocopt.compile_pipeline(pipe, 0.5, inputs=[{"class_labels": c} for c in range(8)],
        ...                                    steps=25)  # doctest: +SKIP
        >>> compiled.save("schedules/dit_ddim25_b0.50.json")  # doctest: +SKIP
    """
    return _one_or_many(budget, pipelines.compile_pipeline(pipe, budget_list(budget), inputs=inputs, steps=steps,
                                                           call_kwargs=call_kwargs, effort=effort, study=study,
                                                           progress=progress))


def join_pipeline_study(pipe: Any, budget: float | Sequence[float] = 0.5, *, inputs: Sequence[dict[str, Any]],
                        study: StudyConfig, steps: int = DEFAULT_STEPS, call_kwargs: dict[str, Any] | None = None,
                        effort: Effort | None = None, progress: bool = True) -> None:
    """:func:`join_study` for a pipeline: every argument as the leader's :func:`compile_pipeline`."""
    _require_shared(study, "join_pipeline_study")
    pipelines.compile_pipeline(pipe, budget_list(budget), inputs=inputs, steps=steps, call_kwargs=call_kwargs,
                               effort=effort, study=study, progress=progress, join=True)


def load_pipeline(pipe: Pipeline, path: str | Path, *, inputs: Sequence[dict[str, Any]] | None = None,
                  call_kwargs: dict[str, Any] | None = None, check_weights: bool = True) -> Pipeline:
    """Install the schedule in ``path`` in ``pipe`` after checking it was made for its transformer
    and scheduler; returns ``pipe``, whose calls now run it (:func:`gocopt.remove` takes it out).

    Args:
        pipe: the pipeline.
        path: the schedule file.
        inputs: one input like the calibration inputs, to trace the transformer on a real call
            (``None``: the example input the file recorded, for class labels and prompts).
        call_kwargs: pipeline arguments updating those recorded at compile time.
        check_weights: as for :func:`load`.

    Raises:
        ScheduleError: another transformer, scheduler, step count or weights than compiled.

    Example:
        >>> gocopt.load_pipeline(pipe, "schedules/dit_ddim25_b0.50.json")  # doctest: +SKIP
    """
    return pipelines.load_pipeline(pipe, path, inputs=inputs, call_kwargs=call_kwargs, check_weights=check_weights)


def _one_or_many(budget: Any, results: list[CachedModel]) -> CachedModel | CompiledBudgets:
    return results[0] if isinstance(budget, numbers.Real) else CompiledBudgets(results)


def _require_shared(study: StudyConfig, verb: str) -> None:
    if not isinstance(study, StudyConfig) or not study.shared:
        raise ArgumentError(f"gocopt.{verb}: study={study!r} keeps the study in this process's memory, where no "
                            "leader can see the trials; give StudyConfig(storage='sqlite:///search.db' or a "
                            "database URL, name=...), the same as the leader's")


def _refuse_for_pipeline(verb: str, **given: Any) -> None:
    """Arguments for a model, given with a pipeline: refused by name (a pipeline brings its own
    scheduler, inputs and shapes); dropping them would compile something other than was asked."""
    named = [name for name, value in given.items() if value is not None]
    if named:
        raise ArgumentError(f"gocopt.{verb}: {', '.join(named)} do(es) not apply to a diffusers pipeline, which "
                            "brings its own scheduler, inputs and shapes; set the scheduler and steps on the pipeline, "
                            "pass calibration prompts or labels as inputs= and fixed arguments as call_kwargs=")


def _legacy_pipeline_compile(pipe: Any, budget: Any, *, sampler: Any, spec: Any, effort: Effort | None,
                             study: StudyConfig | None, progress: bool, legacy: dict[str, Any]) -> Any:
    """gocopt 0.1's ``compile(pipe, ...)``: the pipeline back (one budget) or the compiled
    transformers (several), after a DeprecationWarning naming :func:`compile_pipeline`."""
    args = LegacyArguments("compile", legacy, pipeline=True)
    _refuse_for_pipeline("compile", sampler=sampler, spec=spec, **args.model_only())
    effort, study = args.effort(effort, default=pipelines.PIPELINE_EFFORT), args.study(study)
    steps = args.steps if args.steps is not None else DEFAULT_STEPS
    args.warn(instead="gocopt.compile_pipeline(pipe, budget, inputs=..., steps=..., call_kwargs=...)", stacklevel=4)
    if args.join:
        join_pipeline_study(pipe, budget, inputs=args.inputs or [], study=study or StudyConfig(), steps=steps,
                            call_kwargs=args.call_kwargs, effort=effort, progress=progress)
        return None
    results = pipelines.compile_pipeline(pipe, budget_list(budget), inputs=args.inputs or [], steps=steps,
                                         call_kwargs=args.call_kwargs, effort=effort, study=study, progress=progress)
    return pipe if len(results) == 1 else results


__all__ = ["compile", "compile_pipeline", "default_sampler", "join_pipeline_study", "join_study", "load",
           "load_pipeline"]
