"""One real call of a model, taken from the code that calls it (a sampler, a pipeline).

Tracing needs a real call: the exact arguments, flags and shapes the model will see. Rather than
guess them from a model's attributes, run the caller and stop it at the model's first call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gocopt.errors import TraceError


class _Captured(Exception):
    """Raised from inside the model's first call to stop the caller there."""


def first_call(module: nn.Module, run: Callable[[], Any]) -> tuple[tuple, dict]:
    """``(args, kwargs)`` of ``module``'s first call while ``run()`` executes (stopped right there)."""
    captured: dict[str, Any] = {}

    def grab(mod, args, kwargs):
        captured["call"] = (args, kwargs)
        raise _Captured

    hook = module.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            run()
    except _Captured:
        pass
    finally:
        hook.remove()
    if "call" not in captured:
        raise TraceError(f"the caller never called {type(module).__name__}; nothing to trace")
    return captured["call"]


__all__ = ["first_call"]
