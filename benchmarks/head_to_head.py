"""Head-to-head: gocopt against the caches users would pick instead, at equal cost, in cells.

    python -m benchmarks.head_to_head --model reference --steps 20 --budget 0.25   # one cell
    python -m benchmarks.head_to_head --model reference                           # its missing cells, in turn
    python -m benchmarks.head_to_head                                             # every missing cell
    python -m benchmarks.head_to_head --report       # docs/benchmarks/head_to_head.{md,json,png} from the cells
    python -m benchmarks.head_to_head --only speed   # the speed table on DiT shapes
    python -m benchmarks.head_to_head --quick        # CI-sized: one step count, one budget, DiT-S/2 speed

A cell (:mod:`benchmarks.cells`) is every row of one model × DDIM step count × budget, written
atomically to ``docs/benchmarks/head_to_head/<model>/ddim<S>_b<B>.json`` the moment it is done; a
cell already there is skipped unless ``--force``, so a run that is interrupted loses at most the cell
it was in, and the table is built a few cells at a time. ``--report`` rebuilds the tables and plots
from the cells present and lists the missing ones.

The models: ``reference`` (8×8 pixels, x0 clipped) and ``latent`` (4×8×8 latents, no clipping, scored
on the decoded 32×32 pixels), DDIM-20 and DDIM-50 with CFG 4, budgets 0.25 / 0.35 / 0.5 / 0.75, on
evaluation seeds no compile or design experiment has used (``benchmarks.cells.CELL_SEED_BASE``).

Each cell has two sections of equal set-up work (:mod:`benchmarks.allowance`): *default*, gocopt's
default compile made in the cell from scratch against every peer allowed the same model work;
*generous*, the committed schedule in schedules/ (loaded as a deployment would; the reference
model's are ``--effort full`` compiles, the latent model's the defaults) against every peer allowed
that compile's work. ``--compile`` leaves the generous section out.

Speed table: DiT-S/2, B/2 and XL/2 shapes with
random weights, 1 and 2 images with batched CFG, 20 steps, a gocopt-shaped schedule (FORA mask + GOC)
at each budget.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.cells import (
    BUDGETS,
    CELLS_DIR,
    MODELS,
    STEPS,
    UNCACHED_CACHE,
    all_cells,
    read_cells,
    run_cells,
    section_rows,
)
from benchmarks.quality_table import (
    BENCHMARK_SEED_BASE,
    LABELS,
    QualitySettings,
    TrainedModel,
    compile_effort,
    quality_rows,
    verdicts,
)
from benchmarks.speed_table import speed_ok, speed_rows
from benchmarks.threads import bench_threads
from gocopt.atomic import atomic_write_text
from gocopt.plots import save_quality_vs_cost
from gocopt.report import environment, markdown_table, write_json

MODEL_TITLES = {"reference": "the reference model (8×8 pixels, x0 clipped; every design choice was tuned on it)",
                "latent": "the latent model (4×8×8 latents, no x0 clipping, scored on the decoded 32×32 pixels; "
                          "nobody tuned on it)"}
FULL_SPEED = {"models": ("DiT-S/2", "DiT-B/2", "DiT-XL/2"), "batches": (1, 2), "rounds": 2}
QUICK_SPEED = {"models": ("DiT-S/2",), "batches": (1,), "rounds": 1}
QUICK_QUALITY = QualitySettings(steps=(10,), budgets=(0.5,), samples=48, timing_samples=2, setup_work=16,
                                batch_size=48, schedules_dir=None, trials=3, surrogate_trials=100)

QUALITY_COLUMNS = [("label", "method", ""), ("budget", "budget", ".2f"), ("section", "section", ""),
                   ("cost", "realised cost", ".3f"),
                   ("psnr_vs_uncached", "PSNR (dB)", ".2f"), ("psnr_vs_uncached_stderr", "± s.e.", ".2f"),
                   ("ssim_vs_uncached", "SSIM", ".4f"), ("fd_vs_uncached", "FD vs uncached", ".4f"),
                   ("fid", "FID", ".2f"), ("is", "IS", ".2f"), ("class_accuracy", "accuracy", ".3f"),
                   ("speedup", "speedup (batch 1)", ".2f"), ("allowance", "allowed set-up (samples)", ".0f"),
                   ("setup_work", "set-up work (samples)", ".0f")]
SECTION_ORDER = (None, "shared", "default", "generous")
SPEED_COLUMNS = [("model", "model", ""), ("batch", "images", ""), ("uncached_seconds", "uncached s", ".2f"),
                 ("budget", "budget", ".2f"), ("cost", "cost", ".3f"), ("seconds", "seconds", ".2f"),
                 ("speedup", "speedup", ".2f"), ("ideal", "ideal 1/budget", ".2f"),
                 ("ratio_to_ideal", "speedup / ideal", ".3f"), ("cache_mib", "cache peak MiB", ".1f")]


CELL_SAMPLES = {20: 500, 50: 300}  # evaluation seeds per cell by DDIM steps: a cell, both sections, in ~15 minutes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI-sized whole run in one file (about a minute)")
    parser.add_argument("--only", choices=("quality", "speed"), help="with --quick: run one of the two tables; "
                        "'speed': the speed table alone")
    parser.add_argument("--report", action="store_true", help="rebuild the tables from the cells present")
    parser.add_argument("--model", nargs="+", choices=MODELS, help="cells of these models only (default: both)")
    parser.add_argument("--steps", nargs="+", type=int, choices=STEPS, help="cells of these step counts only "
                        "(default: both)")
    parser.add_argument("--budget", nargs="+", type=float, choices=BUDGETS, help="cells of these budgets only "
                        "(default: all)")
    parser.add_argument("--force", action="store_true", help="compute the chosen cells even if already written")
    parser.add_argument("--compile", action="store_true", help="compile gocopt in the run, no committed schedules "
                        "(cells: the default section alone)")
    parser.add_argument("--samples", type=int, help="quality samples per cell (default: 500 at DDIM-20, 300 at "
                        "DDIM-50; 48 with --quick)")
    parser.add_argument("--timing-samples", type=int, help="seeds timed at batch size 1 per row (default 10)")
    parser.add_argument("--setup-ceiling", type=float, help="cap every section's set-up allowance at this many "
                        "samples (CI-sized cells; default: none)")
    parser.add_argument("--compile-work", type=float, help="max_samples of the default section's compile "
                        "(default: gocopt.compile's)")
    parser.add_argument("--threads", type=int, default=bench_threads())
    parser.add_argument("--cells", type=Path, default=CELLS_DIR, help="where the cell files live")
    parser.add_argument("--cache", type=Path, default=UNCACHED_CACHE, help="where a step count's uncached samples "
                        "are kept for its cells")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="output prefix of the report (and of --quick / --only speed)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    given = argv if argv is not None else sys.argv[1:]
    command = " ".join(["python -m benchmarks.head_to_head", *given])

    if args.report:
        write_report(args.cells, args.out)
        return
    if args.quick or args.only == "speed":
        run_whole(args, command)
        return
    settings = QualitySettings()
    if args.compile:
        settings = replace(settings, schedules_dir=None)
    if args.timing_samples:
        settings = replace(settings, timing_samples=args.timing_samples)
    if args.setup_ceiling:
        settings = replace(settings, setup_ceiling=args.setup_ceiling)
    if args.compile_work:
        settings = replace(settings, compile_max_samples=args.compile_work)
    for steps in args.steps or STEPS:  # each step count at its own sample count
        samples = args.samples or CELL_SAMPLES[steps]
        cells = all_cells(models=args.model or MODELS, steps=(steps,), budgets=args.budget or BUDGETS)
        run_cells(cells, replace(settings, samples=samples, batch_size=samples), root=args.cells, cache=args.cache,
                  force=args.force, command=command)


def run_whole(args: argparse.Namespace, command: str) -> None:
    """``--quick`` (both tables, CI-sized, in one file) or ``--only speed``."""
    quality = QUICK_QUALITY if args.quick else QualitySettings()
    if args.compile:
        quality = replace(quality, schedules_dir=None)
    if args.samples:
        quality = replace(quality, samples=args.samples, batch_size=min(quality.batch_size, args.samples))
    if args.timing_samples:
        quality = replace(quality, timing_samples=args.timing_samples)
    speed = QUICK_SPEED if args.quick else FULL_SPEED
    results: dict = {"environment": environment(), "quick": args.quick, "only": args.only, "command": command}
    if args.only != "speed":
        model = args.model[0] if args.model else "reference"
        rows, uncached = quality_rows(TrainedModel.named(model), quality)
        results.update(quality_rows=rows, uncached={str(k): v for k, v in uncached.items()}, verdicts=verdicts(rows),
                       quality_settings={"model": model, "seed_base": BENCHMARK_SEED_BASE,
                                         "steps": quality.steps, "budgets": quality.budgets, "samples": quality.samples,
                                         "timing_samples": quality.timing_samples,
                                         "gocopt_schedules": str(quality.schedules_dir or "compiled in the run")})
    if args.only != "quality":
        rows = speed_rows(speed["models"], speed["batches"], (0.25, 0.5, 0.75), rounds=speed["rounds"])
        results.update(speed_rows=rows, speed_ok_xl=speed_ok(rows), speed_settings=dict(speed, steps=20))
    out = args.out if args.only != "speed" or args.out != Path("docs/benchmarks/head_to_head") else Path(
        "docs/benchmarks/speed_table")
    write_outputs(results, out)


def write_report(root: Path, out: Path) -> dict:
    """``out``.{md,json} and one quality-vs-cost plot per model, from the cells under ``root``; the
    cells not yet computed are listed, not guessed."""
    documents = read_cells(root)
    present = {(d["model"], d["steps"], d["budget"]) for d in documents}
    missing = [cell for cell in all_cells() if (cell.model, cell.steps, cell.budget) not in present]
    parts = ["# Head-to-head: gocopt vs the caches users pick instead, at equal cost\n",
             f"Built by `python -m benchmarks.head_to_head --report` from {len(documents)} of {len(all_cells())} "
             f"cells (`{root}/<model>/ddim<S>_b<B>.json`), each measured in one run by the command it records; every "
             f"number is in `{out.name}.json`.\n"]
    if missing:
        parts.append("**Missing cells** (not yet measured): " + ", ".join(str(c) for c in missing) + ". Compute one "
                     "with `python -m benchmarks.head_to_head --model M --steps S --budget B`.\n")
    by_model: dict[str, list[dict]] = {}
    for document in documents:
        by_model.setdefault(document["model"], []).append(document)
    for model, cells in by_model.items():
        first = cells[0]["settings"]
        results = {"quality_rows": _one_uncached_row_per_steps([r for d in cells for r in d["rows"]]),
                   "verdicts": [v for d in cells for v in d["verdicts"].values()],
                   "sections": {f"{d['steps']}/{d['budget']}": d["sections"] for d in cells},
                   "quality_settings": {"model": model, "seed_base": first["seed_base"],
                                        "steps": sorted({d["steps"] for d in cells}),
                                        "budgets": sorted({d["budget"] for d in cells}),
                                        "samples": first["samples"], "timing_samples": first["timing_samples"],
                                        "gocopt_schedules": f"default section: {first['gocopt_default']}; "
                                                            f"generous section: the committed schedule files in "
                                                            f"{first['gocopt_generous']}/, loaded as deployed "
                                                            "(each cell states its compile's work)"}}
        results["uncached"] = {str(r["steps"]): r for r in results["quality_rows"] if r["method"] == "uncached"}
        prefix = out if model == "reference" else out.with_name(f"{out.name}_{model}")
        parts.append(quality_markdown(results, prefix))
        save_quality_vs_cost(plot_series(results["quality_rows"]), prefix.with_suffix(".png"), series="series")
    text = "\n".join(parts)
    report = {"cells": documents, "missing": [str(c) for c in missing], "environment": environment()}
    write_json(out.with_suffix(".json"), report)
    atomic_write_text(out.with_suffix(".md"), text)
    if documents and Path("README.md").exists() and out == DEFAULT_OUT:
        write_readme_table(documents)
    print(text)
    return report


def plot_series(rows: list[dict]) -> list[dict]:
    """The rows a plot shows, each with its line's name: the default section, the shared rows, and
    gocopt's committed schedule (the generous section's) as a line of its own (a composite is one line)."""
    shown = [r for r in rows if r.get("section") != "generous" or r["method"] == "gocopt"]
    return [{**r, "series": LABELS[r["method"]] + (" (committed schedule)" if r.get("section") == "generous" else "")}
            for r in shown]


def _one_uncached_row_per_steps(rows: list[dict]) -> list[dict]:
    """The cells of one step count share one uncached run: its row once."""
    seen: set[int] = set()
    out = []
    for row in rows:
        if row["method"] == "uncached":
            if row["steps"] in seen:
                continue
            seen.add(row["steps"])
        out.append(row)
    return out


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
        rows.sort(key=lambda r: (r["budget"] or 0, SECTION_ORDER.index(r.get("section")),
                                 list(LABELS).index(r["method"])))
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
            cheaper = (f" (shown, not counted: cheaper than every gocopt row, "
                       f"{', '.join(LABELS[m] for m in v['cheaper_rows'])})" if v["cheaper_rows"] else "")
            margin = (f"; {v['margin_db']:+.2f}{_stderr(v.get('margin_stderr'))} dB over the closest row at equal "
                      f"cost ({LABELS[v['best_peer']]}, against {v.get('against', {}).get(v['best_peer'], 'gocopt')})"
                      if v.get("best_peer") else "")
            if v.get("composite_margin_db") is not None:
                margin += (f"; {v['composite_margin_db']:+.2f}{_stderr(v.get('composite_margin_stderr'))} dB over "
                           "the best composite")
            if "meets_goal" in v:
                margin += "; goal met" if v["meets_goal"] else "; goal **not** met"
            over = f"; **over budget**: {', '.join(v['over_budget'])}" if v.get("over_budget") else ""
            section = f" ({v['section']} section)" if v.get("section") else ""
            lines.append(f"- budget {v['budget']:.2f}{section}: {verdict}{cheaper}{margin}{over}.")
        lines.append("")
    return "\n".join(lines)


SUMMARY_COLUMNS = [("steps", "DDIM", ""), ("budget", "budget", ".2f"), ("section", "section", ""),
                   ("gocopt", "gocopt PSNR / FD", ""),
                   ("gocopt_cost", "its cost", ".3f"), ("best", "best other row (PSNR / FD)", ""),
                   ("margin", "margin (dB)", ""), ("composite", "best composite (PSNR / FD)", ""),
                   ("composite_margin", "margin over it (dB)", ""), ("goal", "≥ 1 dB and lower FD", ""),
                   ("setup", "set-up work: gocopt / best row / composite (samples)", "")]


DEFAULT_OUT = Path("docs/benchmarks/head_to_head")
README_BEGIN = "<!-- head-to-head table: written by `python -m benchmarks.head_to_head --report`; do not edit -->"
README_END = "<!-- end of the head-to-head table -->"


def readme_table(documents: list[dict]) -> str:
    """The README's one table, from the cells: per model, step count and budget, gocopt's default
    compile against the best other row of equal set-up work (composites included), and the margin
    in both sections. Generated, never hand-copied, so the landing page cannot drift from the data.
    A cell whose default compile ran under another ``Effort`` than today's default is marked."""
    today = repr(compile_effort(QualitySettings()))
    earlier = False
    lines = ["| model | DDIM | budget | gocopt default PSNR | best other row (PSNR) | margin, default work (dB) "
             "| margin, generous work (dB) |", "|---|---|---|---|---|---|---|"]
    for document in sorted(documents, key=lambda d: (d["model"] != "reference", d["model"], d["steps"], d["budget"])):
        default, generous = document["verdicts"]["default"], document["verdicts"].get("generous")
        rows = {r["method"]: r for r in section_rows(document["rows"], "default")}
        ours = rows["gocopt"]
        best = rows.get(default["best_peer"]) if default.get("best_peer") else None
        label = (best["detail"] if best and best["method"] == "composite" and best.get("detail")
                 else LABELS[best["method"]].split(" (")[0] if best else "—")
        shown = f"{label} ({best['psnr_vs_uncached']:.2f})" if best else "—"

        def margin(v: dict | None) -> str:
            if not v or v.get("margin_db") is None:
                return "—"
            text = f"{v['margin_db']:+.2f}{_stderr(v.get('margin_stderr'))}"
            return f"**{text}**" if v.get("meets_goal") else text

        mark = "" if document["settings"].get("gocopt_effort") == today else " †"
        earlier = earlier or bool(mark)
        lines.append(f"| {document['model']} | {document['steps']} | {document['budget']:.2f} | "
                     f"{ours['psnr_vs_uncached']:.2f}{mark} | {shown} | {margin(default)} | {margin(generous)} |")
    if earlier:
        lines += ["", "† compiled under an earlier default (each cell records its `Effort`); the cell is being "
                      "measured again under today's `Effort()`."]
    return "\n".join(lines)


def write_readme_table(documents: list[dict], readme: Path = Path("README.md")) -> None:
    """Replace the table between the README's markers with :func:`readme_table` of ``documents``."""
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"{readme} has no head-to-head markers ({README_BEGIN!r} … {README_END!r})")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    atomic_write_text(readme, f"{head}{README_BEGIN}\n{readme_table(documents)}\n{README_END}{tail}")


def summary_rows(results: dict) -> list[dict]:
    """One line per cell: gocopt's row (the one each margin is taken against), the closest other row,
    the best composite, and the paired margins with their standard errors."""
    out = []
    for v in results["verdicts"]:
        group = {r["method"]: r for r in section_rows(results["quality_rows"], v.get("section"))
                 if r["steps"] == v["steps"] and r["budget"] == v["budget"]}
        best = group.get(v["best_peer"]) if v.get("best_peer") else None
        ours = group[v["against"][v["best_peer"]]] if best else group["gocopt"]
        composite = group.get("composite")

        def cell(r: dict) -> str:
            return f"{r['psnr_vs_uncached']:.2f} / {r['fd_vs_uncached']:.4f}"

        out.append({"steps": v["steps"], "budget": v["budget"], "section": v.get("section"), "gocopt": cell(ours),
                    "gocopt_cost": ours["cost"],
                    "best": f"{LABELS[best['method']].split(' (')[0]}: {cell(best)}" if best else None,
                    "margin": f"{v['margin_db']:+.2f}{_stderr(v.get('margin_stderr'))}" if best else None,
                    "composite": f"{composite['detail']}: {cell(composite)}" if composite else None,
                    "composite_margin": (f"{v['composite_margin_db']:+.2f}{_stderr(v.get('composite_margin_stderr'))}"
                                         if composite else None),
                    "goal": "yes" if v.get("meets_goal") else "**no**",
                    "setup": " / ".join(_work(r) for r in (ours, best, composite))})
    return out


def _work(row: dict | None) -> str:
    value = None if row is None else row.get("setup_work")
    return "—" if value is None else f"{value:.0f}"


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
