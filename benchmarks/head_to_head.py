"""Head-to-head: gocopt against the caches users would pick instead, at equal cost, in one run.

    python -m benchmarks.head_to_head            # the committed tables (~50 min on 2 CPU cores)
    python -m benchmarks.head_to_head --quick    # CI-sized: one step count, one budget, DiT-S/2 speed

Writes ``<out>.md`` (the tables), ``<out>.json`` (every number, with the environment) and
``<out>.png`` (quality vs realised cost); ``--out`` defaults to docs/benchmarks/head_to_head.

Quality table: the shipped reference model, DDIM-20 and DDIM-50 with CFG 4, budgets 0.25 / 0.35 / 0.5 /
0.75, 1000 seeds that neither gocopt's search nor its held-out check ever used; gocopt's rows load
the committed schedules in schedules/ exactly as a deployment would (``--compile`` searches them
in the run instead). Speed table: DiT-S/2, B/2 and XL/2 shapes with random weights, 1 and 2
images with batched CFG, 20 steps, a gocopt-shaped schedule (FORA mask + GOC) at each budget.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.quality_table import LABELS, QualitySettings, quality_rows, verdicts
from benchmarks.speed_table import speed_ok, speed_rows
from gocopt.atomic import atomic_write_text
from gocopt.models import reference
from gocopt.plots import save_quality_vs_cost
from gocopt.report import environment, markdown_table, write_json

FULL_SPEED = {"models": ("DiT-S/2", "DiT-B/2", "DiT-XL/2"), "batches": (1, 2), "rounds": 2}
QUICK_SPEED = {"models": ("DiT-S/2",), "batches": (1,), "rounds": 1}
QUICK_QUALITY = QualitySettings(steps=(10,), budgets=(0.5,), samples=48, timing_samples=2, calibration_samples=16,
                                batch_size=48, schedules_dir=None, trials=3, surrogate_trials=100,
                                threshold_iterations=6)

QUALITY_COLUMNS = [("label", "method", ""), ("budget", "budget", ".2f"), ("cost", "realised cost", ".3f"),
                   ("psnr_vs_uncached", "PSNR (dB)", ".2f"), ("psnr_vs_uncached_stderr", "± s.e.", ".2f"),
                   ("ssim_vs_uncached", "SSIM", ".4f"), ("fd_vs_uncached", "FD vs uncached", ".4f"),
                   ("fid", "FID", ".2f"), ("is", "IS", ".2f"), ("class_accuracy", "accuracy", ".3f"),
                   ("speedup", "speedup (batch 1)", ".2f")]
SPEED_COLUMNS = [("model", "model", ""), ("batch", "images", ""), ("uncached_seconds", "uncached s", ".2f"),
                 ("budget", "budget", ".2f"), ("cost", "cost", ".3f"), ("seconds", "seconds", ".2f"),
                 ("speedup", "speedup", ".2f"), ("ideal", "ideal 1/budget", ".2f"),
                 ("ratio_to_ideal", "speedup / ideal", ".3f"), ("cache_mib", "cache peak MiB", ".1f")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI-sized run (about a minute)")
    parser.add_argument("--only", choices=("quality", "speed"), help="run one of the two tables")
    parser.add_argument("--compile", action="store_true", help="search gocopt's schedules in the run")
    parser.add_argument("--samples", type=int, help="quality samples (default 1000; 48 with --quick)")
    parser.add_argument("--timing-samples", type=int, help="seeds timed at batch size 1 per row (default 10)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="docs/benchmarks/head_to_head")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)

    quality = QUICK_QUALITY if args.quick else QualitySettings()
    if args.compile:
        quality = replace(quality, schedules_dir=None)
    if args.samples:
        quality = replace(quality, samples=args.samples, batch_size=min(quality.batch_size, args.samples))
    if args.timing_samples:
        quality = replace(quality, timing_samples=args.timing_samples)
    speed = QUICK_SPEED if args.quick else FULL_SPEED

    given = argv if argv is not None else sys.argv[1:]
    results: dict = {"environment": environment(), "quick": args.quick, "only": args.only,
                     "command": " ".join(["python -m benchmarks.head_to_head", *given])}
    if args.only != "speed":
        rows, uncached = quality_rows(reference(), quality)
        results.update(quality_rows=rows, uncached={str(k): v for k, v in uncached.items()}, verdicts=verdicts(rows),
                       quality_settings={"steps": quality.steps, "budgets": quality.budgets, "samples": quality.samples,
                                         "timing_samples": quality.timing_samples,
                                         "gocopt_schedules": str(quality.schedules_dir or "compiled in the run")})
    if args.only != "quality":
        rows = speed_rows(speed["models"], speed["batches"], (0.25, 0.5, 0.75), rounds=speed["rounds"])
        results.update(speed_rows=rows, speed_ok_xl=speed_ok(rows), speed_settings=dict(speed, steps=20))
    write_outputs(results, Path(args.out))


def write_outputs(results: dict, out: Path) -> None:
    """``out``.json (all numbers), ``out``.md (tables), ``out``.png (quality vs cost)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), results)
    title = ("Speed of gocopt's schedules on DiT shapes" if results.get("only") == "speed"
             else "Head-to-head: gocopt vs the caches users pick instead, at equal cost")
    parts = [f"# {title}\n",
             f"Measured in one run by `{results['command']}` "
             f"(torch {results['environment']['torch']}, {results['environment']['threads']} CPU threads); "
             f"every number is in `{out.name}.json`.\n"]
    if "quality_rows" in results:
        parts.append(quality_markdown(results, out))
        save_quality_vs_cost(results["quality_rows"], out.with_suffix(".png"))
    if "speed_rows" in results:
        parts.append(speed_markdown(results))
    text = "\n".join(parts)
    atomic_write_text(out.with_suffix(".md"), text)
    print(text)


def quality_markdown(results: dict, out: Path) -> str:
    settings = results["quality_settings"]
    lines = [f"## Quality on the reference model ({settings['samples']} samples, CFG 4)\n",
             "Paired metrics are against the uncached model on the same seeds (PSNR, SSIM: higher is better; "
             "FD = Fréchet distance of classifier features to the uncached samples: lower is better) and rank the "
             "rows; FID (vs real digits), IS and class accuracy are a divergence alarm, with FID's bootstrap noise "
             "given per table. Speedup: wall-clock at batch size 1 vs the uncached model, "
             f"{settings['timing_samples']} "
             f"seeds, each run right after the uncached one. gocopt's schedules: {settings['gocopt_schedules']}.\n",
             f"![quality vs cost]({out.name}.png)\n"]
    for steps in settings["steps"]:
        rows = [r for r in results["quality_rows"] if r["steps"] == steps]
        rows.sort(key=lambda r: (r["budget"] or 0, list(LABELS).index(r["method"])))
        facts = results["uncached"][str(steps)]
        lines.append(f"### DDIM-{steps}\n\nUncached FID {facts['fid']:.2f} ± {facts['fid_noise']:.2f} "
                     "(bootstrap s.d.); "
                     f"differences in FID smaller than that are noise.\n")
        lines.append(markdown_table(rows, QUALITY_COLUMNS))
        for v in (v for v in results["verdicts"] if v["steps"] == steps):
            if v["gocopt_wins"]:
                verdict = "gocopt has the best PSNR and FD of every row"
            else:
                verdict = "gocopt does **not** win on both PSNR and FD against: " + ", ".join(
                    LABELS[m] for m in v["loses_to"])
            cheaper = f" (rows cheaper than gocopt's: {', '.join(LABELS[m] for m in v['cheaper_rows'])})" \
                if v["cheaper_rows"] else ""
            margin = (f"; {v['margin_db']:+.2f} dB over the closest peer at equal cost ({LABELS[v['best_peer']]}"
                      f", against {v.get('against', {}).get(v['best_peer'], 'gocopt')})" if v.get("best_peer") else "")
            over = f"; **over budget**: {', '.join(v['over_budget'])}" if v.get("over_budget") else ""
            lines.append(f"- budget {v['budget']:.2f}: {verdict}{cheaper}{margin}{over}.")
        lines.append("")
    return "\n".join(lines)


def speed_markdown(results: dict) -> str:
    s = results["speed_settings"]
    ok = results["speed_ok_xl"]
    verdict = ("DiT-XL/2 was not measured against" if ok is None else
               "DiT-XL/2 meets" if ok else "DiT-XL/2 does **not** meet")
    return (f"## Speed on DiT shapes (random weights, {s['steps']} DDIM steps, batched CFG, best of {s['rounds']} "
            "interleaved rounds)\n\nSchedule: FORA's mask at the budget with GOC correction at every step from 2 "
            "(the shape gocopt's search returns), so the times include the correction. Cache peak: the most the "
            f"runtime's queues held at once. {verdict} the bar of speedup ≥ 0.9 × 1/budget at every "
            f"budget.\n\n" + markdown_table(results["speed_rows"], SPEED_COLUMNS))


if __name__ == "__main__":
    main()
