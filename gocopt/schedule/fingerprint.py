"""What a schedule was made for: a model fingerprint, recorded in the file and checked on load.

The fingerprint names the model class, hashes parameter names and shapes (another depth, width
or class count changes it), optionally hashes the weights, keeps the model's config where it
has one (so a mismatch can say *which* setting differs), and lists the cache sites with their
kinds and FLOP shares (shares, not absolute FLOPs: those scale with the example batch).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch
from torch import nn

from gocopt.errors import ScheduleError

logger = logging.getLogger(__name__)


def _config_of(model: nn.Module) -> dict[str, Any]:
    config = getattr(model, "config", None)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if isinstance(config, Mapping):
        return {k: v for k, v in json.loads(json.dumps(dict(config), default=str)).items() if not k.startswith("_")}
    return {}


LOWER_PRECISIONS = (torch.bfloat16, torch.float16)  # what a float32 schedule is also checked against


def _dtype_of(state: Mapping[str, torch.Tensor]) -> torch.dtype | None:
    floating = [t.dtype for t in state.values() if t.is_floating_point()]
    return max(set(floating), key=floating.count) if floating else None


def _weights_sha256(state: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None) -> str:
    """Hash of every tensor's bytes, floating ones cast to ``dtype`` first (``None``: as they are)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        digest.update(name.encode())
        digest.update(tensor.contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def model_fingerprint(model: nn.Module, sites: pd.DataFrame, *, weights: bool = True) -> dict[str, Any]:
    """What ``model`` is. A float32 model's weights are also hashed as bfloat16 and float16, so a
    schedule made in float32 loads on a half-precision copy of the same weights — and not on others."""
    state = model.state_dict()
    shapes = "\n".join(f"{name}:{list(t.shape)}" for name, t in sorted(state.items()))
    dtype = _dtype_of(state)
    fingerprint: dict[str, Any] = {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "num_parameters": int(sum(t.numel() for t in state.values())),
        "parameters_sha256": hashlib.sha256(shapes.encode()).hexdigest(),
        "config": _config_of(model),
        "sites": [
            {"id": str(row.site), "kind": str(row.kind), "block": int(row.block),
             "flops_share": round(float(row.flops_share), 6)}
            for row in sites.itertuples()
        ],
    }
    if dtype is not None:
        fingerprint["dtype"] = str(dtype).removeprefix("torch.")
    if weights:
        fingerprint["weights_sha256"] = _weights_sha256(state)
        if dtype == torch.float32:
            fingerprint["weights_sha256_as"] = {str(d).removeprefix("torch."): _weights_sha256(state, d)
                                                for d in LOWER_PRECISIONS}
    return fingerprint


def check_fingerprint(recorded: Mapping[str, Any], found: Mapping[str, Any], *, check_weights: bool = True) -> None:
    """Raise a ``ScheduleError`` naming the first field where ``found`` differs from ``recorded``."""
    fix = "re-run gocopt.compile for this model (the schedule was made for another one)"
    if recorded["class"] != found["class"]:
        raise ScheduleError(f"model.class: schedule was made for {recorded['class']}, this model is "
                            f"{found['class']}; {fix}")
    if recorded["parameters_sha256"] != found["parameters_sha256"]:
        differences = [f"{k}: expected {recorded['config'].get(k)!r}, found {found['config'].get(k)!r}"
                       for k in sorted(set(recorded.get("config", {})) | set(found.get("config", {})))
                       if recorded.get("config", {}).get(k) != found.get("config", {}).get(k)]
        detail = "; ".join(differences[:4]) or (f"{recorded['num_parameters']} vs {found['num_parameters']} parameters")
        raise ScheduleError(f"model.parameters_sha256: parameter names or shapes differ ({detail}); {fix}")
    rec_sites, found_sites = recorded["sites"], found["sites"]
    if len(rec_sites) != len(found_sites):
        raise ScheduleError(f"model.sites: schedule has {len(rec_sites)} sites, the model {len(found_sites)}; {fix}")
    for i, (a, b) in enumerate(zip(rec_sites, found_sites)):
        if (a["id"], a["kind"]) != (b["id"], b["kind"]):
            raise ScheduleError(f"model.sites[{i}]: expected {a['id']} ({a['kind']}), found {b['id']} "
                                f"({b['kind']}); {fix}")
        if not math.isclose(a["flops_share"], b["flops_share"], rel_tol=1e-2, abs_tol=1e-5):
            raise ScheduleError(f"model.sites[{i}].flops_share: expected {a['flops_share']}, found {b['flops_share']} "
                                f"(another input resolution?); {fix}")
    if not (check_weights and "weights_sha256" in recorded and "weights_sha256" in found):
        return
    made_in, runs_in = recorded.get("dtype", "float32"), found.get("dtype", "float32")
    expected = recorded["weights_sha256"] if made_in == runs_in else recorded.get("weights_sha256_as", {}).get(runs_in)
    if expected is None:
        logger.warning("schedule made for %s weights, model is %s: the weights were not compared (the schedule "
                       "records no %s hash); names, shapes and sites match", made_in, runs_in, runs_in)
        return
    if expected != found["weights_sha256"]:
        raise ScheduleError(f"model.weights_sha256: same architecture, different weights (compared as {runs_in}); the "
                            f"schedule's quality was measured on other weights: {fix}, or load with "
                            "check_weights=False to accept it")
