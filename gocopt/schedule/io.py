"""The schedule file: a versioned JSON document that users commit and load at deploy time.

* ``save_schedule`` writes atomically, with stable key order and one mask string per step, so a
  ``git diff`` of two schedules reads as which steps changed.
* ``load_schedule`` accepts only a well-formed document of a format version it knows; anything
  else — not JSON, truncated, wrong types, wrong shapes, a cost above the recorded budget, a
  newer format — is one ``ScheduleError`` that names the field and says what to do.

Format history: version 1 stored GOC's parameters (``goc``); version 2 stores any predictor
(``predictor``: ``goc``, ``taylor`` or ``fitted`` with its coefficients) and the inflection points
at the top level. Version-1 files still load, as GOC schedules.

``created`` and the compile's wall-clock seconds (``work``) are the fields that change between two
runs with the same inputs; set ``SOURCE_DATE_EPOCH`` (the reproducible-builds convention) to pin
the first and leave the seconds out (the model work itself is deterministic and stays).
"""

from __future__ import annotations

import json
import math
import os
import time
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from gocopt.atomic import atomic_write_text
from gocopt.errors import ScheduleError
from gocopt.schedule import predictors
from gocopt.schedule.schedule import Schedule

FORMAT = "gocopt-schedule"
FORMAT_VERSION = 2
MASK_LEGEND = "one string per sampling step, one character per site (model.sites order): 1 = compute, 0 = reuse"
_PROVENANCE_SECTIONS = ("calibration", "quality", "search", "work")
_SAMPLED_SECTIONS = ("budget", "cost", "model", "sampler", "predictor", "goc")  # what sampling depends on


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The JSON Schema of the schedule file (versions 1 and 2), shipped in the package."""
    return json.loads(resources.files("gocopt.schedule").joinpath("schema.json").read_text())


def _created() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch) if epoch else None))


def to_document(schedule: Schedule) -> dict[str, Any]:
    """The JSON document of ``schedule``; it must know its model and sampler."""
    if schedule.fingerprint is None or schedule.timesteps is None or schedule.guidance is None:
        raise ScheduleError("only a schedule made for a model and a sampler can be saved (fingerprint, timesteps and "
                            "guidance are missing); make it with gocopt.compile")
    from gocopt import __version__

    shares = np.array([s["flops_share"] for s in schedule.fingerprint["sites"]])
    sampler: dict[str, Any] = {"name": "unknown", **dict(schedule.sampler or {}), "steps": schedule.steps,
                               "timesteps": list(schedule.timesteps or ()), "guidance": schedule.guidance}
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "gocopt_version": __version__,
        "created": schedule.provenance.get("created") or _created(),
        "name": schedule.name,
        "budget": schedule.budget,
        "cost": round(float((schedule.mask * shares).sum() / (schedule.steps * shares.sum())), 6),
        "model": dict(schedule.fingerprint),
        "sampler": sampler,
        "mask": {"legend": MASK_LEGEND, "rows": ["".join("1" if c else "0" for c in row) for row in schedule.mask]},
        "predictor": schedule.predictor.to_json(),
        "inflection_points": list(schedule.provenance.get("inflection_points", [])),
    }
    for section in _PROVENANCE_SECTIONS:
        if section in schedule.provenance:
            document[section] = schedule.provenance[section]
    if "work" in document and os.environ.get("SOURCE_DATE_EPOCH"):  # reproducible files: no wall-clock seconds
        document["work"] = _without_seconds(document["work"])
    return document


def _without_seconds(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_seconds(v) for k, v in value.items() if k != "seconds"}
    return value


def save_schedule(schedule: Schedule, path: str | Path) -> Path:
    """Write ``schedule`` to ``path`` atomically (the old file survives any failure)."""
    text = json.dumps(to_document(schedule), indent=2, sort_keys=True, default=float) + "\n"
    from_document(json.loads(text))  # never write a file that would not load
    atomic_write_text(path, text)
    return Path(path)


def load_schedule(path: str | Path) -> Schedule:
    """Read and validate a schedule file (see the module docstring for what is refused)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ScheduleError(f"cannot read schedule file {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ScheduleError(f"schedule file {path} is not UTF-8 text; is it a schedule?") from e
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise ScheduleError(f"schedule file {path} is not valid JSON ({e.msg} at line {e.lineno}); truncated or "
                            "edited by hand? restore it from git or re-run gocopt.compile") from e
    return from_document(document, source=str(path))


def from_document(document: Any, source: str = "<document>") -> Schedule:
    try:
        return _from_document(document, source)
    except ScheduleError:
        raise
    except Exception as e:  # noqa: BLE001 - any other failure is still a bad file
        raise ScheduleError(f"{source}: malformed schedule ({type(e).__name__}: {e})") from e


def _from_document(document: Any, source: str) -> Schedule:
    if not isinstance(document, dict):
        raise ScheduleError(f"{source}: a schedule is a JSON object, found {type(document).__name__}")
    if document.get("format") != FORMAT:
        raise ScheduleError(f"{source}: format is {document.get('format')!r}, expected {FORMAT!r}; "
                            "not a gocopt schedule")
    version = document.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise ScheduleError(f"{source}: format_version {version} is newer than this gocopt reads ({FORMAT_VERSION}); "
                            "upgrade gocopt")
    _validate_schema(document, source)
    for section in _SAMPLED_SECTIONS:  # JSON's NaN and Infinity pass any schema "number"
        _refuse_non_finite(document.get(section), section, source)
    sampler, model = document["sampler"], document["model"]
    rows, sites, steps = document["mask"]["rows"], model["sites"], sampler["steps"]
    if len(rows) != steps:
        raise ScheduleError(f"{source}: mask has {len(rows)} rows but sampler.steps is {steps}")
    if len(sampler["timesteps"]) != steps:
        raise ScheduleError(f"{source}: sampler.timesteps has {len(sampler['timesteps'])} entries but "
                            f"sampler.steps is {steps}")
    bad = next((i for i, r in enumerate(rows) if len(r) != len(sites)), None)
    if bad is not None:
        raise ScheduleError(f"{source}: mask row {bad} has {len(rows[bad])} characters but the model has "
                            f"{len(sites)} sites")
    mask = np.array([[c == "1" for c in row] for row in rows], dtype=bool)
    shares = np.array([s["flops_share"] for s in sites], dtype=np.float64)
    if shares.sum() <= 0:
        raise ScheduleError(f"{source}: model.sites flops_share values sum to zero")
    cost = float((mask * shares).sum() / (steps * shares.sum()))
    if abs(cost - document["cost"]) > 1e-4:
        raise ScheduleError(f"{source}: recorded cost {document['cost']} does not match the mask's cost {cost:.6f}; "
                            "the mask was edited; re-run gocopt.compile")
    budget = document.get("budget")
    if budget is not None and cost > budget + 1e-9:
        raise ScheduleError(f"{source}: cost {cost:.4f} is above the recorded budget {budget}; the file was edited or "
                            "corrupted; re-run gocopt.compile")
    section = "goc" if version == 1 else "predictor"  # version 1: GOC's parameters, inflection points inside them
    try:
        predictor = predictors.from_json({"kind": "goc", **document["goc"]} if version == 1 else document["predictor"])
    except ScheduleError as e:
        raise ScheduleError(f"{source}: field {section}: {e}") from e
    inflections = (document["goc"] if version == 1 else document).get("inflection_points", [])
    provenance = {k: document[k] for k in _PROVENANCE_SECTIONS if k in document}
    provenance.update(created=document["created"], gocopt_version=document["gocopt_version"],
                      inflection_points=list(inflections))
    return Schedule(
        mask=mask,
        site_ids=tuple(s["id"] for s in sites),
        timesteps=tuple(sampler["timesteps"]),
        predictor=predictor,
        name=document["name"],
        guidance=sampler["guidance"],
        sampler={k: v for k, v in sampler.items() if k not in ("steps", "timesteps", "guidance")},
        fingerprint=model,
        budget=budget,
        provenance=provenance,
    )


def _refuse_non_finite(value: Any, field: str, source: str) -> None:
    """A NaN or infinity anywhere in a section that decides what is sampled, named by its path."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ScheduleError(f"{source}: field {field}: {value!r} is not a finite number; the file is damaged or was "
                            "edited by hand — restore it from git or re-run gocopt.compile")
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_non_finite(item, f"{field}.{key}", source)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_non_finite(item, f"{field}[{index}]", source)


def _validate_schema(document: dict, source: str) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    error = next(iter(sorted(validator.iter_errors(document), key=lambda e: list(e.path))), None)
    if error is not None:
        field = ".".join(str(p) for p in error.absolute_path) or "<root>"
        raise ScheduleError(f"{source}: field {field}: {error.message}; the file is damaged or was edited by hand — "
                            "restore it from git or re-run gocopt.compile")
