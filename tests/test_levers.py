"""The levers benchmark (issue #34): every lever compiled and scored against the defaults, cell by cell."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from quick import SURROGATE_TRIALS

from benchmarks import levers


@pytest.mark.slow
def test_a_levers_cell_scores_every_lever_against_the_defaults_once_and_takes_new_levers_later(tmp_path, capsys,
                                                                                                monkeypatch):
    # every lever as it is, but its surrogate study test-sized (its CPU time is most of a compile's here)
    monkeypatch.setattr(levers, "LEVERS", {name: replace(lever, effort=replace(lever.effort,
                                                                               surrogate_trials=SURROGATE_TRIALS))
                                           for name, lever in levers.LEVERS.items()})
    cells, out = tmp_path / "cells", tmp_path / "levers"
    args = ["--model", "reference", "--steps", "6", "--budget", "0.5", "--samples", "8", "--cells", str(cells),
            "--out", str(out)]
    levers.main(args)
    written = levers.cell_path(cells, "reference", 6, 0.5)
    cell = json.loads(written.read_text())
    rows = {row["lever"]: row for row in cell["rows"]}
    assert set(rows) == set(levers.levers_at(0.5))  # stopped levers, and those of other budgets, are not run
    assert rows[levers.BASELINE]["diff_vs_defaults"] == 0.0
    for row in rows.values():  # every lever within the budget, its compile's work recorded
        assert "error" in row or (row["cost"] <= 0.5 + 1e-9 and row["compile_work"] > 0)
    stamp = written.stat().st_mtime_ns
    levers.main(args)  # written cells are skipped, not recomputed
    assert written.stat().st_mtime_ns == stamp and "already written" in capsys.readouterr().out
    report = (out.with_suffix(".md")).read_text()
    assert "Missing cells" in report and "reference_ddim20_b0.25.json" in report
    assert all(name in report for name in levers.LEVERS)
    applied = {name for name, row in rows.items() if "error" not in row}
    assert set(cell["per_sample"]) == applied and levers.BASELINE in applied
    assert "not applicable" in rows["search and held-out scored on decoded images (latent model)"]["error"]

    # A cell written before a lever existed (and before per-sample records) gets only that lever, plus the
    # defaults recomputed to pair it with, which must reproduce the recorded mean; a cell whose defaults do
    # not reproduce was made by other code and is refused.
    path = written
    cell = json.loads(path.read_text())
    added = [row["lever"] for row in cell["rows"] if "error" not in row][-1]
    old = {**cell, "rows": [row for row in cell["rows"] if row["lever"] != added]}
    del old["per_sample"]
    path.write_text(json.dumps(old))
    assert levers.missing_levers(path, 0.5) == [added]
    levers.main(args)
    redone = json.loads(path.read_text())
    rows = {row["lever"]: row for row in redone["rows"]}
    assert list(rows) == list(levers.levers_at(0.5))
    kept = [name for name in levers.levers_at(0.5) if name not in (levers.BASELINE, added)]
    assert all(rows[name] == next(r for r in cell["rows"] if r["lever"] == name) for name in kept)
    assert rows[added]["psnr"] == pytest.approx(next(r for r in cell["rows"] if r["lever"] == added)["psnr"])
    assert rows[levers.BASELINE]["diff_vs_defaults"] == 0.0  # recomputed, and paired with itself again
    tampered = {**old, "rows": [{**row, "psnr": row["psnr"] + 0.5} if row["lever"] == levers.BASELINE else row
                                for row in old["rows"]]}
    path.write_text(json.dumps(tampered))
    with pytest.raises(RuntimeError, match="made by other code"):
        levers.main(args)


def test_a_lever_is_a_default_only_where_it_helps_somewhere_hurts_nowhere_and_every_cell_is_measured():
    names = [name for name in levers.LEVERS if name != levers.BASELINE]
    grid = {name: [(m, s, b) for m in levers.MODELS for s in levers.STEPS for b in levers.LEVERS[name].budgets]
            for name in names}
    assert {len(cells) for cells in grid.values()} == {12, 24}  # the first grid's levers, and the later ones

    def rows(diff_of) -> list[dict]:
        return [{"model": m, "steps": s, "budget": b, "lever": name, "diff_vs_defaults": diff_of(m, s, b),
                 "diff_stderr": 0.1} for name in names for m, s, b in grid[name]]

    stopped = {name for name in names if levers.LEVERS[name].stopped}
    helped = levers.lever_verdicts(rows(lambda m, s, b: 0.5 if m == "latent" else 0.1))
    verdict = {v["lever"]: v["verdict"] for v in helped}
    assert {verdict[name] for name in names if name not in stopped} == {"yes"}  # +0.5 beyond 2 s.e. on one model
    assert {verdict[name] for name in stopped} == {"no: stopped"}  # whatever its cells say, it is measured no more
    # a model worse on the mean of its cells: not a default, whatever the other models gain
    hurt = levers.lever_verdicts(rows(lambda m, s, b: -0.3 if m == "patch1" else 0.5))
    assert {v["verdict"] for v in hurt} == {"no: worse on patch1"} and "patch1 50/0.25" in hurt[0]["hurts"]
    # one cell worse, its model better on the mean of its cells: the cell is named, the lever passes
    one = levers.lever_verdicts(rows(lambda m, s, b: -0.3 if (m, s) == ("latent", 50) and b in (0.25, 0.35) else 0.5))
    assert all(v["hurts"] in ("latent 50/0.25", "latent 50/0.35", "latent 50/0.25, latent 50/0.35") for v in one)
    assert {v["verdict"] for v in one if v["lever"] not in stopped} == {"yes"}
    assert "latent +" in one[0]["per_model"]
    partial = levers.lever_verdicts(rows(lambda m, s, b: 0.5)[1:])
    assert partial[0]["verdict"] == "not yet: cells missing"
    first = grid[names[0]]
    assert partial[0]["measured"] == f"{len(first) - 1} of {len(first)}"
    assert all(v["verdict"] == ("no: stopped" if v["lever"] in stopped else "yes") for v in partial[1:])
