"""gocopt vs diffusers' own caches, in one real ``DiTPipeline`` running the trained reference DiT.

    python -m benchmarks.diffusers_caches            # docs/benchmarks/diffusers_caches.{md,json}
    python -m benchmarks.diffusers_caches --quick    # CI-sized

Every contender runs the same pipeline (``gocopt.integrations.reference_pipeline``: the reference
weights in ``DiTTransformer2DModel``, gocopt's DDIM steps, CFG 4) on the same seeds and labels,
one image per call (what a latency-bound server does; diffusers' caches decide per call, so a
bigger batch would couple samples). Cost is *measured*, not assumed: the transformer's FLOPs
counted by gocopt's dispatch-mode counter over whole pipeline runs, relative to the uncached run.
Each cache runs at the two values of its knob (threshold or interval) whose measured costs bracket
gocopt's measured cost most tightly; a cache that cannot get down to it runs at its cheapest setting.
Quality is PSNR and FD (classifier features) against the uncached pipeline's images.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

import gocopt
from benchmarks.threads import bench_threads
from gocopt.atomic import atomic_write_text
from gocopt.integrations.diffusers import PIPELINE_EFFORT
from gocopt.metrics.fidelity import paired_fidelity
from gocopt.metrics.frechet import frechet_distance
from gocopt.metrics.quality import QualityEvaluator
from gocopt.report import environment, markdown_table, write_json
from gocopt.timing import timed
from gocopt.trace.flops import count_flops

SEED_BASE = 40_000  # apart from every other seed set gocopt uses
Configure = Callable[[object, float, Callable[[], int]], None]  # (pipeline, knob, current timestep) → cache applied


def _pipeline(with_diffusers_cache: bool = False) -> tuple[object, Callable[[], int]]:
    """A fresh reference DiTPipeline and a function giving the timestep of its next transformer call
    (PyramidAttentionBroadcast asks for it; DiTPipeline does not expose one).

    DiTPipeline predates diffusers' cache hooks: it neither sets a cache context (its transformer has
    no ``CacheMixin``) nor resets the caches' state between calls. At the start of every call this
    does both (``with_diffusers_cache``), with the one context a batched-CFG pipeline uses — what a newer
    pipeline does itself.
    """
    from diffusers.hooks.hooks import CacheContext, HookRegistry, _set_cache_context

    from gocopt.integrations.reference_pipeline import reference_pipeline

    pipe = reference_pipeline()
    pipe.set_progress_bar_config(disable=True)
    calls = [0]
    set_timesteps = pipe.scheduler.set_timesteps

    def counted_set_timesteps(*args, **kwargs):
        calls[0] = 0  # a new pipeline call
        if with_diffusers_cache:  # what DiTPipeline does not do for diffusers' caches (see above)
            registry = HookRegistry.check_if_exists_or_initialize(pipe.transformer)
            registry.invalidate_child_registries_cache()
            registry.reset_stateful_hooks(recurse=True)
            _set_cache_context(pipe.transformer, CacheContext("cond"))
        return set_timesteps(*args, **kwargs)

    pipe.scheduler.set_timesteps = counted_set_timesteps
    pipe.transformer.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    return pipe, lambda: int(pipe.scheduler.timesteps[min(calls[0], len(pipe.scheduler.timesteps) - 1)])


def run(pipe, labels: list[int], steps: int) -> tuple[torch.Tensor, float]:
    """One image per call; images in [-1, 1] and total seconds."""
    @torch.no_grad()
    def one_per_call() -> torch.Tensor:
        return torch.cat([pipe(class_labels=[label], generator=[torch.Generator().manual_seed(SEED_BASE + i)],
                               num_inference_steps=steps, guidance_scale=4.0, output_type="pt").images * 2 - 1
                          for i, label in enumerate(labels)])

    return timed(one_per_call)


def measured_cost(pipe, labels: list[int], steps: int, uncached_flops: float) -> float:
    return count_flops(run, pipe, labels, steps) / uncached_flops


def magcache_ratios(steps: int) -> list[float]:
    """MagCache's per-step magnitude ratios for this model and sampler, from its calibration mode
    (which prints them for the user to copy — the documented interface)."""
    from diffusers.hooks import MagCacheConfig, apply_mag_cache

    pipe, _ = _pipeline(with_diffusers_cache=True)
    apply_mag_cache(pipe.transformer, MagCacheConfig(calibrate=True, num_inference_steps=steps))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        run(pipe, [0], steps)
    lines = printed.getvalue().splitlines()
    header = next(i for i, line in enumerate(lines) if "Calibration Complete" in line)
    return [float(v) for v in ast.literal_eval(lines[header + 1])]


def diffusers_caches(steps: int) -> dict[str, tuple[Configure, list[float]]]:
    """Each built-in cache of the installed diffusers: how to apply it at a knob value, and the
    knob values to try (cheapest last)."""
    from diffusers.hooks import (
        FirstBlockCacheConfig,
        MagCacheConfig,
        PyramidAttentionBroadcastConfig,
        TaylorSeerCacheConfig,
        apply_first_block_cache,
        apply_mag_cache,
        apply_pyramid_attention_broadcast,
        apply_taylorseer_cache,
    )

    ratios = magcache_ratios(steps)

    def fbc(pipe, threshold: float, current_timestep) -> None:
        apply_first_block_cache(pipe.transformer, FirstBlockCacheConfig(threshold=threshold))

    def pab(pipe, skip: float, current_timestep) -> None:
        apply_pyramid_attention_broadcast(pipe.transformer, PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=int(skip), spatial_attention_timestep_skip_range=(-1, 1000),
            current_timestep_callback=current_timestep))

    def taylorseer(pipe, interval: float, current_timestep) -> None:
        # its default identifiers ("^transformer_blocks.*attn", full match) miss DiT's "attn1": name the
        # attention and feed-forward of every block, so it can skip what gocopt skips
        apply_taylorseer_cache(pipe.transformer, TaylorSeerCacheConfig(
            cache_interval=int(interval), disable_cache_before_step=1, max_order=1, taylor_factors_dtype=torch.float32,
            cache_identifiers=[r"^transformer_blocks\.\d+\.attn1$", r"^transformer_blocks\.\d+\.ff$"]))

    def magcache(pipe, threshold: float, current_timestep) -> None:
        apply_mag_cache(pipe.transformer, MagCacheConfig(threshold=threshold, num_inference_steps=steps,
                                                         mag_ratios=ratios))

    thresholds = [10 ** (-3 + 0.125 * k) for k in range(33)]
    return {"diffusers FirstBlockCache": (fbc, thresholds),
            "diffusers MagCache": (magcache, thresholds),
            "diffusers PyramidAttentionBroadcast": (pab, [2, 3, 4, 6, 10]),
            "diffusers TaylorSeerCache": (taylorseer, [2, 3, 4, 5, 6])}


def bracket_knob(configure: Configure, knobs: list[float], target: float, labels: list[int], steps: int,
                 uncached_flops: float) -> list[tuple[float, float]]:
    """The knob values whose measured costs bracket ``target`` most tightly: the most expensive one at
    or below it and the cheapest one above it (one of them if the knob cannot reach the other side)."""
    measured = []
    for knob in knobs:
        pipe, current_timestep = _pipeline(with_diffusers_cache=True)
        configure(pipe, knob, current_timestep)
        measured.append((knob, measured_cost(pipe, labels, steps, uncached_flops)))
    below = max((m for m in measured if m[1] <= target + 0.005), key=lambda m: m[1], default=None)
    above = min((m for m in measured if m[1] > target + 0.005), key=lambda m: m[1], default=None)
    return [m for m in (below, above) if m is not None]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--out", default="docs/benchmarks/diffusers_caches")
    args = parser.parse_args(argv)
    torch.set_num_threads(bench_threads())
    logging.basicConfig(level=logging.WARNING)
    samples, trials, fit_samples = (12, 3, 2) if args.quick else (args.samples, args.trials, 4)
    labels = [i % 10 for i in range(samples)]
    evaluator = QualityEvaluator()

    plain, _ = _pipeline()
    uncached, uncached_seconds = run(plain, labels, args.steps)
    uncached_features = evaluator.features(uncached)
    uncached_flops = count_flops(run, plain, labels[:fit_samples], args.steps)

    cost_labels = labels[: min(len(labels), 32)]  # dynamic caches' cost varies per sample: average over 32
    uncached_cost_flops = count_flops(run, plain, cost_labels, args.steps)

    def score(name: str, pipe, setting: str) -> dict:
        images, seconds = run(pipe, labels, args.steps)
        cost = measured_cost(pipe, cost_labels, args.steps, uncached_cost_flops)
        return {"method": name, "setting": setting, "cost": cost, **paired_fidelity(images, uncached),
                "fd_vs_uncached": frechet_distance(evaluator.features(images), uncached_features),
                "seconds": seconds, "speedup": uncached_seconds / seconds}

    rows = [{"method": "uncached DiTPipeline", "setting": "", "cost": 1.0, "psnr_vs_uncached": None,
             "ssim_vs_uncached": 1.0, "fd_vs_uncached": 0.0, "seconds": uncached_seconds, "speedup": 1.0}]
    pipe, _ = _pipeline()
    effort = replace(PIPELINE_EFFORT, trials=trials, search_samples=16 if args.quick else 64,
                     heldout_samples=8 if args.quick else 64, **({"surrogate_trials": 100} if args.quick else {}))
    gocopt.compile_pipeline(pipe, args.budget, inputs=[{"class_labels": c} for c in range(10)], steps=args.steps,
                            call_kwargs={"guidance_scale": 4.0}, effort=effort)
    rows.append(score("gocopt compile", pipe, f"budget {args.budget}, {trials} trials"))
    target = rows[-1]["cost"]  # equal cost means gocopt's measured cost, not its site-FLOP budget
    for name, (configure, knobs) in diffusers_caches(args.steps).items():
        for knob, cost in bracket_knob(configure, knobs[-2:] if args.quick else knobs, target, labels[:fit_samples],
                                       args.steps, uncached_flops):
            pipe, current_timestep = _pipeline(with_diffusers_cache=True)
            configure(pipe, knob, current_timestep)
            side = "at or below" if cost <= target + 0.005 else "above"
            rows.append(score(name, pipe, f"knob {knob:g} ({side} gocopt's cost)"))
    write_outputs(rows, args, samples, Path(args.out))


def write_outputs(rows: list[dict], args, samples: int, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), {"rows": rows, "samples": samples,
                                          "budget": args.budget, "steps": args.steps, "environment": environment()})
    import diffusers

    table = markdown_table(rows, [("method", "cache", ""), ("setting", "setting", ""), ("cost", "measured cost", ".3f"),
                                  ("psnr_vs_uncached", "PSNR (dB)", ".2f"), ("ssim_vs_uncached", "SSIM", ".4f"),
                                  ("fd_vs_uncached", "FD vs uncached", ".4f"), ("seconds", "seconds", ".1f"),
                                  ("speedup", "speedup", ".2f")])
    text = (f"# gocopt vs diffusers' caches in DiTPipeline (reference DiT, DDIM-{args.steps}, CFG 4, budget "
            f"{args.budget})\n\nMeasured in one run by `python -m benchmarks.diffusers_caches"
            f"{' --quick' if args.quick else ''}` (diffusers {diffusers.__version__}, torch "
            f"{environment()['torch']}, 2 CPU threads), one image per pipeline call. Cost = transformer FLOPs counted "
            "over whole pipeline runs, relative to the uncached pipeline; each diffusers cache runs at the two knob "
            "values "
            "whose measured costs bracket gocopt's measured cost most tightly (one, if its knob cannot reach the other "
            "side). "
            "PSNR/SSIM/FD are against the uncached pipeline's images on the same seeds; the cost column is measured on "
            "the first 32 samples.\n\nMagCache runs with the magnitude ratios its own calibration mode measures on "
            "this "
            "model and sampler (default max_skip_steps 3, retention_ratio 0.2). Not run: FasterCache — its hook reads "
            "the CFG batch as (uncond, cond) (`hidden_states.chunk(2)`), the order newer pipelines use, while "
            "DiTPipeline batches (cond, uncond); in its guidance-distilled mode it reduces to attention-only skipping "
            "like PyramidAttentionBroadcast. PyramidAttentionBroadcast skips attention only, so its cheapest setting "
            "stays far "
            "above the budget.\n\n" + table)
    atomic_write_text(out.with_suffix(".md"), text)
    print(text)


if __name__ == "__main__":
    main()
