"""The head-to-head in cells: one model × step count × budget per file, so the table is built a
few cells at a time and an interrupted run loses at most the cell it was in.

A cell is every row of one (model, DDIM steps, budget): the uncached run's own row, then every
contender of :class:`~benchmarks.quality_table.QualityBench` at that budget, scored against the
uncached samples of the same evaluation seeds. It is written whole, atomically, to
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

from benchmarks.quality_table import (
    QualityBench,
    QualitySettings,
    TrainedModel,
    contender_rows,
    evaluation_set,
    uncached_run,
    verdicts,
)
from gocopt.atomic import atomic_path
from gocopt.report import environment, write_json

logger = logging.getLogger(__name__)
CELL_SEED_BASE = 70_000
MODELS = ("reference", "latent")
STEPS = (20, 50)
BUDGETS = (0.25, 0.35, 0.5, 0.75)
CELLS_DIR = Path("docs/benchmarks/head_to_head")
UNCACHED_CACHE = Path(".cache/head_to_head")


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
    """Every row of ``cell`` and its verdict, as the cell file's document."""
    settings = dataclasses.replace(settings, steps=(cell.steps,), budgets=(cell.budget,))
    seed_base = CELL_SEED_BASE + settings.seed
    labels, noise = evaluation_set(trained, settings.samples, seed_base)
    bench = QualityBench(trained, cell.steps, settings, progress)
    kept = cache / f"{cell.model}_ddim{cell.steps}_{settings.samples}_from_{seed_base}.pt"
    uncached, uncached_row = cached_uncached_run(trained, bench, labels, noise, kept)
    rows = [uncached_row, *contender_rows(bench, cell.budget, labels, noise, uncached,
                                          slice(0, settings.timing_samples), progress)]
    return {"model": cell.model, "steps": cell.steps, "budget": cell.budget, "rows": rows,
            "verdict": verdicts(rows)[0],
            "settings": {"samples": settings.samples, "seed_base": CELL_SEED_BASE + settings.seed,
                         "timing_samples": settings.timing_samples,
                         "calibration_samples": settings.calibration_samples,
                         "gocopt_schedules": str(settings.schedules_dir or "compiled in the cell")},
            "environment": environment()}


def cached_uncached_run(trained: TrainedModel, bench: QualityBench, labels: torch.Tensor, noise: torch.Tensor,
                        path: Path) -> tuple[torch.Tensor, dict]:
    """The uncached samples of this model, step count and seed set, and their row: read from
    ``path`` when an earlier cell made them for the same inputs, else made and kept there."""
    if path.exists():
        kept = torch.load(path, weights_only=True)
        if torch.equal(kept["labels"], labels) and torch.equal(kept["noise"], noise):
            return kept["samples"], json.loads(kept["row"])
    samples, row = uncached_run(trained, bench.sampler, labels, noise, bench.settings.batch_size)
    with atomic_path(path) as tmp:
        torch.save({"labels": labels, "noise": noise, "samples": samples, "row": json.dumps(row)}, tmp)
    return samples, row


def read_cells(root: Path = CELLS_DIR) -> list[dict]:
    """Every cell written under ``root``, in (model, steps, budget) order."""
    documents = [json.loads(p.read_text()) for p in sorted(root.glob("*/ddim*_b*.json"))]
    return sorted(documents, key=lambda d: (MODELS.index(d["model"]) if d["model"] in MODELS else len(MODELS),
                                            d["steps"], d["budget"]))


__all__ = ["BUDGETS", "CELLS_DIR", "CELL_SEED_BASE", "Cell", "MODELS", "STEPS", "all_cells", "compute_cell",
           "missing_cells", "read_cells", "run_cells"]
