"""Head-to-head: gocopt against the caches users would pick instead, at equal cost, in one run.

    python -m benchmarks.head_to_head                               # the committed tables, reference model
    python -m benchmarks.head_to_head --model latent --only quality # the latent model nobody tuned on
    python -m benchmarks.head_to_head --quick    # CI-sized: one step count, one budget, DiT-S/2 speed

Writes ``<out>.md`` (the tables), ``<out>.json`` (every number, with the environment) and
``<out>.png`` (quality vs realised cost); ``--out`` defaults to docs/benchmarks/head_to_head (the
reference model) or docs/benchmarks/head_to_head_latent.

Quality table: a shipped model (``--model reference``: 8×8 pixels, x0 clipped; ``--model latent``:
4×8×8 latents, no clipping, scored on the decoded 32×32 pixels), DDIM-20 and DDIM-50 with CFG 4,
budgets 0.25 / 0.35 / 0.5 / 0.75, seeds that neither gocopt's search, its held-out check nor any
design experiment ever used; gocopt's rows load
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

from benchmarks.quality_table import BENCHMARK_SEED_BASE, LABELS, QualitySettings, TrainedModel, quality_rows, verdicts
from benchmarks.speed_table import speed_ok, speed_rows
from gocopt.atomic import atomic_write_text
from gocopt.plots import save_quality_vs_cost
from gocopt.report import environment, markdown_table, write_json

MODEL_TITLES = {"reference": "the reference model (8×8 pixels, x0 clipped; every design choice was tuned on it)",
                "latent": "the latent model (4×8×8 latents, no x0 clipping, scored on the decoded 32×32 pixels; "
                          "nobody tuned on it)"}
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
    parser.add_argument("--model", choices=("reference", "latent"), default="reference",
                        help="the shipped model whose quality table to measure")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="output prefix (default docs/benchmarks/head_to_head[_latent])")
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
        rows, uncached = quality_rows(TrainedModel.named(args.model), quality)
        results.update(quality_rows=rows, uncached={str(k): v for k, v in uncached.items()}, verdicts=verdicts(rows),
                       quality_settings={"model": args.model, "seed_base": BENCHMARK_SEED_BASE,
                                         "steps": quality.steps, "budgets": quality.budgets, "samples": quality.samples,
                                         "timing_samples": quality.timing_samples,
                                         "gocopt_schedules": str(quality.schedules_dir or "compiled in the run")})
    if args.only != "quality":
        rows = speed_rows(speed["models"], speed["batches"], (0.25, 0.5, 0.75), rounds=speed["rounds"])
        results.update(speed_rows=rows, speed_ok_xl=speed_ok(rows), speed_settings=dict(speed, steps=20))
    default_out = "docs/benchmarks/head_to_head" + ("" if args.model == "reference" else f"_{args.model}")
    write_outputs(results, Path(args.out or default_out))


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
    model = settings.get("model", "reference")
    lines = [f"## Quality on {MODEL_TITLES[model]} ({settings['samples']} samples, CFG 4)\n",
             "Paired metrics are against the uncached model on the same seeds (PSNR, SSIM: higher is better; "
             "FD = Fréchet distance of classifier features to the uncached samples: lower is better) and rank the "
             "rows; FID (vs real digits), IS and class accuracy are a divergence alarm, with FID's bootstrap noise "
             "given per table. Speedup: wall-clock at batch size 1 vs the uncached model, "
             f"{settings['timing_samples']} "
             f"seeds, each run right after the uncached one. gocopt's schedules: {settings['gocopt_schedules']}. "
             f"Evaluation seeds: `SampleSet.make(n, {settings.get('seed_base', 30_000)})`, used by no compile and "
             "no design experiment. Margins are paired per sample, ± their standard error; the goal (issue #21) is "
             "the best PSNR and FD of every row by ≥ 1 dB.\n",
             f"![quality vs cost]({out.name}.png)\n"]
    lines += ["### Summary: gocopt against the best other row and the best composite, at equal cost\n",
              markdown_table(summary_rows(results), SUMMARY_COLUMNS)]
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
            margin = (f"; {v['margin_db']:+.2f}{_stderr(v.get('margin_stderr'))} dB over the closest row at equal "
                      f"cost ({LABELS[v['best_peer']]}, against {v.get('against', {}).get(v['best_peer'], 'gocopt')})"
                      if v.get("best_peer") else "")
            if v.get("composite_margin_db") is not None:
                margin += (f"; {v['composite_margin_db']:+.2f}{_stderr(v.get('composite_margin_stderr'))} dB over "
                           "the best composite")
            if "meets_goal" in v:
                margin += "; goal met" if v["meets_goal"] else "; goal **not** met"
            over = f"; **over budget**: {', '.join(v['over_budget'])}" if v.get("over_budget") else ""
            lines.append(f"- budget {v['budget']:.2f}: {verdict}{cheaper}{margin}{over}.")
        lines.append("")
    return "\n".join(lines)


SUMMARY_COLUMNS = [("steps", "DDIM", ""), ("budget", "budget", ".2f"), ("gocopt", "gocopt PSNR / FD", ""),
                   ("gocopt_cost", "its cost", ".3f"), ("best", "best other row (PSNR / FD)", ""),
                   ("margin", "margin (dB)", ""), ("composite", "best composite (PSNR / FD)", ""),
                   ("composite_margin", "margin over it (dB)", ""), ("goal", "≥ 1 dB and lower FD", "")]


def summary_rows(results: dict) -> list[dict]:
    """One line per cell: gocopt's row (the one each margin is taken against), the closest other row,
    the best composite, and the paired margins with their standard errors."""
    out = []
    for v in results["verdicts"]:
        group = {r["method"]: r for r in results["quality_rows"]
                 if r["steps"] == v["steps"] and r["budget"] == v["budget"]}
        best = group.get(v["best_peer"]) if v.get("best_peer") else None
        ours = group[v["against"][v["best_peer"]]] if best else group["gocopt"]
        composite = group.get("composite")

        def cell(r: dict) -> str:
            return f"{r['psnr_vs_uncached']:.2f} / {r['fd_vs_uncached']:.4f}"

        out.append({"steps": v["steps"], "budget": v["budget"], "gocopt": cell(ours), "gocopt_cost": ours["cost"],
                    "best": f"{LABELS[best['method']].split(' (')[0]}: {cell(best)}" if best else None,
                    "margin": f"{v['margin_db']:+.2f}{_stderr(v.get('margin_stderr'))}" if best else None,
                    "composite": f"{composite['detail']}: {cell(composite)}" if composite else None,
                    "composite_margin": (f"{v['composite_margin_db']:+.2f}{_stderr(v.get('composite_margin_stderr'))}"
                                         if composite else None),
                    "goal": "yes" if v.get("meets_goal") else "**no**"})
    return out


def _stderr(value: float | None) -> str:
    return "" if value is None else f" ± {value:.2f}"


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
