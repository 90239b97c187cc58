"""The Optuna study around the objective: sampler, storage, seeding, resuming, workers.

The storage is the only thing to change to go distributed: ``storage=None`` keeps the study in
memory; ``"sqlite:///study.db"``, ``"postgresql://..."`` or a journal file (``"study.log"``)
let any number of processes work on one study by name
(``load_if_exists``). Each worker stops once the study holds ``trials`` finished trials, so two
workers never overshoot, and a killed study resumes where it stopped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from tqdm.auto import tqdm

from gocopt.search.objective import W_MAX, ScheduleObjective
from gocopt.search.space import Candidate

logger = logging.getLogger(__name__)

# Enqueued first in every new study: the baselines, at the study's budget, and calibration-greedy.
SEED_CANDIDATES = (
    Candidate(family="interval", alpha=0.0, w_attn=0.0, w_mlp=0.0),  # FORA, plain reuse
    Candidate(family="interval", alpha=0.0, w_attn=0.8, w_mlp=0.8),  # FORA + GOC at a stable w
    Candidate(family="l2c", alpha=0.0, max_run=4),  # L2C-like, plain reuse
    Candidate(family="greedy", alpha=1.0, max_run=1, w_attn=0.8, w_mlp=0.8),  # calibration-greedy + GOC
    Candidate(family="greedy", alpha=1.0, max_run=2, w_attn=0.5, w_mlp=0.5),
)


def get_storage(storage: Any) -> Any:
    """``None`` (in memory), an Optuna storage object, an RDB URL, or a journal file path.

    Workers that start together race to create an RDB's tables; that race is retried here, so
    any number of processes can be pointed at a fresh database at once.
    """
    if storage is None or not isinstance(storage, str):
        return storage
    if storage.endswith((".log", ".journal")):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(storage))
    # SQLite's default 5 s lock timeout is short for several busy workers on one file
    engine_kwargs = {"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else {}
    from sqlalchemy.exc import SQLAlchemyError

    for attempt in range(10):
        try:
            rdb = optuna.storages.RDBStorage(storage, engine_kwargs=engine_kwargs)
            if storage.startswith("sqlite"):
                _serialize_sqlite_transactions(rdb.engine)
            return rdb
        except SQLAlchemyError:  # another worker is creating the tables right now ("already exists", UNIQUE, locked)
            if attempt == 9:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _serialize_sqlite_transactions(engine) -> None:
    """Make every SQLite transaction take the write lock when it begins (``BEGIN IMMEDIATE``).

    pysqlite begins transactions lazily, so two workers can both read a trial as WAITING and both
    claim it; Optuna's claim is a read-then-write that must not interleave.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, record):  # noqa: ARG001
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections made before the listeners existed are dropped


@dataclass
class SearchResult:
    best: Candidate
    best_value: float
    study: optuna.Study
    trials: int


def run_search(objective: ScheduleObjective, *, trials: int, seed: int = 0, storage=None, study_name: str | None = None,
               progress: bool = True) -> SearchResult:
    """Optimise ``objective`` until the study holds ``trials`` finished trials."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = get_storage(storage)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=8)
    try:
        study = optuna.create_study(direction="maximize", sampler=sampler, storage=storage, study_name=study_name)
        for candidate in SEED_CANDIDATES:  # only the worker that created the study seeds it
            study.enqueue_trial(candidate.as_params())
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler)
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    remaining = max(0, trials - done)
    if done:
        logger.info("study %r resumes with %d of %d trials done", study.study_name, done, trials)
    bar = tqdm(total=trials, initial=done, desc="search", disable=not progress, leave=False)

    def tick(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        bar.update(1)
        if trial.state == TrialState.COMPLETE:
            bar.set_postfix(best=f"{study.best_value:.2f} dB")

    if remaining:
        study.optimize(objective, n_trials=remaining,
                       callbacks=[MaxTrialsCallback(trials, states=(TrialState.COMPLETE,)), tick])
    bar.close()
    best = study.best_trial
    params = {k: best.params[k] for k in Candidate.__dataclass_fields__ if k in best.params}
    return SearchResult(Candidate(**params), float(best.value if best.value is not None else "nan"), study,
                        len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))))


__all__ = ["SEED_CANDIDATES", "SearchResult", "W_MAX", "get_storage", "run_search"]
