"""A check the SQLite and the PostgreSQL tests share: workers measure calibration and spans once."""

from __future__ import annotations

from dataclasses import replace


def _measured_nothing(*args, **kwargs):
    raise AssertionError("this process measured what the study's storage already holds")


def shared_calibration_check(model, storage, monkeypatch) -> None:
    """A compile on ``storage`` measures calibration and spans once; a joining worker and a resumed
    leader load them (and run their trials) without measuring anything."""
    from quick import QUICK

    import gocopt
    import gocopt.driver as driver
    from gocopt.search.shared import SUFFIX

    study = gocopt.StudyConfig(storage=storage, name="shared", heartbeat=None)
    kw = dict(sampler=gocopt.default_sampler(6), study=study, progress=False)
    effort = replace(QUICK, search_samples=4, heldout_samples=4)
    first = gocopt.compile(model, 0.5, effort=replace(effort, trials=2), **kw)
    monkeypatch.setattr(driver, "calibrate", _measured_nothing)
    monkeypatch.setattr(driver, "measure_spans", _measured_nothing)
    gocopt.join_study(model, 0.5, effort=replace(effort, trials=4), **kw)  # joins, runs 2 more trials at once
    resumed = gocopt.compile(model, 0.5, effort=replace(effort, trials=4), **kw)  # the leader again: complete
    assert resumed.schedule.provenance["search"]["trials"] == 4
    work = resumed.schedule.provenance["work"]["phases"]
    assert "calibration" not in work and "spans" not in work
    assert resumed.schedule.provenance["calibration"] == first.schedule.provenance["calibration"]
    import optuna

    record = optuna.load_study(study_name=f"shared{SUFFIX}", storage=storage)
    assert {"calibration", "edges", "complete"} <= set(record.user_attrs)
