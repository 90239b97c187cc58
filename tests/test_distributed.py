"""A search shared by several `gocopt compile` processes on a real PostgreSQL server, with faults.

Needs a server: ``GOCOPT_TEST_POSTGRES_URL`` (``.ci/run`` starts a throw-away one). Without it
these tests are skipped, with that reason, on a developer's machine, and fail in CI.
Every test gets its own database, so the studies never meet.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from quick import SURROGATE_TRIALS

from gocopt.search.storage import get_storage

ROOT = Path(__file__).parent.parent
TRIALS = 8  # the study's seed trials are queued first; a dead worker's retry queues after them and must fit
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server_url() -> str:
    url = os.environ.get("GOCOPT_TEST_POSTGRES_URL")
    if not url:
        reason = ("no PostgreSQL server for the distributed-search tests: set GOCOPT_TEST_POSTGRES_URL "
                  "(postgresql://user:password@host:port/db) or run .ci/run, which starts one")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return url


@pytest.fixture
def database(server_url):
    """A fresh database on the server for this test; dropped after it."""
    import sqlalchemy

    name = f"gocopt_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    url = sqlalchemy.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    database = Database(url, name, admin)
    yield database
    database.dispose()
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


@dataclass
class Database:
    """A test's database: its URL, name, the server's admin engine, and one storage for the test's
    reads, made on first use (polling through a new storage each time would open a connection pool
    per poll and exhaust the server's connections)."""

    url: str
    name: str
    admin: Any
    _reader: optuna.storages.RDBStorage | None = None

    def study(self, budget: str = "0.5") -> optuna.Study:
        if self._reader is None:  # gocopt's own storage: it copes with workers creating the tables meanwhile
            self._reader = get_storage(self.url, heartbeat=None)
        return optuna.load_study(study_name=f"shared-b{float(budget):g}", storage=self._reader)

    def dispose(self) -> None:
        if self._reader is not None:
            self._reader.engine.dispose()


def _compile(url: str, out: Path, *extra: str, steps: int = 6, budget: str = "0.5", model: str = "reference",
             samples: int = 256) -> subprocess.Popen:
    """`gocopt compile` as a user runs it, with a short heartbeat so a dead worker is noticed in seconds."""
    command = [sys.executable, "-m", "gocopt", "compile", "--model", model, "--steps", str(steps), "--budget", budget,
               "--trials", str(TRIALS), "--search-samples", str(samples), "--heldout-samples", "8",
               "--storage", url, "--study-name", "shared", "--heartbeat", "1",
               "--surrogate-trials", str(SURROGATE_TRIALS), "--out", str(out), *extra]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, timeout: float = 300.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (KeyError, optuna.exceptions.OptunaError):  # the study is not created yet
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _states(db: Database) -> dict[TrialState, int]:
    trials = db.study().get_trials(deepcopy=False)
    return {state: sum(t.state == state for t in trials) for state in TrialState}


def _complete(db: Database) -> dict[int, tuple[dict, float | None]]:
    trials = db.study().get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return {t.number: (t.params, t.value) for t in trials}


def _finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def test_a_worker_killed_mid_trial_is_failed_by_the_heartbeat_and_its_trial_rerun(database, tmp_path):
    url = database.url
    out = tmp_path / "schedule.json"
    leader = _compile(url, out)  # 256 samples a trial: about a second, long enough to be caught mid-trial
    worker = _compile(url, tmp_path / "unused.json", "--workers-join")
    tag = f":{worker.pid}"
    caught: list[int] = []

    def worker_is_mid_trial() -> bool:
        caught[:] = [t.number for t in database.study().get_trials(deepcopy=False)
                     if t.state == TrialState.RUNNING and str(t.user_attrs.get("worker", "")).endswith(tag)]
        return bool(caught)

    _wait_for(worker_is_mid_trial, what="the joining worker to run a trial")
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    code, _, err = _finish(leader)
    assert code == 0, err
    trials = database.study().get_trials(deepcopy=False)
    killed = [t for t in trials if t.number == caught[0]]
    assert killed[0].state == TrialState.FAIL, killed  # marked failed through the heartbeat, not left RUNNING
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed[0].number]
    # the copy keeps what the dead trial had chosen (a trial killed between suggestions had chosen only some)
    assert retried and retried[0].state == TrialState.COMPLETE
    assert killed[0].params.items() <= retried[0].params.items()
    assert sum(t.state == TrialState.COMPLETE for t in trials) == TRIALS
    assert not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)  # the queue was used up
    assert out.is_file() and not (tmp_path / "unused.json").exists()  # only the leader writes


def test_every_worker_killed_then_the_study_resumes_keeping_its_complete_trials(database, tmp_path):
    url = database.url
    out = tmp_path / "schedule.json"
    first = _compile(url, out)
    _wait_for(lambda: _states(database)[TrialState.COMPLETE] >= 3 and _states(database)[TrialState.RUNNING] == 1,
              what="three complete trials and one running")
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = _complete(database)
    assert not out.exists()
    code, _, err = _finish(_compile(url, out))
    assert code == 0, err
    after = _complete(database)
    assert len(after) == TRIALS and all(after[n] == v for n, v in before.items())
    assert out.is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_database_is_named_with_its_password_masked(tmp_path):
    url = f"postgresql://gocopt:s3cret-pw@127.0.0.1:{_free_port()}/nowhere"
    out = tmp_path / "schedule.json"
    code, _, err = _finish(_compile(url, out), timeout=120)
    assert code == 2
    assert "postgresql://gocopt:***@127.0.0.1" in err and "s3cret-pw" not in err
    assert "server is up" in err and "resume" in err
    assert list(tmp_path.iterdir()) == []  # nothing on disk, half-written or not


def test_a_database_dropped_mid_study_stops_with_a_clear_error_and_resumes(database, tmp_path):
    url, admin, name = database.url, database.admin, database.name
    out = tmp_path / "schedule.json"
    leader = _compile(url, out)
    _wait_for(lambda: _states(database)[TrialState.COMPLETE] >= 2, what="two complete trials")
    with admin.connect() as connection:  # the server goes away for this database: no new connections, old ones cut
        connection.exec_driver_sql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        connection.exec_driver_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
    code, _, err = _finish(leader)
    password = url.split(":")[2].split("@")[0]
    assert code == 2, err
    assert "was lost" in err and "***@127.0.0.1" in err and password not in err and "resumes" in err
    assert list(tmp_path.iterdir()) == []
    with admin.connect() as connection:
        connection.exec_driver_sql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
    code, _, err = _finish(_compile(url, out))
    assert code == 0, err
    assert out.is_file() and _states(database)[TrialState.COMPLETE] == TRIALS


def test_a_study_made_for_something_else_is_refused(database, tmp_path):
    url = database.url
    code, _, err = _finish(_compile(url, tmp_path / "a.json", samples=16))  # quick: only its metadata matters
    assert code == 0, err
    for change, difference in (({"model": "DiT-Tiny"}, "model"), ({"steps": 8}, "sampler"),
                               ({"budget": "0.35"}, "budgets")):
        settings = {"steps": 6, "budget": "0.5", "model": "reference", "samples": 16} | change
        code, _, err = _finish(_compile(url, tmp_path / "b.json", **settings))
        assert code == 2, change
        assert f"was made for {difference} = " in err and "use another --study-name" in err, err[-500:]
        assert not (tmp_path / "b.json").exists()


def test_a_joining_worker_on_postgresql_runs_no_calibration_or_span_measurement(database, tiny_model, monkeypatch):
    from shared_storage import shared_calibration_check

    shared_calibration_check(tiny_model, database.url, monkeypatch)
