"""The head-to-head in cells (issue #32): a run killed part-way loses only the cell it was in."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.cells import Cell, all_cells, missing_cells

ROOT = Path(__file__).parent.parent
TINY = ["--samples", "12", "--timing-samples", "1", "--setup-ceiling", "8", "--threads", "1"]


def _head_to_head(*args: str, cells: Path, cache: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.head_to_head", *args, "--cells", str(cells),
                             "--cache", str(cache), *TINY], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_cells_are_named_and_found_missing(tmp_path):
    cells = all_cells()
    assert len(cells) == 16 and Cell("reference", 20, 0.25) in cells
    assert Cell("latent", 50, 0.75).path(tmp_path) == tmp_path / "latent" / "ddim50_b0.75.json"
    Cell("reference", 20, 0.25).path(tmp_path).parent.mkdir(parents=True)
    Cell("reference", 20, 0.25).path(tmp_path).write_text("{}")
    missing = missing_cells(cells, tmp_path)
    assert Cell("reference", 20, 0.25) not in missing and len(missing) == 15


@pytest.mark.slow
def test_a_run_killed_mid_cell_resumes_without_recomputing_written_cells(tmp_path):
    cells, cache = tmp_path / "cells", tmp_path / "cache"
    first, second = Cell("reference", 20, 0.25).path(cells), Cell("reference", 20, 0.35).path(cells)
    args = ("--model", "reference", "--steps", "20", "--budget", "0.25", "0.35")
    run = _head_to_head(*args, cells=cells, cache=cache)
    deadline = time.monotonic() + 600
    while not first.exists():
        assert run.poll() is None, f"the run ended before writing a cell:\n{run.stdout.read() if run.stdout else ''}"
        assert time.monotonic() < deadline, "no cell written in 10 minutes"
        time.sleep(0.2)
    os.kill(run.pid, signal.SIGKILL)  # mid-way through the second cell
    run.wait()
    assert not second.exists(), "the second cell finished before the kill; the test saw no interruption"
    assert not [p for p in second.parent.iterdir() if p.name.startswith(".")]  # no half-written file left
    written = first.read_bytes()
    document = json.loads(written)
    assert document["budget"] == 0.25 and {r["method"] for r in document["rows"]} >= {"uncached", "gocopt", "fora"}
    _check_sections(document)

    again = _head_to_head(*args, cells=cells, cache=cache)
    output, _ = again.communicate(timeout=900)
    assert again.returncode == 0, output
    assert "already written" in output and str(Cell("reference", 20, 0.25)) in output
    assert first.read_bytes() == written  # not recomputed
    assert json.loads(second.read_text())["budget"] == 0.35

    report = subprocess.run([sys.executable, "-m", "benchmarks.head_to_head", "--report", "--cells", str(cells),
                             "--out", str(tmp_path / "report")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "report.md").read_text()
    assert "from 2 of 16 cells" in text and "**Missing cells**" in text and "latent DDIM-50 budget 0.75" in text
    assert (tmp_path / "report.png").exists()
    assert len(json.loads((tmp_path / "report.json").read_text())["missing"]) == 14


def _check_sections(document: dict) -> None:
    """Both sections: gocopt's default compile made in the cell and the committed --effort full
    schedule, every peer that sets itself up allowed the compile's work (here capped by the CI
    ceiling), the rows that set nothing up run once and judged in both."""
    sections = document["sections"]
    assert set(sections) == set(document["verdicts"]) == {"default", "generous"}
    assert 30 < sections["default"]["gocopt_work"] < 100 < sections["generous"]["gocopt_work"]  # defaults vs full
    rows = document["rows"]
    for section in ("default", "generous"):
        assert sections[section]["allowance"] == 8.0  # --setup-ceiling 8
        own = {r["method"]: r for r in rows if r.get("section") == section}
        assert own["gocopt"]["setup_work"] == sections[section]["gocopt_work"]
        assert {"smoothcache", "budcache", "lemica", "composite", "l2p"} <= set(own)
        assert own["smoothcache"]["allowance"] == 8.0 and own["smoothcache"]["setup_work"] == 8.0  # 8 calibration runs
        assert document["verdicts"][section]["section"] == section
    shared = [r["method"] for r in rows if r.get("section") == "shared"]
    assert "fora" in shared and "taylorseer" in shared and len(shared) == len(set(shared))
