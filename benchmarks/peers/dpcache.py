"""DPCache-style placement (CVPR 2026, arXiv 2602.22654); CEM, the other DP peer, is rebuilt as its
code computes it in :mod:`benchmarks.peers.cem`.

DPCache places whole-model compute steps by dynamic programming over an error table measured once
on a small calibration set, for any number of computes, and forecasts the skipped steps with
TaylorSeer. What sets it apart from LeMiCa's graph is that the cost is *path-aware*: a
skipped step's error depends on which computes the forecast is made from, so the table is a
tensor over (compute before last, last compute, next compute) and the DP state is the last two
computes. That is exact for TaylorSeer's first-order forecast, which reads exactly those two.
"Style": this is the method as its paper states it, not a port of its code.

The table here is the forecast's relative squared feature error on the calibration runs,
``Σ_sites ‖F[s] − F̂[s]‖² / ‖F[s]‖²`` summed over the skipped steps, computed from calibration's
Gram matrices — no model work beyond the calibration run every method shares.

The arithmetic lives in :mod:`gocopt.search.calibrated_path`, where gocopt's search can place
a path by the same rule; ``tests/test_benchmarks.py`` pins it against brute force.
"""

from __future__ import annotations

from gocopt.search.calibrated_path import least_forecast_path as dp_path
from gocopt.search.calibrated_path import taylor_forecast_errors as forecast_errors

__all__ = ["dp_path", "forecast_errors"]

