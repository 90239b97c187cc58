"""Writing measured results: one JSON file (the numbers) and one Markdown table (for people)."""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from gocopt.atomic import atomic_write_text
from gocopt.schedule.plan import plan_run


def environment() -> dict[str, Any]:
    """Where a measurement was taken; every results file records it."""
    return {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=float) + "\n")


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
    """``columns``: (key, header, format spec). Missing values print as an em dash."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    lines = [head, rule]
    for row in rows:
        cells = []
        for key, _, spec in columns:
            value = row.get(key)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                cells.append("—")
            else:
                cells.append(format(value, spec) if spec else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _work_line(work: dict | None) -> str:
    if not work:
        return ""
    phases = ", ".join(f"{name} {w['sample_equivalents']:.0f}" for name, w in work["phases"].items())
    budgets = ", ".join(f"{b:g}" for b in work.get("budgets", []))
    seconds = f", {work['total']['seconds']:.0f} s" if "seconds" in work["total"] else ""
    return (f"- compile cost: the model work of {work['total']['sample_equivalents']:.0f} uncached samples of "
            f"{work['steps']} steps ({phases}){seconds}, for budgets {budgets}\n")


def compile_report(schedule, path_stem: str) -> str:
    """A person's summary of a compiled schedule: quality on held-out seeds next to the
    baselines at the same budget, search and calibration facts, reuse per step."""
    quality = schedule.provenance.get("quality", {})
    rows = []
    if "heldout" in quality:
        rows.append({"schedule": "gocopt (searched mask + predictor)", **quality["heldout"]})
    for name, values in quality.get("baselines", {}).items():
        label = {"fora_goc_paper": "FORA + GOC, paper settings (w=1.2)", "l2c": "L2C-like, plain reuse"}.get(name, name)
        rows.append({"schedule": label, **values})
    table = markdown_table(rows, [("schedule", "schedule", ""), ("cost", "cost", ".3f"),
                                  ("psnr_vs_uncached", "PSNR vs uncached (dB"
                                   + (", decoded images)" if quality.get("scored_on") == "decoded images" else ")"),
                                   ".2f"),
                                  ("psnr_vs_uncached_stderr", "± s.e.", ".2f"), ("ssim_vs_uncached", "SSIM", ".4f"),
                                  ("fd_vs_uncached", "FD vs uncached", ".4f")])
    search = schedule.provenance.get("search", {})
    reuse = " ".join(f"{r:.2f}" for r in schedule.reuse_fraction_per_step())
    held = quality.get("heldout", {})
    return (
        f"# {schedule.name}: {schedule.fingerprint['class'].rsplit('.', 1)[-1]}, {schedule.steps} steps, "
        f"budget {schedule.budget}\n\n"
        f"Schedule file: `{path_stem}.json` · heatmap: `{path_stem}.png`\n\n"
        f"Held-out quality ({held.get('samples', '?')} seeds the search never saw), against the uncached model:\n\n"
        f"{table}\n"
        f"- search: {search.get('trials')} trials, study `{search.get('study')}`, best search PSNR "
        f"{search.get('best_value', float('nan')):.2f} dB; best parameters `{search.get('best_params')}`\n"
        f"- predictor: {schedule.predictor!r}; {len(plan_run(schedule).plans)} step graphs (compilations under "
        "torch.compile)\n"
        f"{_work_line(schedule.provenance.get('work'))}"
        f"{'- **note**: ' + search['note'] + chr(10) if search.get('note') else ''}"
        f"- inflection points (steps where features turn back): {schedule.provenance.get('inflection_points')}\n"
        f"- reused fraction per step: {reuse}\n"
    )
