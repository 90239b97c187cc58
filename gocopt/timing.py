"""One way to time a run, for the library and every benchmark: synchronised around the call.

On a GPU, work is queued: without a synchronisation before and after, a timer measures how fast
Python enqueues kernels, not how fast they run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait for every queued kernel on ``device`` (a no-op on CPU)."""
    device = torch.device(device) if device is not None else None
    if (device is None or device.type == "cuda") and torch.cuda.is_available():
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], T], device: torch.device | str | None = None) -> tuple[T, float]:
    """``fn()`` and the seconds it took, synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return result, time.perf_counter() - start


def summary(seconds: list[float]) -> dict[str, float]:
    """Best and median of repeated timings (best: least disturbed; median: typical)."""
    return {"best_s": min(seconds), "median_s": statistics.median(seconds), "rounds": len(seconds)}
