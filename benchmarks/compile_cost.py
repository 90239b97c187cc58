"""What a compile costs and what it buys: gocopt 0.1's settings next to the new defaults.

    python -m benchmarks.compile_cost                 # reference model, DDIM-20 and DDIM-50, every budget

For each step count, in one run, one compile after another (nothing else running): one compile of
all four budgets with gocopt 0.1's settings (``Effort.full()``: 40 trials × 64 samples per budget,
spans end to end on 8 seeds, 256 held-out samples with both baselines), one with the new defaults
(cap 250 for four budgets), one new-default compile per budget alone (cap 100), and (at
``--ablate-steps``) the new defaults with one lever at a time put back (``LEVERS``). Each compile's
model work is what its meter counted (uncached-sample equivalents, by phase), its seconds the
wall-clock of the whole compile. Every schedule is then scored on the same 500 evaluation seeds
(``DESIGN_SEED_BASE``, the design experiments' seeds, never seen by any compile), so the PSNR
difference to the 0.1 settings is paired, with its standard error; the best peer of the committed
head-to-head (its own seeds since #21) is shown for reference. Writes ``docs/benchmarks/compile_cost.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

import gocopt
from benchmarks.cells import read_cells
from benchmarks.quality_table import DESIGN_SEED_BASE, GOCOPT_ROWS
from gocopt.atomic import atomic_write_text
from gocopt.evaluate import SampleSet
from gocopt.metrics.fidelity import psnr
from gocopt.models import reference
from gocopt.models.convention import dit_spec
from gocopt.models.reference import REFERENCE_GUIDANCE_SCALE
from gocopt.report import environment, markdown_table, write_json
from gocopt.sampling import DDIMSampler, initial_noise
from gocopt.schedule.io import save_schedule
from gocopt.search.effort import Effort

BUDGETS = (0.25, 0.35, 0.5, 0.75)
QUALITY_BOUND_DB = 0.3  # issue #20: held-out PSNR within 0.3 dB of the 0.1 settings in every cell


def work_bound(steps: int, budgets: str) -> float:
    """Issue #20's bound on a default compile: 100 uncached-sample equivalents for one budget at
    DDIM-20, 150 at DDIM-50, 250 for all four budgets in one compile."""
    return 250.0 if budgets == "all four" else (100.0 if steps <= 20 else 150.0)
# Each lever of the new defaults put back to its 0.1 setting, one at a time (four budgets, no cap):
# what it saves is the difference in model work, what it costs the difference in PSNR.
LEVERS = {
    "defaults + spans end to end on 8 seeds": Effort(span_seeds=8, span_method="end-to-end", trials=4),
    "defaults + 64 search samples": Effort(search_samples=64, trials=4),
    "defaults, no surrogate (40 sampled TPE trials)": Effort(surrogate_trials=0, trials=40),
}


def best_peers() -> dict[tuple[int, float], tuple[str, float]]:
    """The best non-gocopt row per (steps, budget) of the reference model's head-to-head cells."""
    best: dict[tuple[int, float], tuple[str, float]] = {}
    rows = [row for cell in read_cells() if cell["model"] == "reference" for row in cell["rows"]]
    for row in rows:
        if row["method"] in ("uncached", *GOCOPT_ROWS) or row["psnr_vs_uncached"] is None:
            continue
        key = (row["steps"], row["budget"])
        if row["psnr_vs_uncached"] > best.get(key, ("", -1.0))[1]:
            best[key] = (row["label"], row["psnr_vs_uncached"])
    return best


def compile_once(model, sampler, budgets: tuple[float, ...], effort: Effort) -> tuple[list, dict, float]:
    started = time.perf_counter()
    results = gocopt.compile(model, list(budgets), sampler=sampler, effort=effort, progress=False)
    seconds = time.perf_counter() - started
    work = results[0].schedule.provenance["work"]
    return [r.schedule for r in results], work, seconds


@torch.no_grad()
def run(steps_list: tuple[int, ...], samples: int, ablate: tuple[int, ...]) -> dict:
    torch.manual_seed(0)
    model = reference()
    spec = dit_spec(model)
    evaluation = SampleSet.make(samples, DESIGN_SEED_BASE, spec.num_classes)
    noise = initial_noise(evaluation.seeds, spec.latent_shape)
    peers = best_peers()
    compiles, cells = [], []
    for steps in steps_list:
        sampler = DDIMSampler(steps=steps, guidance_scale=REFERENCE_GUIDANCE_SCALE, clip_denoised=True)
        uncached = sampler.sample(model, evaluation.labels, noise, num_classes=spec.num_classes)
        runs = {"0.1 settings": compile_once(model, sampler, BUDGETS, Effort.full()),
                "new defaults": compile_once(model, sampler, BUDGETS, Effort())}
        alone = [compile_once(model, sampler, (b,), Effort()) for b in BUDGETS]
        if steps in ablate:
            runs.update({name: compile_once(model, sampler, BUDGETS, effort) for name, effort in LEVERS.items()})
        for name, (_, work, seconds) in runs.items():
            compiles.append(_compile_row(steps, name, "all four", work, seconds))
        for b, (_, work, seconds) in zip(BUDGETS, alone):
            compiles.append(_compile_row(steps, "new defaults", f"{b:g} alone", work, seconds))
        for i, b in enumerate(BUDGETS):
            schedules = {name: r[0][i] for name, r in runs.items()} | {"new defaults, alone": alone[i][0][0]}
            values = {name: _psnr(model, s, sampler, evaluation, noise, uncached) for name, s in schedules.items()}
            base = values["0.1 settings"]
            peer = peers.get((steps, b))
            for name, schedule in schedules.items():
                diff = values[name] - base
                cells.append({
                    "steps": steps, "budget": b, "settings": name,
                    "cost": schedule.provenance["quality"]["heldout"]["cost"],
                    "psnr": float(values[name].mean()), "psnr_stderr": float(values[name].std() / len(diff) ** 0.5),
                    "diff_vs_0.1": float(diff.mean()), "diff_stderr": float(diff.std() / len(diff) ** 0.5),
                    "compile_heldout_psnr": schedule.provenance["quality"]["heldout"]["psnr_vs_uncached"],
                    "compile_heldout_samples": schedule.provenance["quality"]["heldout"]["samples"],
                    "best_params": schedule.provenance["search"]["best_params"],
                    "best_peer": None if peer is None else peer[0],
                    "best_peer_psnr": None if peer is None else peer[1],
                    "within_0.3dB": bool(diff.mean() >= -QUALITY_BOUND_DB),
                    "above_best_peer": None if peer is None else bool(values[name].mean() >= peer[1]),
                })
            print(f"DDIM-{steps} b={b}: " + ", ".join(f"{n} {float(v.mean()):.2f}" for n, v in values.items()),
                  flush=True)
    return {"compiles": compiles, "cells": cells, "evaluation_samples": samples,
            "evaluation_seeds": f"SampleSet.make({samples}, DESIGN_SEED_BASE={DESIGN_SEED_BASE})"}


def _compile_row(steps: int, settings: str, budgets: str, work: dict, seconds: float) -> dict:
    phases = "; ".join(f"{name} {w['sample_equivalents']:.1f}" for name, w in work["phases"].items()
                       if w["model_calls"])
    return {"steps": steps, "settings": settings, "budgets": budgets, "max_samples": work.get("max_samples"),
            "sample_equivalents": work["total"]["sample_equivalents"], "phases": phases,
            "planned": work.get("planned"), "seconds": seconds,
            "within_bound": None if settings != "new defaults" else
            bool(work["total"]["sample_equivalents"] <= work_bound(steps, budgets) + 1e-9)}


def _psnr(model, schedule, sampler, evaluation, noise, uncached) -> torch.Tensor:
    """Per-sample PSNR of ``schedule``, loaded from its file as a user deploys it."""
    with tempfile.TemporaryDirectory() as folder:
        path = save_schedule(schedule, Path(folder) / "schedule.json")
        compiled = gocopt.load(model, path, sampler=sampler)
    return psnr(sampler.sample(compiled, evaluation.labels, noise, num_classes=evaluation_classes(model)), uncached)


def evaluation_classes(model) -> int:
    return dit_spec(model).num_classes


def markdown(result: dict) -> str:
    compiles = markdown_table(result["compiles"], [
        ("steps", "DDIM", ""), ("settings", "settings", ""), ("budgets", "budgets", ""),
        ("max_samples", "cap", ""), ("sample_equivalents", "uncached-sample equivalents", ".1f"),
        ("seconds", "seconds (CPU)", ".0f"), ("within_bound", "within #20's bound", ""), ("phases", "by phase", "")])
    cells = markdown_table(result["cells"], [
        ("steps", "DDIM", ""), ("budget", "budget", ""), ("settings", "settings", ""), ("cost", "cost", ".3f"),
        ("psnr", "PSNR (dB)", ".2f"), ("psnr_stderr", "± s.e.", ".2f"), ("diff_vs_0.1", "vs 0.1 settings", "+.2f"),
        ("diff_stderr", "± s.e.", ".2f"), ("compile_heldout_psnr", "compile's own held-out", ".2f"),
        ("compile_heldout_samples", "on", ""), ("best_peer_psnr", "best peer (head-to-head)", ".2f"),
        ("within_0.3dB", "within 0.3 dB", ""), ("above_best_peer", "≥ best peer", "")])
    return (
        "# Compile cost: gocopt 0.1's settings next to the new defaults\n\n"
        "Reference model, one run (`python -m benchmarks.compile_cost`); model work in uncached-sample "
        "equivalents (image-steps ÷ steps, counted by the compile's own meter, every cached call counted in full); "
        f"quality on {result['evaluation_samples']} evaluation seeds no compile saw (the design seeds, the "
        "head-to-head's before #21), PSNR vs "
        "uncached; the difference is paired.\n\n"
        f"{verdict(result)}\n\n## What each compile spent\n\n"
        f"{compiles}\n\n## What it bought\n\n{cells}\n\n{environment_line(result)}\n")


def verdict(result: dict) -> str:
    """Issue #20's bounds, counted from the rows: model work per default compile, and quality of
    the four-budget default compile per cell (within 0.3 dB of the 0.1 settings, ≥ the best peer)."""
    defaults = [r for r in result["compiles"] if r["settings"] == "new defaults"]
    cells = [c for c in result["cells"] if c["settings"] == "new defaults"]
    within = [c for c in cells if c["within_0.3dB"]]
    above = [c for c in cells if c["above_best_peer"]]
    worst = min(cells, key=lambda c: c["diff_vs_0.1"])
    return (f"**Bounds (issue #20).** Model work: {sum(r['within_bound'] for r in defaults)} of {len(defaults)} "
            f"default compiles within their bound (≤ 100 for one budget at DDIM-20, ≤ 150 at DDIM-50, ≤ 250 for "
            f"four). Quality of the four-budget default compile: {len(within)} of {len(cells)} cells within "
            f"0.3 dB of the 0.1 settings (worst: DDIM-{worst['steps']}/{worst['budget']:g}, "
            f"{worst['diff_vs_0.1']:+.2f} ± {worst['diff_stderr']:.2f} dB); {len(above)} of {len(cells)} at or above "
            "the best peer of the committed head-to-head.")


def environment_line(result: dict) -> str:
    return "Environment: " + ", ".join(f"{k} {v}" for k, v in result.get("environment", {}).items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--ablate-steps", type=int, nargs="*", default=[20],
                        help="step counts at which each lever is also put back alone")
    parser.add_argument("--out", default="docs/benchmarks/compile_cost")
    parser.add_argument("--render", action="store_true", help="only rewrite OUT.md from OUT.json (no measuring)")
    args = parser.parse_args(argv)
    if args.render:
        atomic_write_text(f"{args.out}.md", markdown(json.loads(Path(f"{args.out}.json").read_text())))
        return 0
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    result = {**run(tuple(args.steps), args.samples, tuple(args.ablate_steps)), "environment": environment(),
              "command": f"python -m benchmarks.compile_cost --steps {' '.join(map(str, args.steps))} "
                         f"--samples {args.samples} --ablate-steps {' '.join(map(str, args.ablate_steps))}"}
    write_json(f"{args.out}.json", result)
    atomic_write_text(f"{args.out}.md", markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
