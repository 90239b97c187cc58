"""The levers benchmark (issue #34): every lever compiled and scored against the defaults, cell by cell."""

from __future__ import annotations

import json

import pytest

from benchmarks import levers


@pytest.mark.slow
def test_a_levers_cell_scores_every_lever_against_the_defaults_once(tmp_path, capsys):
    cells, out = tmp_path / "cells", tmp_path / "levers"
    args = ["--model", "reference", "--steps", "6", "--budget", "0.5", "--samples", "8", "--cells", str(cells),
            "--out", str(out)]
    levers.main(args)
    written = levers.cell_path(cells, "reference", 6, 0.5)
    cell = json.loads(written.read_text())
    rows = {row["lever"]: row for row in cell["rows"]}
    assert set(rows) == set(levers.LEVERS)
    assert rows["defaults"]["diff_vs_defaults"] == 0.0
    for row in rows.values():  # every lever within the budget, its compile's work recorded
        assert "error" in row or (row["cost"] <= 0.5 + 1e-9 and row["compile_work"] > 0)
    stamp = written.stat().st_mtime_ns
    levers.main(args)  # written cells are skipped, not recomputed
    assert written.stat().st_mtime_ns == stamp and "already written" in capsys.readouterr().out
    report = (out.with_suffix(".md")).read_text()
    assert "Missing cells" in report and "reference_ddim20_b0.25.json" in report
    assert all(name in report for name in levers.LEVERS)
