"""gocopt: budgeted cache schedules and a torch.fx cache pass for Diffusion Transformers.

Public names load lazily, so ``import gocopt`` stays cheap (no pandas, optuna or model code).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "compile": "gocopt.api",
    "load": "gocopt.api",
    "join_study": "gocopt.api",
    "compile_pipeline": "gocopt.api",
    "join_pipeline_study": "gocopt.api",
    "load_pipeline": "gocopt.api",
    "default_sampler": "gocopt.api",
    "Effort": "gocopt.search.effort",
    "StudyConfig": "gocopt.search.study_config",
    "DiTSpec": "gocopt.models.convention",
    "CompiledBudgets": "gocopt.compiled_budgets",
    "DDIMSampler": "gocopt.sampling",
    "remove": "gocopt.integrations.diffusers",
    "load_schedule": "gocopt.schedule.io",
    "save_schedule": "gocopt.schedule.io",
    "cache_model": "gocopt.compiled",
    "CachedModel": "gocopt.compiled",
    "find_sites": "gocopt.trace.sites",
    "Schedule": "gocopt.schedule.schedule",
    "named_schedule": "gocopt.schedule.named",
    "GOCConfig": "gocopt.schedule.goc",
    "GocoptError": "gocopt.errors",
    "ScheduleError": "gocopt.errors",
    "TraceError": "gocopt.errors",
    "PassError": "gocopt.errors",
    "ArgumentError": "gocopt.errors",
    "models": "gocopt.models",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'gocopt' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if name == "models" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
