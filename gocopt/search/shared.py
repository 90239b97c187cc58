"""What a study's workers share: calibration and the span table, measured once, kept in the storage.

Every worker of a distributed compile needs the same calibration (statistics, trajectory Gram,
the uncached search samples) and the same span table before its first trial: they are made from
the same seeds. The first process to arrive measures them and stores them with the study (a
sibling study ``{group}-measurements`` holding only user attributes, next to one study per
budget); everyone else — a joining worker, a resumed leader — loads them and starts its trials at
once. The record says what it was made for (model, sampler, seeds, span settings) and is refused,
like a study, when that differs. Without a storage (``None``) nothing is shared: measure, return.
"""

from __future__ import annotations

import base64
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd
import torch

from gocopt.calibrate import Calibration
from gocopt.search.path import EdgeTable
from gocopt.search.storage import get_storage, shown_url, storage_errors
from gocopt.search.study import METADATA_KEY, check_metadata

logger = logging.getLogger(__name__)
SUFFIX = "-measurements"
PARTS = ("stats", "samples", "labels", "seeds", "gram", "edges")
WAIT = 1800.0  # seconds a worker waits for the measuring process before it measures itself


@dataclass
class Measurements:
    calibration: Calibration
    edges: EdgeTable


def shared_measurements(storage: Any, group: str, metadata: dict[str, Any],
                        measure: Callable[[], Measurements], *, wait: float = WAIT) -> Measurements:
    """The measurements for ``group`` from ``storage``, or ``measure()``'s (stored there for the
    others) when none are stored yet."""
    if storage is None:
        return measure()
    shown = shown_url(storage)
    backend = get_storage(storage, heartbeat=None)
    name = f"{group}{SUFFIX}"
    try:
        with storage_errors(storage, "was lost while sharing the calibration"):
            try:
                record = optuna.create_study(storage=backend, study_name=name)
                record.set_user_attr(METADATA_KEY, metadata)
            except optuna.exceptions.DuplicatedStudyError:
                record = optuna.load_study(study_name=name, storage=backend)
                recorded = _wait_for(record, METADATA_KEY, 10.0)
                check_metadata(recorded or {}, metadata, name, shown)
                if _wait_for(record, "edges", wait) is not None:
                    logger.info("calibration and span table loaded from study %r in %s: nothing measured", name,
                                shown)
                    return _load(record.user_attrs)
                logger.warning("no measurements appeared in study %r after %.0f s; measuring here", name, wait)
            measurements = measure()
            for part, value in _dump(measurements).items():  # edges last: its presence says the record is whole
                record.set_user_attr(part, value)
            return measurements
    finally:
        engine = getattr(backend, "engine", None)
        if isinstance(storage, str) and engine is not None:  # ours to close; a storage object is the caller's
            engine.dispose()


def _wait_for(record: optuna.Study, key: str, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = record.user_attrs.get(key)
        if value is not None or time.monotonic() > deadline:
            return value
        time.sleep(1.0)


def _array(value: np.ndarray) -> str:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(value), allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _unarray(text: str) -> np.ndarray:
    return np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False)


def _dump(m: Measurements) -> dict[str, Any]:
    calibration = m.calibration
    return {
        "stats": {column: _array(values.to_numpy()) if pd.api.types.is_numeric_dtype(values) else values.tolist()
                  for column, values in calibration.stats.items()},  # bit for bit: a resumed study decides alike
        "samples": _array(calibration.samples.numpy()),
        "labels": [int(v) for v in calibration.labels],
        "seeds": [int(s) for s in calibration.seeds],
        "gram": None if calibration.gram is None else _array(calibration.gram),
        "edges": {"steps": m.edges.steps, "max_gap": m.edges.max_gap,
                  "error": [[c, d, e] for (c, d), e in sorted(m.edges.error.items())]},
    }


def _load(attrs: dict[str, Any]) -> Measurements:
    stats = pd.DataFrame({column: _unarray(values) if isinstance(values, str) else values
                          for column, values in attrs["stats"].items()})
    calibration = Calibration(stats, torch.from_numpy(_unarray(attrs["samples"])), torch.tensor(attrs["labels"]),
                              tuple(attrs["seeds"]), None if attrs["gram"] is None else _unarray(attrs["gram"]))
    edges = attrs["edges"]
    table = EdgeTable(edges["steps"], edges["max_gap"], {(int(c), int(d)): float(e) for c, d, e in edges["error"]})
    return Measurements(calibration, table)


__all__ = ["Measurements", "SUFFIX", "shared_measurements"]
