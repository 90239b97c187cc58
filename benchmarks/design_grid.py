"""The design grid issue #34's experiments share: three models that differ in kind × DDIM-20 and 50 ×
four budgets, scored on design seeds no compile and no head-to-head uses; one JSON file per cell,
written atomically the moment it is done, so an interrupted run loses one cell at most.

:func:`run_grid` is the command line both :mod:`benchmarks.levers` and :mod:`benchmarks.selection`
run: every missing cell in turn (or those named), then the report from the cells present.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from benchmarks.quality_table import TrainedModel
from gocopt.report import write_json

MODELS, STEPS, BUDGETS = ("reference", "latent", "patch1"), (20, 50), (0.25, 0.35, 0.5, 0.75)
SAMPLES = 128  # design seeds per cell: SampleSet.make(SAMPLES, DESIGN_SEED_BASE)


def cell_path(root: Path, model: str, steps: int, budget: float) -> Path:
    return root / f"{model}_ddim{steps}_b{budget:.2f}.json"


def run_grid(argv: list[str] | None, description: str, *, cells: Path, out: Path,
             missing: Callable[[Path, float], bool],
             compute: Callable[[TrainedModel, int, float, int, dict | None], dict],
             report: Callable[[Path, Path], object]) -> None:
    """Compute every cell ``missing(path, budget)`` says is missing (``compute(trained, steps, budget,
    samples, previous)``, ``previous`` the cell as written before, if any), then ``report(cells, out)``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", choices=MODELS)
    parser.add_argument("--steps", nargs="+", type=int)
    parser.add_argument("--budget", nargs="+", type=float)
    parser.add_argument("--samples", type=int, default=SAMPLES)
    parser.add_argument("--cells", type=Path, default=cells)
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--out", type=Path, default=out)
    args = parser.parse_args(argv)
    if not args.report:
        args.cells.mkdir(parents=True, exist_ok=True)
        for model in args.model or MODELS:
            trained = TrainedModel.named(model)
            for steps in args.steps or STEPS:
                for budget in args.budget or BUDGETS:
                    path = cell_path(args.cells, model, steps, budget)
                    if not missing(path, budget):
                        print(f"{path} already written", flush=True)
                        continue
                    previous = json.loads(path.read_text()) if path.exists() else None
                    write_json(path, compute(trained, steps, budget, args.samples, previous))
                    print(f"{path} written", flush=True)
    report(args.cells, args.out)
