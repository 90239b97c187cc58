"""The selection benchmark (issue #34): every trial recorded once, each rule's choice read off the record."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from quick import SURROGATE_TRIALS

import gocopt
from benchmarks import selection
from benchmarks.quality_table import TrainedModel, bench_sampler
from gocopt.search.effort import default_max_samples, plan_work
from gocopt.search.spans import max_gap_for


@pytest.mark.slow
def test_each_rules_choice_read_off_the_recorded_trials_is_the_one_its_own_compile_keeps(tmp_path, monkeypatch):
    """The simulation is exact: a compile under the default cap samples a prefix of the recorded
    trials (the surrogate ranks before the trial count is known) and chooses as :func:`choose` does."""
    # one recording (today's candidates) and the rules read off it, their surrogate studies test-sized
    quick = {"today": replace(selection.RECORDINGS["today"], surrogate_trials=SURROGATE_TRIALS)}
    rules = {name: replace(rule, effort=replace(rule.effort, surrogate_trials=SURROGATE_TRIALS))
             for name, rule in selection.RULES.items() if rule.recording == "today"}
    monkeypatch.setattr(selection, "RECORDINGS", quick)
    monkeypatch.setattr(selection, "RULES", rules)
    steps, budget = 6, 0.5
    most = max(plan_work(rule.effort, steps=steps, budgets=1, max_gap=max_gap_for([budget], steps), restartable=True,
                         max_samples=default_max_samples(1)).trials for rule in rules.values())
    monkeypatch.setattr(selection, "RECORDED_TRIALS", most)
    cells, out = tmp_path / "cells", tmp_path / "selection"
    selection.main(["--model", "reference", "--steps", str(steps), "--budget", str(budget), "--samples", "8",
                    "--cells", str(cells), "--out", str(out)])
    cell = json.loads(selection.cell_path(cells, "reference", steps, budget).read_text())
    for recording in cell["recordings"].values():
        assert len(recording["trials"]) == most
        assert all(len(cell["schedules"][t["schedule"]]["design"]) == 8 for t in recording["trials"])
    trained = TrainedModel.named("reference")
    for name in (selection.TODAY, "the best two re-scored on the held-out seeds (one trial fewer)"):
        compiled = gocopt.compile(trained.model, budget, sampler=bench_sampler(trained, steps),
                                  effort=rules[name].effort, progress=False)
        assert selection.schedule_key(compiled.schedule) == selection.choose(rules[name], cell)[0], name
    report = json.loads(out.with_suffix(".json").read_text())
    today = [r for r in report["rows"] if r["rule"] == selection.TODAY]
    assert len(today) == 1 and today[0]["diff"] == 0.0
    assert {v["rule"] for v in report["verdicts"]} == set(rules) - {selection.TODAY}
