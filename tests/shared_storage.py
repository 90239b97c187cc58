"""A check the SQLite and the PostgreSQL tests share: workers measure calibration and spans once."""

from __future__ import annotations


def _measured_nothing(*args, **kwargs):
    raise AssertionError("this process measured what the study's storage already holds")


def shared_calibration_check(model, storage, monkeypatch) -> None:
    """A compile on ``storage`` measures calibration and spans once; a joining worker and a resumed
    leader load them (and run their trials) without measuring anything."""
    from quick import QUICK

    import gocopt
    import gocopt.driver as driver
    from gocopt.search.shared import SUFFIX

    kw = dict(steps=6, search_samples=4, heldout_samples=4, storage=storage, study_name="shared", progress=False,
              heartbeat=None, effort=QUICK)
    first = gocopt.compile(model, 0.5, trials=2, **kw)
    monkeypatch.setattr(driver, "calibrate", _measured_nothing)
    monkeypatch.setattr(driver, "measure_spans", _measured_nothing)
    assert gocopt.compile(model, 0.5, trials=4, join=True, **kw) is None  # joins, runs 2 more trials at once
    resumed = gocopt.compile(model, 0.5, trials=4, **kw)  # the leader again: the study is complete
    assert resumed.schedule.provenance["search"]["trials"] == 4
    work = resumed.schedule.provenance["work"]["phases"]
    assert "calibration" not in work and "spans" not in work
    assert resumed.schedule.provenance["calibration"] == first.schedule.provenance["calibration"]
    import optuna

    record = optuna.load_study(study_name=f"shared{SUFFIX}", storage=storage)
    assert {"calibration", "edges", "complete"} <= set(record.user_attrs)
