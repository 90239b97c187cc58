"""Ablation: weigh each site group's path by whole-model spans or by spans of that group alone.

    python -m benchmarks.span_tables --steps 20 50 --samples 256

The path family (:mod:`gocopt.search.path`) places attention and MLP compute steps on two least-error
paths. Their edge weights can be measured two ways: spans that reuse the whole model (what
``gocopt.compile`` does: one table, shared) or spans that reuse only that group while the other
is computed (one table per group, twice the measuring). This builds both masks for the path
candidates the committed schedules chose, and for the plain path with a fitted K = 3 predictor,
on the reference model, and scores them on seeds neither the compile nor its held-out check used.
The difference column is paired (same seeds), with its standard error.
Writes docs/benchmarks/span_tables.{json,md}.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from benchmarks.quality_table import DESIGN_SEED_BASE
from benchmarks.threads import bench_threads
from gocopt.atomic import atomic_write_text
from gocopt.calibrate import calibrate, detect_inflections
from gocopt.compiled import CachedModel, cache_model
from gocopt.driver import SEARCH_SEED_BASE, sampler_call
from gocopt.evaluate import SampleSet
from gocopt.metrics.fidelity import psnr
from gocopt.models import reference
from gocopt.models.convention import dit_spec
from gocopt.models.reference import REFERENCE_GUIDANCE_SCALE
from gocopt.report import environment, markdown_table, write_json
from gocopt.sampling import DDIMSampler, initial_noise
from gocopt.schedule.io import load_schedule
from gocopt.schedule.schedule import Schedule
from gocopt.search import SpaceContext
from gocopt.search.space import Candidate, build_predictor, fill_to_budget, group_paths, priority
from gocopt.search.spans import SPAN_SEEDS, max_gap_for, measure_spans

BUDGETS = (0.25, 0.35, 0.5, 0.75)
CALIBRATION_SAMPLES = 64  # gocopt.compile's default search set: the spans use its first SPAN_SEEDS


def candidates(steps: int, budget: float, schedules: Path) -> dict[str, Candidate]:
    """The committed schedule's choice (when it is a path family other than the plain path) and the
    plain path with fitted K = 3 (which is itself the committed choice in some cells)."""
    found: dict[str, Candidate] = {"path, fitted K=3": Candidate(family="path", alpha=0.0, predictor="fitted3")}
    file = schedules / f"reference_ddim{steps}_b{budget:.2f}.json"
    if file.is_file():
        committed = Candidate(**load_schedule(file).provenance["search"]["best_params"])
        if committed.family == "path" and committed not in found.values():
            found = {f"committed ({committed.predictor})": committed} | found
    return found


@torch.no_grad()
def table_rows(steps: int, budgets: tuple[float, ...], samples: int, schedules: Path) -> list[dict]:
    model = reference()
    sampler = DDIMSampler(steps=steps, guidance_scale=REFERENCE_GUIDANCE_SCALE, clip_denoised=True)
    spec = dit_spec(model)
    compiled = cache_model(model, None, sampler_call(model, sampler, spec))
    calib = SampleSet.make(CALIBRATION_SAMPLES, SEARCH_SEED_BASE, spec.num_classes)
    noise = initial_noise(calib.seeds, spec.latent_shape)
    calibration = calibrate(compiled, sampler, calib.labels, noise, num_classes=spec.num_classes, seeds=calib.seeds)
    flops = np.asarray(compiled.site_flops, dtype=np.float64)
    is_mlp = compiled.sites["kind"].isin(["mlp"]).to_numpy()
    span_inputs = (calib.labels[:SPAN_SEEDS], noise[:SPAN_SEEDS], calibration.samples[:SPAN_SEEDS])
    options = {"max_gap": max_gap_for(BUDGETS, steps), "gram": calibration.gram, "num_classes": spec.num_classes}
    started = time.perf_counter()
    whole = measure_spans(compiled, sampler, *span_inputs, **options, progress=True)
    whole_seconds, started = time.perf_counter() - started, time.perf_counter()
    per_group = tuple(measure_spans(compiled, sampler, *span_inputs, **options, sites=np.flatnonzero(group).tolist(),
                                    progress=True) for group in (~is_mlp, is_mlp))
    group_seconds = time.perf_counter() - started
    ctx = SpaceContext(steps, flops, compiled.sites["block"].to_numpy(), is_mlp,
                       calibration.matrix("rel_change").numpy(), tuple(detect_inflections(calibration.stats, flops)),
                       calibration.gram, whole)
    bench = SampleSet.make(samples, DESIGN_SEED_BASE, spec.num_classes)
    bench_noise = initial_noise(bench.seeds, spec.latent_shape)
    uncached = sampler.sample(model, bench.labels, bench_noise, num_classes=spec.num_classes)

    def per_sample_psnr(candidate: Candidate, budget: float, tables) -> tuple[torch.Tensor, float]:
        start = group_paths(candidate, ctx, budget, tables)
        mask = fill_to_budget(start, priority(candidate, ctx), flops, budget, candidate.max_run)
        schedule = Schedule(mask, tuple(compiled.sites["site"]), tuple(sampler.timesteps),
                            build_predictor(candidate, ctx, mask), "ablation", guidance=sampler.guidance)
        return _score(compiled, schedule, sampler, bench.labels, bench_noise, uncached, spec.num_classes)

    rows = []
    for budget in tqdm(budgets, desc=f"DDIM-{steps} budgets"):
        for name, candidate in candidates(steps, budget, schedules).items():
            shared, cost = per_sample_psnr(candidate, budget, None)
            grouped, group_cost = per_sample_psnr(candidate, budget, per_group)
            difference = grouped - shared
            rows.append({"steps": steps, "budget": budget, "candidate": name, "cost": cost, "group_cost": group_cost,
                         "shared_psnr": float(shared.mean()), "group_psnr": float(grouped.mean()),
                         "difference": float(difference.mean()),
                         "difference_stderr": float(difference.std() / len(difference) ** 0.5),
                         "shared_span_seconds": whole_seconds, "group_span_seconds": group_seconds})
    return rows


def _score(compiled: CachedModel, schedule: Schedule, sampler: DDIMSampler, labels: torch.Tensor,
           noise: torch.Tensor, uncached: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, float]:
    compiled.set_schedule(schedule, log=False)
    compiled.reset()
    samples = sampler.sample(compiled, labels, noise, num_classes=num_classes)
    return psnr(samples, uncached), schedule.cost(compiled.site_flops)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[20])
    parser.add_argument("--budgets", type=float, nargs="+", default=list(BUDGETS))
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--threads", type=int, default=bench_threads())
    parser.add_argument("--schedules", default="schedules")
    parser.add_argument("--out", default="docs/benchmarks/span_tables")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [row for steps in args.steps
            for row in table_rows(steps, tuple(args.budgets), args.samples, Path(args.schedules))]
    write_json(f"{args.out}.json", {"rows": rows, "samples": args.samples, "seed_base": DESIGN_SEED_BASE,
                                    "environment": environment()})
    spans = "; ".join(f"DDIM-{s}: shared {r['shared_span_seconds']:.0f} s, per group {r['group_span_seconds']:.0f} s"
                      for s, r in {row["steps"]: row for row in rows}.items())
    text = (f"# Path edge weights: whole-model spans (shared) vs per-group spans\n\nReference model, {args.samples} "
            f"benchmark seeds, PSNR vs uncached in dB; difference = per-group − shared, paired. Measuring the "
            f"spans: {spans}.\n\n"
            + markdown_table(rows, [("steps", "DDIM", ""), ("budget", "budget", ".2f"), ("candidate", "candidate", ""),
                                    ("cost", "cost", ".3f"), ("shared_psnr", "shared spans", ".2f"),
                                    ("group_psnr", "per-group spans", ".2f"), ("difference", "difference", "+.2f"),
                                    ("difference_stderr", "± s.e.", ".2f")]))
    atomic_write_text(f"{args.out}.md", text)
    print(text)


if __name__ == "__main__":
    main()
