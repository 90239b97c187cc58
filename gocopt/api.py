"""The user's entry points: compile a model at a budget; load a committed schedule.

    compiled = gocopt.compile(model, budget=0.5)            # search, then apply
    compiled.save("schedules/my_dit_ddim20_b0.50.json")      # commit this
    compiled = gocopt.load(model, "schedules/my_dit_ddim20_b0.50.json", sampler=sampler)  # deploy

A façade: models go to :mod:`gocopt.driver`, diffusers pipelines to
:mod:`gocopt.integrations.diffusers`, which runs the same driver.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from gocopt.driver import compile_model, load_model
from gocopt.errors import ArgumentError
from gocopt.integrations.diffusers import compile_pipeline, is_pipeline, load_pipeline
from gocopt.metrics.quality import QualityEvaluator
from gocopt.search.effort import Effort
from gocopt.search.graphs import DEFAULT_MAX_GRAPHS
from gocopt.search.storage import DEFAULT_HEARTBEAT


def compile(  # noqa: A001 - the product's verb, as in torch.compile
    model: nn.Module,
    budget: float | Sequence[float] = 0.5,
    *,
    steps: int = 20,
    sampler: Any = None,
    trials: int | None = None,
    search_samples: int | None = None,
    heldout_samples: int | None = None,
    max_samples: float | None = None,
    effort: Effort | None = None,
    seed: int = 0,
    storage: Any = None,
    study_name: str | None = None,
    example_inputs: Any = None,
    progress: bool = True,
    inputs: Sequence[dict[str, Any]] | None = None,
    call_kwargs: dict[str, Any] | None = None,
    num_classes: int | None = None,
    latent_shape: Sequence[int] | None = None,
    evaluator: QualityEvaluator | None = None,
    join: bool = False,
    heartbeat: int | None = DEFAULT_HEARTBEAT,
    max_graphs: int | None = DEFAULT_MAX_GRAPHS,
) -> Any:
    """Search the cache schedule that keeps samples closest to the uncached model's while
    computing at most ``budget`` of the site FLOPs, and return the model compiled with it.

    The model must be a class-conditional DiT called as ``model(x, t, y)``. Its class count and
    latent shape are read off the model (gocopt's DiTs; the original DiT's embedders) or given as
    ``num_classes=`` and ``latent_shape=(C, H, W)``; the example call for tracing is the sampler's
    own first call (or ``example_inputs``), in the model's device and dtype.
    ``budget`` may be a list: one search per budget, one compiled model each. ``sampler``
    defaults to DDIM with ``steps`` steps, CFG 4 in one batched call, no x0 clipping (latent DiTs;
    a pixel-space model passes its own sampler). ``evaluator`` (e.g. gocopt's digits classifier,
    :class:`~gocopt.metrics.quality.QualityEvaluator`, for the reference model) adds the Fréchet
    distance to the uncached samples in its features to the recorded quality. ``storage``: any Optuna
    storage (URL or object) to share or resume the study; ``study_name`` names it there. ``join=True``
    makes this process one more worker of that shared study: it runs trials and returns ``None``
    (``[]`` for several budgets); the process without it scores and returns the result.
    What a compile spends is planned before it starts, in uncached-sample equivalents (the model
    work of sampling one image uncached, :mod:`gocopt.search.effort`): ``max_samples`` caps it
    (default: 100 for one budget, 50 more per extra budget, held-out scoring included) and the
    search runs as many trials as the rest pays for; a cap too small for calibration, the span
    table and the held-out check is refused with the least that works. ``effort`` sets the samples
    of each phase (``Effort.full()``: the far costlier settings of gocopt 0.1); ``trials``,
    ``search_samples`` (the calibration run, also the search's inputs) and ``heldout_samples``
    replace its fields. The schedule records what was planned and what was spent.
    ``heartbeat``: seconds between a running trial's heartbeats in a database storage (a worker
    silent for three is taken for dead and its trial re-run). ``max_graphs``: at most this many
    distinct step graphs per schedule (each is one ``torch.compile`` compilation and, with CUDA
    graphs, one captured set; ``None``: no limit).
    The result's ``.schedule`` records the model fingerprint, the sampler, calibration and search
    summaries and the quality measured on ``heldout_samples`` seeds the search never saw (next to
    the FORA+GOC (paper settings) and L2C-like baselines at the same budget with ``Effort(baselines=True)``).

    ``model`` may also be a diffusers pipeline (DiT, PixArt, SD3, Flux, …): its scheduler at
    ``steps`` defines the steps, ``inputs`` are the calibration inputs (one dict of pipeline
    arguments each, e.g. ``{"class_labels": 3}`` or ``{"prompt": "…"}``), ``call_kwargs`` fixed
    pipeline arguments (``guidance_scale``, …); the schedule is installed in the pipeline, which
    is returned (see :mod:`gocopt.integrations.diffusers`).
    """
    _refuse_what_does_not_apply(
        model, "compile", model_only={"sampler": sampler, "example_inputs": example_inputs, "num_classes": num_classes,
                                      "latent_shape": latent_shape, "evaluator": evaluator},
        pipeline_only={"inputs": inputs, "call_kwargs": call_kwargs})
    if is_pipeline(model):
        return compile_pipeline(model, budget, inputs=inputs or [], steps=steps, call_kwargs=call_kwargs, trials=trials,
                                search_samples=search_samples, heldout_samples=heldout_samples,
                                max_samples=max_samples, effort=effort, seed=seed,
                                storage=storage, study_name=study_name, progress=progress, join=join,
                                heartbeat=heartbeat, max_graphs=max_graphs)
    return compile_model(model, budget, steps=steps, sampler=sampler, trials=trials, search_samples=search_samples,
                         heldout_samples=heldout_samples, max_samples=max_samples, effort=effort, seed=seed,
                         storage=storage, study_name=study_name,
                         example_inputs=example_inputs, progress=progress, num_classes=num_classes,
                         latent_shape=latent_shape, evaluator=evaluator, join=join, heartbeat=heartbeat,
                         max_graphs=max_graphs)


def load(model: nn.Module, path: str | Path, *, sampler: Any = None, example_inputs: Any = None,
         check_weights: bool = True, inputs: Sequence[dict[str, Any]] | None = None,
         call_kwargs: dict[str, Any] | None = None, num_classes: int | None = None,
         latent_shape: Sequence[int] | None = None) -> Any:
    """The compiled ``model`` running the schedule in ``path``, after checking it was made for both.

    Refuses (``ScheduleError``, naming the field, the expected and the found value) another model
    class, other parameter shapes, other sites, other weights (unless ``check_weights=False``),
    and — when ``sampler`` is given — another step count, timestep list or guidance mode. Without
    ``sampler`` the timesteps are still checked at every run: once on the host when the sampler
    announces them (gocopt's samplers, diffusers pipelines), else on the device. A model without
    ``example_inputs()`` is traced on the sampler's first call (``num_classes`` / ``latent_shape``
    as for :func:`compile` where the model does not state them). A diffusers pipeline gets the
    schedule installed (``inputs``/``call_kwargs``: see :mod:`gocopt.integrations.diffusers`).
    """
    _refuse_what_does_not_apply(
        model, "load", model_only={"sampler": sampler, "example_inputs": example_inputs, "num_classes": num_classes,
                                   "latent_shape": latent_shape},
        pipeline_only={"inputs": inputs, "call_kwargs": call_kwargs})
    if is_pipeline(model):
        return load_pipeline(model, path, inputs=inputs, call_kwargs=call_kwargs, check_weights=check_weights)
    return load_model(model, path, sampler=sampler, example_inputs=example_inputs, check_weights=check_weights,
                      num_classes=num_classes, latent_shape=latent_shape)


def _refuse_what_does_not_apply(model: Any, verb: str, *, model_only: dict[str, Any],
                                pipeline_only: dict[str, Any]) -> None:
    """Raise :class:`~gocopt.errors.ArgumentError` naming every argument given that does not apply
    to ``model``: a pipeline brings its own sampler (its scheduler), inputs and shapes; a bare model
    has no pipeline inputs. Dropping them silently would compile something other than was asked."""
    pipeline = is_pipeline(model)
    given = [name for name, value in (model_only if pipeline else pipeline_only).items() if value is not None]
    if not given:
        return
    if pipeline:
        raise ArgumentError(f"gocopt.{verb}: {', '.join(given)} do(es) not apply to a diffusers pipeline, which "
                            "brings its own scheduler, inputs and shapes; set the scheduler and steps on the pipeline, "
                            "pass calibration prompts or labels as inputs= and fixed arguments as call_kwargs=")
    raise ArgumentError(f"gocopt.{verb}: {', '.join(given)} apply only to a diffusers pipeline; for a model, pass "
                        "sampler= (its steps and guidance) and, where the model does not state them, num_classes= "
                        "and latent_shape=")


__all__ = ["compile", "load"]
