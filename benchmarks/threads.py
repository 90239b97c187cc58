"""How many torch threads a benchmark takes: two (the machines these benchmarks are measured on), or
``GOCOPT_BENCH_THREADS``.

The test suite runs benchmarks on pytest-xdist workers that have a core each, and sets the variable to
one there: a benchmark that took two threads beside another worker would oversubscribe the cores, which
slows torch several-fold."""

from __future__ import annotations

import os

DEFAULT_THREADS = 2


def bench_threads() -> int:
    """The thread count a benchmark uses unless told otherwise (``--threads``)."""
    return int(os.environ.get("GOCOPT_BENCH_THREADS", DEFAULT_THREADS))


__all__ = ["DEFAULT_THREADS", "bench_threads"]
