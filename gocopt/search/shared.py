"""What a study's workers share: calibration and the span table, measured once, kept in the storage.

Every worker of a distributed compile needs the same calibration (statistics, trajectory Gram,
the uncached search samples) and the same span table before its first trial: they are made from
the same seeds. The first process to arrive measures them and stores them with the study (a
sibling study ``{group}-measurements`` holding only user attributes, next to one study per
budget); everyone else — a joining worker, a resumed leader — loads them and starts its trials at
once. The record says what it was made for (model, sampler, seeds, span settings) and is refused,
like a study, when that differs. Without a storage (``None``) nothing is shared: measure, return.

A record is plain data (``Calibration.to_record()``, ``EdgeTable.to_record()``); numpy arrays in it
travel as ``.npy`` bytes, so what a worker loads equals what was measured bit for bit and a resumed
study decides exactly as an uninterrupted one.
"""

from __future__ import annotations

import base64
import io
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna

from gocopt.search.storage import get_storage, shown_url, storage_errors
from gocopt.search.study import METADATA_KEY, check_metadata

logger = logging.getLogger(__name__)
SUFFIX = "-measurements"
COMPLETE = "complete"  # written last: its presence says the record is whole
WAIT = 1800.0  # seconds a worker waits for the measuring process before it measures itself

Record = dict[str, Any]


def shared_record(storage: Any, group: str, metadata: dict[str, Any], measure: Callable[[], Record], *,
                  wait: float = WAIT) -> Record:
    """The record for ``group`` from ``storage``, or ``measure()``'s (stored there for the others)
    when none is stored yet."""
    if storage is None:
        return measure()
    shown = shown_url(storage)
    backend = get_storage(storage, heartbeat=None)
    name = f"{group}{SUFFIX}"
    try:
        with storage_errors(storage, "was lost while sharing the calibration"):
            try:
                holder = optuna.create_study(storage=backend, study_name=name)
                holder.set_user_attr(METADATA_KEY, metadata)
            except optuna.exceptions.DuplicatedStudyError:
                holder = optuna.load_study(study_name=name, storage=backend)
                check_metadata(_wait_for(holder, METADATA_KEY, 10.0) or {}, metadata, name, shown)
                if _wait_for(holder, COMPLETE, wait):
                    logger.info("calibration and span table loaded from study %r in %s: nothing measured", name,
                                shown)
                    return {key: _decode(value) for key, value in holder.user_attrs.items()
                            if key not in (METADATA_KEY, COMPLETE)}
                logger.warning("no measurements appeared in study %r after %.0f s; measuring here", name, wait)
            record = measure()
            for key, value in record.items():
                holder.set_user_attr(key, _encode(value))
            holder.set_user_attr(COMPLETE, True)
            return record
    finally:
        engine = getattr(backend, "engine", None)
        if isinstance(storage, str) and engine is not None:  # ours to close; a storage object is the caller's
            engine.dispose()


def _wait_for(holder: optuna.Study, key: str, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = holder.user_attrs.get(key)
        if value is not None or time.monotonic() > deadline:
            return value
        time.sleep(1.0)


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(value), allow_pickle=False)
        return {"npy": base64.b64encode(buffer.getvalue()).decode("ascii")}
    if isinstance(value, dict):
        return {key: _encode(v) for key, v in value.items()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"npy"}:
            return np.load(io.BytesIO(base64.b64decode(value["npy"])), allow_pickle=False)
        return {key: _decode(v) for key, v in value.items()}
    return value


__all__ = ["SUFFIX", "shared_record"]
