"""The default compile's levers, each on and off, on every shipped model (issue #34).

    python -m benchmarks.levers                 # every missing cell, in turn
    python -m benchmarks.levers --model latent --steps 20 --budget 0.25
    python -m benchmarks.levers --report        # docs/benchmarks/levers.{md,json} from the cells present

A design decision about the search, its measurements or its predictors is a default only if it
helps on models that differ in kind. So each cell — one model × DDIM step count × budget — compiles
that budget alone with the baseline (``BASELINE``: the defaults the levers were measured against) and
with each lever (``LEVERS``: a :class:`Lever`, an
:class:`Effort` that differs from the default in one thing under the same default cap of model
work, or the search scored on decoded images where the model has a decoder), then scores every
schedule on the same design seeds (``DESIGN_SEED_BASE``: no compile and no head-to-head uses them)
as the head-to-head does (decoded pixels for the latent model), paired against the baseline with
the standard error of the per-sample differences, and with the model work each compile spent (a
compile the cap cannot pay for spends the least that works, with a warning). Each cell is written
atomically to ``docs/benchmarks/levers/<model>_ddim<S>_b<B>.json`` the moment it is done, with every
lever's per-sample PSNR, so a lever added later is measured in the cells already written without
redoing the others: only the missing levers are compiled (and the baseline again, where a cell
predates per-sample records: its recomputed mean must equal the recorded one, or the cell is
refused as made by other code). An interrupted run loses one cell at most.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

import gocopt
from benchmarks.design_grid import BUDGETS, MODELS, SAMPLES, STEPS, cell_path, run_grid
from benchmarks.quality_table import DESIGN_SEED_BASE, TrainedModel, bench_sampler, evaluation_set
from gocopt.atomic import atomic_write_text
from gocopt.errors import ScheduleError
from gocopt.metrics.fidelity import psnr
from gocopt.report import environment, markdown_table, write_json
from gocopt.search.effort import Effort

FIRST_BUDGETS = (0.25, 0.5)  # the grid's budgets until the default changed: the levers decided then
CELLS = Path("docs/benchmarks/levers")


@dataclass(frozen=True)
class Lever:
    """One change to the default compile: its effort, whether the search scores decoded images
    (``DiTSpec(decode=...)``; only a latent model has a decoder, the others' samples are their images),
    what it is paired against, and the budgets it is measured at."""

    effort: Effort = Effort()
    decoded: bool = False
    against: str | None = None  # the lever it is paired against (None: BASELINE)
    budgets: tuple[float, ...] = BUDGETS
    stopped: bool = False  # measured no further: its cells so far settled it (kept in the report as measured)


# What every lever is paired against: the default compile these levers were measured on. The lever
# that won (the shared forecast and Taylor 1st sampled, held-out on 8 seeds) was the default next.
BASELINE = "defaults before issue #34 (held-out on 16 seeds; the global path alone sampled)"
BEFORE_34 = Effort(heldout_samples=16, always_sample=("global-path",), damping_seeds=3)  # that baseline's effort
NOW_DEFAULT = ("held-out on 8 seeds; global path with the whole-history shared forecast and FORA's mask with "
               "Taylor 1st sampled")
FIRST_34 = Effort(always_sample=("global-path", "path-shared", "interval-taylor1"), damping_seeds=3,
                  heldout_samples=8)  # its effort, every field it set pinned

DAMPING_1 = "the span table's damping on 1 seed of 3 (its latents from calibration): the work saved buys a trial"
LATENTS = ("the span table's latents from calibration: the work saved buys a trial (the default until held-out "
           "on 6)")
HELDOUT_6 = "held-out on 6 seeds (span latents from calibration); DPCache's placement sampled in the trial it buys"
LEVERS = {name: lever if isinstance(lever, Lever) else Lever(lever, budgets=FIRST_BUDGETS) for name, lever in {
    BASELINE: Lever(BEFORE_34),
    # the default compile affords two sampled trials on both models at DDIM-20 (the surrogate's best and
    # the global path), so a candidate sampled "always" must take one of those two places ...
    "Taylor 1st on FORA's mask sampled instead of the global path":
        replace(BEFORE_34, always_sample=("interval-taylor1",)),
    # ... or be paid for: held-out scoring on 8 seeds instead of 16 frees two trials under the same cap
    "held-out on 8 seeds; Taylor forecasts sampled (FORA's mask 1st, 2nd; path 2nd)":
        replace(FIRST_34, always_sample=("global-path", "interval-taylor1", "interval-taylor2", "path-taylor2")),
    # the composites that beat gocopt at DDIM-50 pair a placed path with a whole-history forecast. Its rows
    # were measured before the span table took calibration's latents (see below)
    NOW_DEFAULT: Lever(FIRST_34),
    # the search ranks latents while users judge decoded images, and at DDIM-20/0.5 the two disagree
    "search and held-out scored on decoded images (latent model)":
        Lever(BEFORE_34, decoded=True, budgets=FIRST_BUDGETS),
    # after the default changed, paired against it: the composites' placements (from calibration alone)
    # with the shared forecast, sampled as a fourth candidate
    "+ CEM's placement (reuse prior, near-even gaps) with the shared forecast sampled":
        Lever(replace(FIRST_34, always_sample=(*FIRST_34.always_names, "prior-path-shared")), against=NOW_DEFAULT,
              budgets=FIRST_BUDGETS),
    "+ DPCache's placement (first-order forecast table) with the shared forecast sampled":
        Lever(replace(FIRST_34, always_sample=(*FIRST_34.always_names, "forecast-path-shared")), against=NOW_DEFAULT),
    # the span table's uncached latents taken from calibration (no model work: the same latents, from
    # calibration's batch of 8, so equal to float rounding) and its damping (its runs to the end) measured
    # on one seed of three: 7–8 samples' work less, a fifth trial at 0.25, a sixth at 0.5. Stopped after
    # the six DDIM-50 cells at 0.25 and 0.5: another span table placed the computes worse (latent 50/0.25
    # −5.2 dB, reference −2.3) and the search's eight seeds could not tell
    DAMPING_1: Lever(replace(FIRST_34, damping_seeds=1), against=NOW_DEFAULT, stopped=True),
    "damping on 1 span seed of 3; DPCache's placement sampled in the trial it buys":
        Lever(replace(FIRST_34, damping_seeds=1, always_sample=(*FIRST_34.always_names, "forecast-path-shared")),
              against=NOW_DEFAULT, stopped=True),
    # FORA's mask with Taylor 2nd where a trial is left (DDIM-20 from 0.35, DDIM-50 from 0.5): the
    # head-to-head's latent DDIM-20/0.35 cell lost 2.8 dB to exactly that schedule, never sampled there
    "damping on 1 span seed of 3; DPCache's placement and FORA's mask with Taylor 2nd sampled":
        Lever(replace(FIRST_34, damping_seeds=1,
                      always_sample=(*FIRST_34.always_names, "forecast-path-shared", "interval-taylor2")),
              against=NOW_DEFAULT, stopped=True),
    # the default as the code runs it since the span table takes calibration's latents: its effort is the
    # first #34 default's, but the work saved buys a fifth trial at DDIM-50/0.35 and a sixth at 0.75
    LATENTS: Lever(FIRST_34, against=NOW_DEFAULT, budgets=(0.35, 0.75)),
    # the span table as it was (its latents from calibration: 3 samples' work less) and the held-out check
    # on 6 seeds (4 less): a fifth trial at 0.25, a sixth at 0.5, for DPCache's placement at every budget.
    # Better on the mean of every model's cells, worse in one cell (latent DDIM-50/0.75): today's default ...
    HELDOUT_6: Lever(replace(FIRST_34, heldout_samples=6,
                             always_sample=(*FIRST_34.always_names, "forecast-path-shared")), against=NOW_DEFAULT),
    # ... and FORA's mask with Taylor 2nd where a trial is left
    "held-out on 6 seeds; DPCache's placement and FORA's mask with Taylor 2nd sampled":
        Lever(replace(FIRST_34, heldout_samples=6,
                      always_sample=(*FIRST_34.always_names, "forecast-path-shared", "interval-taylor2")),
              against=NOW_DEFAULT),
}.items()}
MEAN_TOLERANCE_DB = 1e-6  # a recomputed lever's mean PSNR against its record: the same code gives the same samples


@torch.no_grad()
def compute_cell(trained: TrainedModel, steps: int, budget: float, samples: int, previous: dict | None = None) -> dict:
    """Every lever's compile of ``budget`` alone, scored on the design seeds against the defaults;
    the levers ``previous`` (this cell as written before) already holds are kept, not redone."""
    sampler = bench_sampler(trained, steps)
    labels, noise = evaluation_set(trained, samples, DESIGN_SEED_BASE)
    model, evaluator = trained.model, trained.evaluator
    uncached = sampler.sample(model, labels, noise, num_classes=model.num_classes)
    reference_images = evaluator.images(uncached)
    if previous is not None and previous["samples"] != samples:
        raise ValueError(f"the written cell has {previous['samples']} samples, this run {samples}: one cell, "
                         "one seed set")
    kept = {row["lever"]: row for row in (previous or {}).get("rows", []) if row["lever"] in LEVERS}
    per_sample = {name: np.asarray(values) for name, values in (previous or {}).get("per_sample", {}).items()
                  if name in kept}
    rows, fresh = [], set()
    decoder = evaluator.images if getattr(evaluator, "decode", None) is not None else None
    for name, lever in LEVERS.items():
        if name not in levers_at(budget):  # stopped, or not measured at this budget: kept as written
            if name in kept:
                rows.append(kept[name])
            continue
        if name in kept and (name in per_sample or name != BASELINE):
            rows.append(kept[name])
            continue
        fresh.add(name)
        if lever.decoded and decoder is None:
            rows.append({"lever": name, "error": "not applicable: this model's samples are the images judged"})
            continue
        spec = gocopt.DiTSpec(decode=decoder if lever.decoded else None)
        started = time.perf_counter()
        try:
            compiled = gocopt.compile(model, budget, sampler=sampler, spec=spec, effort=lever.effort, progress=False)
        except ScheduleError as error:  # a lever this model or sampler cannot run: recorded, not fatal
            rows.append({"lever": name, "error": str(error)})
            continue
        seconds = time.perf_counter() - started
        schedule = compiled.schedule
        compiled.reset()
        cached = sampler.sample(compiled, labels, noise, num_classes=model.num_classes)
        per_sample[name] = psnr(evaluator.images(cached), reference_images).numpy()
        if name in kept and abs(float(per_sample[name].mean()) - kept[name]["psnr"]) > MEAN_TOLERANCE_DB:
            raise RuntimeError(f"{trained.name} DDIM-{steps} budget {budget}: {name!r} recomputed to "
                               f"{per_sample[name].mean():.6f} dB, the cell records {kept[name]['psnr']:.6f}: it was "
                               "made by other code; delete the cell to measure every lever again")
        work = schedule.provenance["work"]
        rows.append({"lever": name, "cost": float(schedule.cost(compiled.site_flops)),
                     "psnr": float(per_sample[name].mean()),
                     "psnr_stderr": float(per_sample[name].std(ddof=1) / np.sqrt(samples)),
                     "fd_vs_uncached": float(evaluator.score(cached, labels, reference=uncached)["fd_vs_uncached"]),
                     "compile_work": float(work["total"]["sample_equivalents"]), "compile_seconds": seconds,
                     "trials": schedule.provenance["search"]["trials"],
                     "best_params": schedule.provenance["search"]["best_params"]})
    for row in rows:
        base = per_sample.get(LEVERS[row["lever"]].against or BASELINE)
        if base is not None and row["lever"] in fresh and row["lever"] in per_sample:
            diff = per_sample[row["lever"]] - base
            row.update(diff_vs_defaults=float(diff.mean()), diff_stderr=float(diff.std(ddof=1) / np.sqrt(samples)))
    return {"model": trained.name, "steps": steps, "budget": budget, "samples": samples,
            "seeds": f"SampleSet.make({samples}, DESIGN_SEED_BASE={DESIGN_SEED_BASE})",
            "environment": environment(), "rows": rows,
            "per_sample": {name: [round(float(v), 6) for v in values] for name, values in per_sample.items()}}


def levers_at(budget: float) -> dict[str, Lever]:
    """The levers measured at ``budget`` (a stopped one at none)."""
    return {name: lever for name, lever in LEVERS.items()
            if not lever.stopped and any(abs(budget - b) < 1e-9 for b in lever.budgets)}


def missing_levers(path: Path, budget: float) -> list[str]:
    """The levers a written cell at ``budget`` lacks (all of them where none is written)."""
    if not path.exists():
        return list(levers_at(budget))
    written = {row["lever"] for row in json.loads(path.read_text())["rows"]}
    return [name for name in levers_at(budget) if name not in written]


def write_report(root: Path, out: Path) -> dict:
    cells = [json.loads(p.read_text()) for p in sorted(root.glob("*.json"))]
    rows = [{"model": c["model"], "steps": c["steps"], "budget": c["budget"], **r} for c in cells for r in c["rows"]]
    for row in rows:
        row["family"] = (f"{row['best_params']['family']} + {row['best_params']['predictor']}"
                         if "best_params" in row else "")
        row["note"] = row.get("error", "")
    missing = [cell_path(root, m, s, b).name for m in MODELS for s in STEPS for b in BUDGETS
               if not cell_path(root, m, s, b).exists()]
    columns = [("model", "model", ""), ("steps", "DDIM", ""), ("budget", "budget", ".2f"), ("lever", "lever", ""),
               ("psnr", "PSNR (dB)", ".2f"), ("psnr_stderr", "± s.e.", ".2f"),
               ("diff_vs_defaults", "vs its pair (dB)", "+.2f"), ("diff_stderr", "± s.e.", ".2f"),
               ("fd_vs_uncached", "FD", ".4f"), ("compile_work", "compile work (samples)", ".1f"),
               ("trials", "trials", ""), ("family", "search found", ""), ("note", "note", "")]
    verdicts = lever_verdicts(rows)
    verdict_columns = [("lever", "lever", ""), ("against", "paired against", ""), ("measured", "cells measured", ""),
                       ("helps", "helps in", ""), ("hurts", "hurts in", ""),
                       ("per_model", "mean change per model (dB)", ""), ("range", "change (dB)", ""),
                       ("verdict", "a default?", "")]
    text = ("# The default compile's levers, on and off, per model\n\n"
            "Built by `python -m benchmarks.levers --report` from the cells in `docs/benchmarks/levers/`. Each "
            "compile is one budget alone under the default cap (100 uncached-sample equivalents); PSNR against the "
            f"uncached model on {SAMPLES} design seeds (decoded pixels for the latent model); differences paired "
            f"against the baseline on the same seeds, *{BASELINE}*, or against the lever that won the first "
            f"grid (budgets {' and '.join(f'{b:g}' for b in FIRST_BUDGETS)}) and was the default next, "
            f"*{NOW_DEFAULT}*. "
            f"Today's default (`Effort()`) is *{today_default()}*.\n\n"
            + (f"**Missing cells**: {', '.join(missing)}.\n\n" if missing else "")
            + "## Verdicts\n\nA lever *helps* (or *hurts*) in a cell where its paired difference is beyond two "
            "standard errors. It may become a default only where it is measured in every cell of the grid and its "
            "mean change over a model's cells is beyond two standard errors better on some model and worse on "
            "none (issue #34's protocol: a change that helps one model and hurts another is not a default); the "
            "cells where it hurts are listed whatever the verdict.\n\n"
            + markdown_table(verdicts, verdict_columns) + "\n## Every cell\n\n"
            + markdown_table(rows, columns) + "\n")
    atomic_write_text(out.with_suffix(".md"), text)
    write_json(out.with_suffix(".json"), {"cells": cells, "missing": missing, "verdicts": verdicts})
    return {"rows": rows, "missing": missing, "verdicts": verdicts}


def today_default() -> str:
    """The lever whose effort is ``Effort()`` as the code stands (the last one, where several are)."""
    names = [name for name, lever in LEVERS.items() if lever.effort == Effort() and not lever.decoded]
    return names[-1] if names else "none of these levers"


def lever_verdicts(rows: list[dict]) -> list[dict]:
    """Per lever: the cells where it helps or hurts beyond two standard errors, its mean change on each
    model, and whether the protocol lets it be a default: measured in every cell of the grid, better on
    some model and worse on none, each model judged by its mean over its cells (issue #34: "a change that
    helps one model and hurts another is not a default").

    Per model, not per cell: with 24 cells judged at two standard errors, about one cell in 40 crosses the
    line by chance alone, and a cell that is truly worse can be outweighed on its own model by larger gains
    at other step counts and budgets; the cells that hurt are listed whatever the verdict. Judged cell by
    cell, the first #34 default (12 helps, 1 hurt in 24 cells) would fail too."""
    out = []
    for name in LEVERS:
        if name == BASELINE:
            continue
        measured = [r for r in rows if r["lever"] == name and "diff_vs_defaults" in r]
        # every cell of the grid counts, written or not, except on a model the lever does not apply to
        not_applicable = {r["model"] for r in rows if r["lever"] == name and "not applicable" in r.get("error", "")}
        applicable = sum(model not in not_applicable for model in MODELS for _ in STEPS for _ in LEVERS[name].budgets)
        helps, hurts = _beyond(measured, 1), _beyond(measured, -1)
        diffs = [r["diff_vs_defaults"] for r in measured]
        per_model = {model: _model_mean([r for r in measured if r["model"] == model]) for model in MODELS}
        per_model = {model: v for model, v in per_model.items() if v is not None}
        better = [m for m, (mean, se) in per_model.items() if mean > 2 * max(se, 1e-9)]
        worse = [m for m, (mean, se) in per_model.items() if -mean > 2 * max(se, 1e-9)]
        complete = len(measured) == applicable
        verdict = (f"no: worse on {', '.join(worse)}" if worse else "no: stopped" if LEVERS[name].stopped
                   else "not yet: cells missing" if not complete
                   else "yes" if better else "no: changes nothing")
        against = "the first #34 default" if LEVERS[name].against == NOW_DEFAULT else "the default before #34"
        out.append({"lever": name, "against": against, "measured": f"{len(measured)} of {applicable}",
                    "helps": ", ".join(helps) or "—", "hurts": ", ".join(hurts) or "—",
                    "per_model": "; ".join(f"{m} {mean:+.2f} ± {se:.2f}" for m, (mean, se) in per_model.items())
                    or "—",
                    "range": f"{min(diffs):+.2f} to {max(diffs):+.2f}" if diffs else "—", "verdict": verdict})
    return out


def _model_mean(cells: list[dict]) -> tuple[float, float] | None:
    """The mean paired difference over one model's cells, with its standard error (the cells' design
    seeds are the same, their schedules not: taken as independent)."""
    if not cells:
        return None
    means = np.asarray([r["diff_vs_defaults"] for r in cells])
    errors = np.asarray([r["diff_stderr"] for r in cells])
    return float(means.mean()), float(np.sqrt((errors**2).sum()) / len(cells))


def _beyond(measured: list[dict], sign: int) -> list[str]:
    """The cells where ``sign`` × the paired difference exceeds two standard errors."""
    return [f"{r['model']} {r['steps']}/{r['budget']:g}" for r in measured
            if sign * r["diff_vs_defaults"] > 2 * max(r["diff_stderr"], 1e-9)]


def main(argv: list[str] | None = None) -> None:
    run_grid(argv, __doc__ or "", cells=CELLS, out=Path("docs/benchmarks/levers"),
             missing=lambda path, budget: bool(missing_levers(path, budget)), compute=compute_cell,
             report=write_report)


if __name__ == "__main__":
    main()
