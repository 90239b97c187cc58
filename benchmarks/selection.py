"""Which sampled trial a compile keeps: selection rules, measured on every trial's quality (issue #34).

    python -m benchmarks.selection                 # every missing cell, in turn
    python -m benchmarks.selection --model latent --steps 20 --budget 0.25
    python -m benchmarks.selection --report        # docs/benchmarks/selection.{md,json} from the cells present

A default compile samples four to six trials on eight search seeds and keeps the best. Eight seeds
judge two schedules to about ±1.2 dB (paired), and most of the trials' true differences are smaller
(docs/benchmarks/levers.md), so which trial is kept is partly chance. This benchmark measures the
rules that choose, without compiling once per rule: each cell compiles a budget with ``RECORDED_TRIALS``
trials under each recorded effort (``RECORDINGS``), records every trial's schedule as the search scored
it (:func:`recording_trials`: per-seed PSNR on the search seeds), and scores every distinct schedule on
the held-out seeds the compile uses and on ``SAMPLES`` design seeds no compile and no head-to-head uses.

A rule (:class:`Rule`) is an effort and a way to choose. Its compile under the default cap samples the
first ``plan_work(...).trials`` of the recorded trials — exactly: the surrogate ranks its candidates
before the trial count is known, so fewer trials sample a prefix of more — and its choice is read off
the recorded scores. Its design-seed quality is the chosen schedule's, paired against the first #34
default's (``TODAY``: its candidates, the search's best kept) on the same seeds. Where held-out seeds
are fewer than recorded, a rule reads the first of them: the same seeds, sampled in a batch of
another size, so equal to float rounding.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

import gocopt
from benchmarks.design_grid import BUDGETS, MODELS, SAMPLES, STEPS, cell_path, run_grid
from benchmarks.levers import FIRST_34, LATENTS
from benchmarks.quality_table import DESIGN_SEED_BASE, TrainedModel, bench_sampler, evaluation_set
from gocopt.atomic import atomic_write_text
from gocopt.driver import HELDOUT_SEED_BASE
from gocopt.errors import ScheduleError
from gocopt.evaluate import SampleSet
from gocopt.metrics.fidelity import psnr
from gocopt.report import environment, markdown_table, write_json
from gocopt.sampling import initial_noise
from gocopt.schedule.schedule import Schedule
from gocopt.search.effort import Effort, default_max_samples, plan_work
from gocopt.search.objective import ScheduleObjective
from gocopt.search.spans import max_gap_for

RECORDED_TRIALS = 6  # the most any rule below samples under the default cap
RECORDED_HELDOUT = 8
CELLS = Path("docs/benchmarks/selection")
DPCACHE = "forecast-path-shared"
RECORDINGS = {"today": FIRST_34,  # the first #34 default's candidates
              "+ DPCache's placement": replace(FIRST_34, always_sample=(*FIRST_34.always_names, DPCACHE))}


@dataclass(frozen=True)
class Rule:
    """A compile's effort (its trials under the default cap) and how it chooses among them."""

    recording: str
    effort: Effort
    choose: str  # "best": the search's best; "finalists": the best over search and held-out seeds of
    #              effort.finalists; "prior": the first trial unless another beats it by 2 s.e., paired


TODAY = "the first #34 default: its candidates, the search's best on its 8 seeds"
RULES = {
    TODAY: Rule("today", FIRST_34, "best"),
    "the best two re-scored on the held-out seeds (one trial fewer)": Rule("today", replace(FIRST_34, finalists=2),
                                                                          "finalists"),
    "the best three re-scored on the held-out seeds (two trials fewer)":
        Rule("today", replace(FIRST_34, finalists=3), "finalists"),
    "the surrogate's best kept unless beaten by 2 s.e. on the search seeds": Rule("today", FIRST_34, "prior"),
    "held-out on 6; DPCache's placement sampled (levers: HELDOUT_6; today's default)":
        Rule("+ DPCache's placement", replace(RECORDINGS["+ DPCache's placement"], heldout_samples=6), "best"),
    "DPCache's placement sampled; the best two re-scored on the held-out seeds":
        Rule("+ DPCache's placement", replace(RECORDINGS["+ DPCache's placement"], finalists=2), "finalists"),
    "held-out on 6; DPCache's placement sampled; the best two re-scored on them":
        Rule("+ DPCache's placement", replace(RECORDINGS["+ DPCache's placement"], heldout_samples=6, finalists=2),
             "finalists"),
}


@contextmanager
def recording_trials() -> Iterator[list[tuple[Schedule, torch.Tensor]]]:
    """Every schedule a search samples, in trial order, with its per-seed PSNR on the search seeds:
    the real objective runs, and this only keeps what it scored."""
    seen: list[tuple[Schedule, torch.Tensor]] = []
    original = ScheduleObjective.sample_scores

    def sample_scores(self: ScheduleObjective, schedule: Schedule) -> torch.Tensor:
        scores = original(self, schedule)
        seen.append((schedule, scores))
        return scores

    ScheduleObjective.sample_scores = sample_scores  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        ScheduleObjective.sample_scores = original  # type: ignore[method-assign]


def schedule_key(schedule: Schedule) -> str:
    """Trials that build the same mask and predictor (coefficients included) are one schedule."""
    predictor = json.dumps(schedule.predictor.to_json(), sort_keys=True)
    return hashlib.sha1(schedule.mask.tobytes() + predictor.encode()).hexdigest()[:16]


@torch.no_grad()
def compute_cell(trained: TrainedModel, steps: int, budget: float, samples: int) -> dict:
    """Each recording's trials and every distinct schedule's per-seed PSNR on the search, held-out
    and design seeds."""
    sampler = bench_sampler(trained, steps)
    model, evaluator = trained.model, trained.evaluator
    design_labels, design_noise = evaluation_set(trained, samples, DESIGN_SEED_BASE)
    held = SampleSet.make(RECORDED_HELDOUT, HELDOUT_SEED_BASE + Effort().seed, model.num_classes)
    held_noise = initial_noise(held.seeds, tuple(design_noise.shape[1:]))
    design_reference = evaluator.images(sampler.sample(model, design_labels, design_noise,
                                                       num_classes=model.num_classes))
    held_reference = sampler.sample(model, held.labels, held_noise, num_classes=model.num_classes)
    recordings, schedules, compiled = {}, {}, None
    for name, effort in RECORDINGS.items():
        with recording_trials() as seen:
            compiled = gocopt.compile(model, budget, sampler=sampler, effort=effort.with_overrides(
                trials=RECORDED_TRIALS, heldout_samples=RECORDED_HELDOUT), progress=False)
        trials = []
        for schedule, scores in seen:
            key = schedule_key(schedule)
            schedules.setdefault(key, schedule)
            trials.append({"schedule": key, "name": schedule.name, "search": [round(float(v), 6) for v in scores]})
        chosen = compiled.schedule
        assert chosen is not None
        recordings[name] = {"trials": trials, "chosen": schedule_key(chosen),
                            "heldout_psnr": chosen.provenance["quality"]["heldout"]["psnr_vs_uncached"]}
    assert compiled is not None
    scored = {}
    for key, schedule in schedules.items():
        compiled.set_schedule(schedule, log=False)
        compiled.reset()
        held_out = psnr(sampler.sample(compiled, held.labels, held_noise, num_classes=model.num_classes),
                        held_reference)
        compiled.reset()
        design = psnr(evaluator.images(sampler.sample(compiled, design_labels, design_noise,
                                                      num_classes=model.num_classes)), design_reference)
        scored[key] = {"cost": float(schedule.cost(compiled.site_flops)),
                       "family": f"{schedule.name.split('@')[0]} + {_predictor_kind(schedule)}",
                       "heldout": [round(float(v), 6) for v in held_out],
                       "design": [round(float(v), 6) for v in design]}
    for name, recording in recordings.items():  # the compile's own held-out check is this benchmark's, seed for seed
        mine = float(np.mean(scored[recording["chosen"]]["heldout"]))
        if abs(mine - recording["heldout_psnr"]) > 1e-4:
            raise RuntimeError(f"{trained.name} DDIM-{steps}/{budget}: {name}'s chosen schedule scores {mine:.6f} dB "
                               f"on the held-out seeds here, {recording['heldout_psnr']:.6f} in its compile")
    return {"model": trained.name, "steps": steps, "budget": budget, "samples": samples,
            "seeds": f"design: SampleSet.make({samples}, DESIGN_SEED_BASE={DESIGN_SEED_BASE}); held-out: "
                     f"SampleSet.make({RECORDED_HELDOUT}, HELDOUT_SEED_BASE={HELDOUT_SEED_BASE})",
            "environment": environment(), "recordings": recordings, "schedules": scored}


def choose(rule: Rule, cell: dict) -> tuple[str, int]:
    """The schedule ``rule`` keeps in ``cell``, and how many trials its compile samples."""
    effort = rule.effort
    plan = plan_work(effort, steps=cell["steps"], budgets=1, max_gap=max_gap_for([cell["budget"]], cell["steps"]),
                     restartable=True, max_samples=default_max_samples(1))
    trials = cell["recordings"][rule.recording]["trials"]
    if plan.trials > len(trials):
        raise ValueError(f"{rule} samples {plan.trials} trials, the cell recorded {len(trials)}")
    trials = trials[:plan.trials]
    search = [np.asarray(t["search"]) for t in trials]
    means = [float(np.mean(s)) for s in search]
    best = int(np.argmax(means))  # the first of equals, as the study's best trial is
    if rule.choose == "best":
        return trials[best]["schedule"], plan.trials
    if rule.choose == "prior":
        gains = [search[i] - search[0] for i in range(len(trials))]
        clear = [i for i, g in enumerate(gains) if g.mean() > 2 * g.std(ddof=1) / np.sqrt(len(g))]
        return trials[max(clear, key=lambda i: means[i]) if clear else 0]["schedule"], plan.trials
    order = sorted(range(len(trials)), key=lambda i: -means[i])[:effort.finalists]
    held = effort.heldout_samples

    def pooled(i: int) -> float:
        heldout = cell["schedules"][trials[i]["schedule"]]["heldout"][:held]
        return float((np.sum(search[i]) + np.sum(heldout)) / (len(search[i]) + held))

    return trials[max(order, key=pooled)]["schedule"], plan.trials


def evaluate(cells: list[dict], levers_root: Path = Path("docs/benchmarks/levers")) -> list[dict]:
    """Per cell and rule: the kept schedule's design PSNR, paired against ``TODAY``'s, and (for the
    rules a levers cell measured by compiling) whether the simulated choice is the compiled one."""
    rows = []
    for cell in cells:
        design = {k: np.asarray(v["design"]) for k, v in cell["schedules"].items()}
        today, _ = choose(RULES[TODAY], cell)
        lever_cell = cell_path(levers_root, cell["model"], cell["steps"], cell["budget"])
        compiled = json.loads(lever_cell.read_text())["per_sample"] if lever_cell.exists() else {}
        oracle_key = max(design, key=lambda k: design[k].mean())
        for name, rule in RULES.items():
            where = {"model": cell["model"], "steps": cell["steps"], "budget": cell["budget"], "rule": name}
            try:
                key, trials = choose(rule, cell)
            except ScheduleError as error:  # the default cap cannot pay for this rule's held-out scoring here
                rows.append({**where, "kept": f"not affordable: {error}"})
                continue
            diff = design[key] - design[today]
            row = {**where, "trials": trials, "psnr": float(design[key].mean()),
                   "diff": float(diff.mean()), "diff_stderr": float(diff.std(ddof=1) / np.sqrt(len(diff))),
                   "kept": cell["schedules"][key]["family"]}
            if name == TODAY and LATENTS in compiled:  # the levers' compile of that default, by today's code
                row["compiled_psnr"] = float(np.mean(compiled[LATENTS]))
            rows.append(row)
        rows.append({"model": cell["model"], "steps": cell["steps"], "budget": cell["budget"],
                     "rule": "oracle: the best schedule any recording sampled, by its design seeds",
                     "psnr": float(design[oracle_key].mean()),
                     "diff": float((design[oracle_key] - design[today]).mean()), "diff_stderr": float("nan"),
                     "kept": cell["schedules"][oracle_key]["family"]})
    return rows


def verdicts(rows: list[dict]) -> list[dict]:
    out = []
    for name in RULES:
        if name == TODAY:
            continue
        mine = [r for r in rows if r["rule"] == name and "diff" in r]
        helps = [r for r in mine if r["diff"] > 2 * max(r["diff_stderr"], 1e-9)]
        hurts = [r for r in mine if -r["diff"] > 2 * max(r["diff_stderr"], 1e-9)]
        measured = [r["diff"] for r in mine if "diff" in r]
        out.append({"rule": name, "cells": len(measured), "mean": float(np.mean(measured)) if measured else 0.0,
                    "helps": ", ".join(map(_cell_label, helps)) or "—",
                    "hurts": ", ".join(map(_cell_label, hurts)) or "—"})
    return out


def _predictor_kind(schedule: Schedule) -> str:
    data = schedule.predictor.to_json()
    return data["kind"] + (f" K={data['history']}" if "history" in data else
                           f" order {data['order']}" if "order" in data else "")


def _cell_label(row: dict) -> str:
    return f"{row['model']} {row['steps']}/{row['budget']:g} ({row['diff']:+.2f})"


def write_report(root: Path, out: Path) -> dict:
    cells = [json.loads(p.read_text()) for p in sorted(root.glob("*.json"))]
    missing = [cell_path(root, m, s, b).name for m in MODELS for s in STEPS for b in BUDGETS
               if not cell_path(root, m, s, b).exists()]
    rows = evaluate(cells)
    summary = verdicts(rows)
    columns = [("model", "model", ""), ("steps", "DDIM", ""), ("budget", "budget", ".2f"), ("rule", "rule", ""),
               ("trials", "trials", ""), ("psnr", "PSNR (dB)", ".2f"),
               ("diff", "vs the first #34 default (dB)", "+.2f"),
               ("diff_stderr", "± s.e.", ".2f"), ("compiled_psnr", "compiled (levers cell)", ".2f"),
               ("kept", "kept", "")]
    text = ("# Which trial a compile keeps: selection rules per model\n\n"
            "Built by `python -m benchmarks.selection --report` from the cells in `docs/benchmarks/selection/`. "
            f"PSNR against the uncached model on {SAMPLES} design seeds (decoded pixels for the latent model), "
            f"paired against *{TODAY}* on the same seeds. A rule *helps* (*hurts*) in a cell where the paired "
            "difference is beyond two standard errors. Each rule's compile samples the first of the recorded trials "
            "that the default cap pays for under its effort (the *trials* column), and keeps one of them as it says. "
            "Where the levers benchmark compiled that default by today's code in the same cell (budgets 0.35 "
            f"and 0.75, *{LATENTS}*), its PSNR stands beside the simulated choice: equal where the simulation is "
            "exact.\n\n" + (f"**Missing cells**: {', '.join(missing)}.\n\n" if missing else "")
            + "## Per rule\n\n" + markdown_table(summary, [("rule", "rule", ""), ("cells", "cells", ""),
                                                        ("mean", "mean change (dB)", "+.2f"),
                                                        ("helps", "helps in", ""), ("hurts", "hurts in", "")])
            + "\n## Every cell\n\n" + markdown_table(rows, columns) + "\n")
    atomic_write_text(out.with_suffix(".md"), text)
    write_json(out.with_suffix(".json"), {"rows": rows, "verdicts": summary, "missing": missing})
    return {"rows": rows, "verdicts": summary}


def main(argv: list[str] | None = None) -> None:
    run_grid(argv, __doc__ or "", cells=CELLS, out=Path("docs/benchmarks/selection"),
             missing=lambda path, budget: not path.exists(),
             compute=lambda trained, steps, budget, samples, previous: compute_cell(trained, steps, budget, samples),
             report=write_report)


if __name__ == "__main__":
    main()
