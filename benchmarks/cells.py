"""The head-to-head in cells: one model × step count × budget per file, so the table is built a
few cells at a time and an interrupted run loses at most the cell it was in.

A cell is every row of one (model, DDIM steps, budget) in two sections of equal set-up work
(:func:`compute_cell`, :mod:`benchmarks.allowance`): the uncached run's own row, then every contender
of :class:`~benchmarks.quality_table.QualityBench` at that budget, scored against the uncached
samples of the same evaluation seeds. It is written whole, atomically, to
``docs/benchmarks/head_to_head/<model>/ddim<S>_b<B>.json``; a cell already written is not computed
again unless forced. The uncached samples of a step count are computed once and kept (with their
row) under ``.cache/head_to_head/``, so the cells of one step count share them.

Evaluation seeds: ``SampleSet.make(samples, CELL_SEED_BASE)``, a base no compile (10,000+, 20,000+),
design experiment (30,000+) or earlier head-to-head (60,000+) has used.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.allowance import CEILINGS, Allowance
from benchmarks.quality_table import (
    GOCOPT_ROWS,
    LABELS,
    SETUP_NEEDS,
    QualityBench,
    QualitySettings,
    TrainedModel,
    bench_sampler,
    compile_effort,
    compile_in_run,
    compile_work,
    contender_rows,
    evaluation_set,
    load_committed,
    uncached_run,
    verdicts,
    whole_step_cost,
)
from gocopt.atomic import atomic_path
from gocopt.report import environment, write_json
from gocopt.sampling import DDIMSampler

logger = logging.getLogger(__name__)
CELL_SEED_BASE = 70_000
MODELS = ("reference", "latent")
STEPS = (20, 50)
BUDGETS = (0.25, 0.35, 0.5, 0.75)
CELLS_DIR = Path("docs/benchmarks/head_to_head")
UNCACHED_CACHE = Path(".cache/head_to_head")
SHARED_METHODS = tuple(m for m in LABELS if m not in (*SETUP_NEEDS, *GOCOPT_ROWS, "uncached"))  # set nothing up
SECTION_METHODS = tuple(m for m in LABELS if m in SETUP_NEEDS or m in GOCOPT_ROWS)  # once per section


@dataclass(frozen=True, order=True)
class Cell:
    """One (model, step count, budget) of the head-to-head."""

    model: str
    steps: int
    budget: float

    def path(self, root: Path = CELLS_DIR) -> Path:
        return root / self.model / f"ddim{self.steps}_b{self.budget:.2f}.json"

    def __str__(self) -> str:
        return f"{self.model} DDIM-{self.steps} budget {self.budget:.2f}"


def all_cells(models: Iterable[str] = MODELS, steps: Iterable[int] = STEPS,
              budgets: Iterable[float] = BUDGETS) -> list[Cell]:
    return [Cell(m, s, b) for m in models for s in steps for b in budgets]


def missing_cells(cells: Sequence[Cell], root: Path = CELLS_DIR) -> list[Cell]:
    return [cell for cell in cells if not cell.path(root).exists()]


def run_cells(cells: Sequence[Cell], settings: QualitySettings, *, root: Path = CELLS_DIR,
              cache: Path = UNCACHED_CACHE, force: bool = False, command: str = "",
              progress: bool = True) -> list[Path]:
    """Compute each cell not yet written (every one with ``force``), in order, each written as soon
    as it is done; returns the paths written. Models and benches are built once per model and step
    count, and only for cells that run."""
    written: list[Path] = []
    todo = list(cells) if force else missing_cells(cells, root)
    for cell in cells:
        if cell not in todo:
            logger.warning("%s: already written (%s), skipped; --force computes it again", cell, cell.path(root))
    trained: dict[str, TrainedModel] = {}
    for cell in todo:
        model = trained.setdefault(cell.model, TrainedModel.named(cell.model))
        started = time.perf_counter()
        document = compute_cell(model, cell, settings, cache=cache, progress=progress)
        document.update(command=command, seconds=round(time.perf_counter() - started, 1))
        write_json(cell.path(root), document)
        written.append(cell.path(root))
        logger.warning("%s: written to %s in %.0f s", cell, cell.path(root), document["seconds"])
    return written


def compute_cell(trained: TrainedModel, cell: Cell, settings: QualitySettings, *, cache: Path = UNCACHED_CACHE,
                 progress: bool = True) -> dict:
    """Every row of ``cell`` in its two sections, and a verdict per section, as the cell file's document.

    *default*: gocopt's default compile, made here from scratch first (its recorded work, less
    held-out scoring, is the allowance), against every peer set up within that allowance.
    *generous*: the committed schedule (the reference model's: ``--effort full``) against every peer
    given that compile's work
    (skipped when the settings compile gocopt in the run: there is no committed schedule then).
    The rows that set nothing up (FORA, TaylorSeer on fixed shapes, …) are the same in both and
    run once (``section: "shared"``)."""
    settings = dataclasses.replace(settings, steps=(cell.steps,), budgets=(cell.budget,))
    seed_base = CELL_SEED_BASE + settings.seed
    labels, noise = evaluation_set(trained, settings.samples, seed_base)
    sampler = bench_sampler(trained, cell.steps)
    kept = cache / f"{cell.model}_ddim{cell.steps}_{settings.samples}_from_{seed_base}.pt"
    uncached, uncached_row = cached_uncached_run(trained, sampler, labels, noise, kept, settings.batch_size)
    budgets = sorted({cell.budget, whole_step_cost(cell.budget, cell.steps)})
    sections = {"default": {b: compile_in_run(trained, sampler, b, settings, progress) for b in budgets}}
    if settings.schedules_dir is not None:
        sections["generous"] = {b: load_committed(trained, sampler, b, settings.schedules_dir) for b in budgets}
    timing = slice(0, settings.timing_samples)
    rows, allowances = [uncached_row], {}
    for section, models in sections.items():
        work = compile_work(models[cell.budget].schedule)
        if work is None:
            raise ValueError(f"gocopt's {section} schedule records no compile work: the peers' allowance is unknown")
        allowance = Allowance(section, work if settings.setup_ceiling is None else min(work, settings.setup_ceiling))
        allowances[section] = {"gocopt_work": work, "allowance": allowance.work}
        bench = QualityBench(trained, cell.steps, settings, allowance, progress=progress, gocopt_models=models)
        if section == "default":
            rows += contender_rows(bench, cell.budget, labels, noise, uncached, timing, progress,
                                   methods=SHARED_METHODS, section="shared")
        rows += contender_rows(bench, cell.budget, labels, noise, uncached, timing, progress,
                               methods=SECTION_METHODS, section=section)
    return {"model": cell.model, "steps": cell.steps, "budget": cell.budget, "rows": rows,
            "verdicts": {section: dict(verdicts(section_rows(rows, section))[0], section=section)
                         for section in sections},
            "sections": allowances,
            "settings": {"samples": settings.samples, "seed_base": CELL_SEED_BASE + settings.seed,
                         "timing_samples": settings.timing_samples, "setup_ceiling": settings.setup_ceiling,
                         "ceilings": CEILINGS, "gocopt_default": "gocopt.compile defaults, made in the cell"
                         + ("" if settings.compile_max_samples is None
                            else f" (max_samples {settings.compile_max_samples:g})"),
                         "gocopt_effort": repr(compile_effort(settings)),
                         "gocopt_generous": str(settings.schedules_dir) if settings.schedules_dir else None},
            "environment": environment()}


def section_rows(rows: Sequence[dict], section: str | None) -> list[dict]:
    """The rows ``section`` is judged on: its own, the shared ones and the uncached row."""
    return [r for r in rows if r.get("section") in (section, "shared", None)]


def cached_uncached_run(trained: TrainedModel, sampler: DDIMSampler, labels: torch.Tensor, noise: torch.Tensor,
                        path: Path, batch_size: int) -> tuple[torch.Tensor, dict]:
    """The uncached samples of this model, step count and seed set, and their row: read from
    ``path`` when an earlier cell made them for the same inputs, else made and kept there."""
    if path.exists():
        kept = torch.load(path, weights_only=True)
        if torch.equal(kept["labels"], labels) and torch.equal(kept["noise"], noise):
            return kept["samples"], json.loads(kept["row"])
    samples, row = uncached_run(trained, sampler, labels, noise, batch_size)
    with atomic_path(path) as tmp:
        torch.save({"labels": labels, "noise": noise, "samples": samples, "row": json.dumps(row)}, tmp)
    return samples, row


def read_cells(root: Path = CELLS_DIR) -> list[dict]:
    """Every cell written under ``root``, in (model, steps, budget) order."""
    documents = [json.loads(p.read_text()) for p in sorted(root.glob("*/ddim*_b*.json"))]
    return sorted(documents, key=lambda d: (MODELS.index(d["model"]) if d["model"] in MODELS else len(MODELS),
                                            d["steps"], d["budget"]))


__all__ = ["BUDGETS", "CELLS_DIR", "CELL_SEED_BASE", "Cell", "MODELS", "STEPS", "all_cells", "compute_cell",
           "missing_cells", "read_cells", "run_cells", "section_rows"]
