"""The Optuna study around the objective: sampler, seeding, what it was made for, workers.

The storage (:mod:`gocopt.search.storage`) is the only thing to change to go distributed:
``storage=None`` keeps the study in memory; ``"sqlite:///study.db"``, ``"postgresql://..."`` or a
journal file (``"study.log"``) let any number of processes work on one study by name. Workers
stop once the study holds exactly ``trials`` complete trials; a killed study resumes where it
stopped; a study made for another model, sampler or budget is refused.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import optuna
from optuna.trial import TrialState
from tqdm.auto import tqdm

from gocopt.errors import ScheduleError
from gocopt.search.objective import W_MAX, ScheduleObjective
from gocopt.search.space import Candidate
from gocopt.search.storage import DEFAULT_HEARTBEAT, get_storage, shown_url, storage_errors

logger = logging.getLogger(__name__)
METADATA_KEY = "gocopt"  # the study's user attribute that records what it was made for
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"

# The globally placed path, whole model, with the fitted K=3 forecast: five of the eight committed
# reference schedules (gocopt 0.1's search, 2,560 samples per budget) are exactly this candidate,
# and the surrogate, which treats the sites' errors as independent, misranks its neighbours (at
# DDIM-50/0.25 it preferred a 0.25 path tilt that samples 5 dB worse). So a surrogate-led search
# always samples it (:func:`gocopt.search.surrogate.rank_candidates`).
GLOBAL_PATH = Candidate(family="path", alpha=0.0, predictor="fitted3")

# FORA's mask with the first-order Taylor forecast (TaylorSeer's arithmetic). The surrogate cannot
# rank it fairly: its error is measured on the uncached trajectory, where a fitted forecast is the
# least-squares optimum by construction and so always looks better on the same mask; end to end,
# where each forecast reads values that were themselves forecast, a fitted one can extrapolate
# worse (latent model, DDIM-20/0.25, 128 design seeds: Taylor 1st 29.96 dB vs fitted K=3 28.53 on
# latents, 38.51 vs 35.87 decoded).
INTERVAL_TAYLOR = Candidate(family="interval", alpha=0.0, predictor="taylor1")

# The candidates a surrogate-led search can be told to sample whatever the surrogate thinks of them
# (``Effort.always_sample``), by the name an Effort records.
ALWAYS_SAMPLED = {"global-path": GLOBAL_PATH, "interval-taylor1": INTERVAL_TAYLOR,
                  "interval-taylor2": replace(INTERVAL_TAYLOR, predictor="taylor2"),
                  "path-taylor2": replace(GLOBAL_PATH, predictor="taylor2"),
                  # the global path with the whole-history forecast shared by sites computed alike:
                  # what the composites that beat gocopt at DDIM-50 pair (a placed path + L2P-style)
                  "path-shared": replace(GLOBAL_PATH, predictor="shared"),
                  # the whole model computed where calibration alone places it (CEM's reuse prior with
                  # near-even gaps; DPCache's forecast table), with the shared forecast: the composites'
                  # placements, which beat the span table's in the head-to-head's DDIM-50 cells
                  "prior-path-shared": Candidate(family="prior-path", alpha=0.0, predictor="shared"),
                  "forecast-path-shared": Candidate(family="forecast-path", alpha=0.0, predictor="shared")}

# Enqueued first in every new study: the baselines at the study's budget, the peers' predictors
# on them, the global path with fitted forecasts, and calibration-greedy.
SEED_CANDIDATES = (
    Candidate(family="interval", alpha=0.0),  # FORA, plain reuse
    Candidate(family="interval", alpha=0.0, w_attn=0.8, w_mlp=0.8),  # FORA + GOC at a stable w
    Candidate(family="interval", alpha=0.0, predictor="taylor2"),  # FORA's mask, a 2nd-order polynomial forecast
    Candidate(family="interval", alpha=0.0, predictor="fitted3"),
    GLOBAL_PATH,  # LeMiCa-like placement, fitted forecast
    Candidate(family="path", alpha=1.0, predictor="fitted3", path_share=0.8),
    Candidate(family="l2c", alpha=0.0, max_run=4),  # L2C-like, plain reuse
    Candidate(family="greedy", alpha=1.0, max_run=1, w_attn=0.8, w_mlp=0.8),  # calibration-greedy + GOC
)


@dataclass
class SearchResult:
    best: Candidate
    best_value: float
    study: optuna.Study
    trials: int


def run_search(objective: ScheduleObjective, *, trials: int, seed: int = 0, storage=None, study_name: str | None = None,
               progress: bool = True, metadata: dict[str, Any] | None = None,
               heartbeat: int | None = DEFAULT_HEARTBEAT, worker: int = 0, group: str | None = None,
               first: Callable[[], Sequence[Candidate]] | None = None,
               optuna_sampler: optuna.samplers.BaseSampler | None = None) -> SearchResult:
    """Work on the study until it holds exactly ``trials`` complete trials, then return its best.

    Any number of processes may run this on one study at once. Each claims one trial at a time
    and runs it only while fewer than ``trials`` are complete or running ahead of it (in trial
    order), so workers never overshoot; a trial whose worker died is failed by the heartbeat,
    re-queued and run by whoever is alive. ``metadata`` is what the study was made for (model,
    sampler, budget, search inputs): a study made for something else is refused. ``worker``
    varies the sampler's seed between workers of one study, so they do not propose alike.
    ``group``: the name the studies of one compile share (one study per budget, ``{group}-b{budget}``);
    a compile with other budgets under that name is refused too. ``first``: the candidates a new
    study tries first (called only by the process that creates it; ``SEED_CANDIDATES`` by default),
    e.g. the best of a surrogate study (:mod:`gocopt.search.surrogate`). ``optuna_sampler``
    proposes the trials after those (default: TPE seeded by ``seed`` and ``worker``).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    shown = shown_url(storage)
    backend = get_storage(storage, heartbeat=heartbeat)
    sampler = optuna_sampler or optuna.samplers.TPESampler(seed=seed + 7919 * worker, n_startup_trials=8)
    with storage_errors(storage, "was lost while opening the study"):
        if group is not None and metadata and backend is not None:
            check_siblings(backend, group, study_name, metadata, shown)
        study = _create_or_load(backend, study_name, sampler, metadata or {}, shown, first or (lambda: SEED_CANDIDATES))
    bar = tqdm(total=trials, desc="search", disable=not progress, leave=False)

    def guarded(trial: optuna.Trial) -> float:
        ahead = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
                 if t.state == TrialState.COMPLETE or t.number < trial.number]
        if len(ahead) >= trials:  # another worker claimed the last slot first
            raise optuna.TrialPruned("surplus: the study already has its trials running or complete")
        trial.set_user_attr("worker", WORKER_ID)  # which process ran it: for logs, and for the tests that kill one
        return objective(trial)

    with storage_errors(storage, "was lost during the search"):
        done = _count(study, TrialState.COMPLETE)
        if done:
            logger.info("study %r resumes with %d of %d trials complete", study.study_name, done, trials)
        watched: set[int] = set()
        heartbeats = heartbeat is not None and isinstance(backend, optuna.storages.RDBStorage)
        while True:
            if heartbeats:
                optuna.storages.fail_stale_trials(study)  # a dead worker's trial: failed, re-queued
            active = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
            running = [t for t in active if t.state == TrialState.RUNNING]
            values = [t.value for t in active if t.state == TrialState.COMPLETE and t.value is not None]
            done = len(active) - len(running)
            if heartbeats:
                _watch_running(backend, running, watched)
            bar.n = min(done, trials)
            if values:
                bar.set_postfix(best=f"{max(values):.2f} dB", refresh=False)
            bar.refresh()
            if done >= trials:
                break
            if done + len(running) >= trials:  # the rest are running elsewhere: wait, they may die
                time.sleep(min(2.0, heartbeat or 2.0))
                continue
            study.optimize(guarded, n_trials=1)
        bar.close()
        best = study.best_trial
        complete = _count(study, TrialState.COMPLETE)
    return SearchResult(candidate_of(best), float(best.value if best.value is not None else "nan"), study, complete)


def candidate_of(trial: optuna.trial.FrozenTrial) -> Candidate:
    """The candidate a trial sampled (the parameters it was not asked keep their defaults)."""
    return Candidate(**{k: trial.params[k] for k in Candidate.__dataclass_fields__ if k in trial.params})


def best_trials(study: optuna.Study, count: int) -> list[tuple[Candidate, float]]:
    """The ``count`` best complete trials as (candidate, score on the search seeds), best first; of
    equal scores the earlier trial first, as ``study.best_trial`` takes it."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    ranked = sorted(complete, key=lambda t: (-float(t.value), t.number))[:count]  # type: ignore[arg-type]
    return [(candidate_of(t), float(t.value)) for t in ranked]  # type: ignore[arg-type]


def _watch_running(backend: optuna.storages.RDBStorage, running: list[optuna.trial.FrozenTrial],
                   watched: set[int]) -> None:
    """Give every running trial seen for the first time a heartbeat. Optuna never fails a trial that
    has none — a worker that died before its first heartbeat (the database dropped right as the trial
    started) would block the study forever. For a live trial this is one early refresh; for a dead
    one it starts the grace period."""
    for trial in running:
        if trial.number not in watched:
            backend.record_heartbeat(trial._trial_id)  # noqa: SLF001 - the storage addresses trials by id
            watched.add(trial.number)


def _count(study: optuna.Study, state: TrialState) -> int:
    return len(study.get_trials(deepcopy=False, states=(state,)))


def _create_or_load(storage: Any, name: str | None, sampler: optuna.samplers.BaseSampler,
                    metadata: dict[str, Any], shown: str, first: Callable[[], Sequence[Candidate]]) -> optuna.Study:
    """The existing study, if it was made for the same thing, or a new one with its first trials
    queued and then its ``metadata`` recorded.

    The order is what lets workers start together: ``first()`` (a surrogate study can take a
    minute) runs before the study exists, and the metadata, which every other worker waits for,
    is written after the queue. A worker that loads the study therefore finds the whole queue and
    runs its trials, never trials of its own sampler ahead of them; and a dead worker's retry,
    queued behind at most ``trials`` first candidates, still fits in the study's trials."""
    if storage is not None:
        try:
            return _loaded(storage, name, sampler, metadata, shown)
        except KeyError:  # no such study yet
            pass
    candidates = first()
    try:
        study = optuna.create_study(direction="maximize", sampler=sampler, storage=storage, study_name=name)
    except optuna.exceptions.DuplicatedStudyError:  # another worker created it meanwhile
        return _loaded(storage, name, sampler, metadata, shown)
    for candidate in candidates:
        study.enqueue_trial(candidate.as_params())
    study.set_user_attr(METADATA_KEY, metadata)  # last: whoever sees it sees the queue
    return study


def _loaded(storage: Any, name: str | None, sampler: optuna.samplers.BaseSampler, metadata: dict[str, Any],
            shown: str) -> optuna.Study:
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    check_metadata(_recorded_metadata(study), metadata, study.study_name, shown)
    return study


def _recorded_metadata(study: optuna.Study, wait: float = 10.0) -> dict[str, Any]:
    """The creator records the metadata right after queueing the new study's first trials: wait that
    moment out."""
    deadline = time.monotonic() + wait
    while True:
        recorded = study.user_attrs.get(METADATA_KEY)
        if recorded is not None or time.monotonic() > deadline:
            return recorded or {}
        time.sleep(0.2)


def check_metadata(recorded: dict[str, Any], ours: dict[str, Any], study_name: str, shown: str) -> None:
    """Refuse a study made for another model, sampler, budget or search input, naming the difference."""
    if not recorded and ours:
        raise ScheduleError(f"study {study_name!r} in {shown} was not made by gocopt (it records no model, sampler or "
                            "budget); use another --study-name")
    for key in sorted(set(recorded) | set(ours)):
        if recorded.get(key) != ours.get(key):
            raise ScheduleError(f"study {study_name!r} in {shown} was made for {key} = {_short(recorded.get(key))}, "
                                f"this compile has {key} = {_short(ours.get(key))}; use another --study-name for "
                                "this search, or the same inputs to resume that one")


def check_siblings(storage: Any, group: str, study_name: str | None, metadata: dict[str, Any], shown: str) -> None:
    """The other budgets' studies of this compile must be for the same model, sampler and budgets."""
    ours = {k: v for k, v in metadata.items() if k != "budget"}
    for name in optuna.get_all_study_names(storage=storage):
        if name != study_name and name.startswith(f"{group}-b"):
            recorded = optuna.load_study(study_name=name, storage=storage).user_attrs.get(METADATA_KEY) or {}
            check_metadata({k: v for k, v in recorded.items() if k != "budget"}, ours, name, shown)


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


__all__ = ["GLOBAL_PATH", "METADATA_KEY", "SEED_CANDIDATES", "SearchResult", "W_MAX", "best_trials", "candidate_of",
           "check_metadata", "run_search"]
