"""CEM-style placement (ICLR 2026, arXiv 2512.23258), as its code computes it.

CEM measures, once, a 2-D prior by sampling: ``err[C][t]``, the error of serving step ``t`` from
the values computed at step ``C`` (plain reuse). A path of compute steps then costs the sum, over
its reuse spans, of the prior along each span — cumulative sums of ``err[C]`` make each span one
subtraction. Its search is a dynamic programme with two constraints of its own: the first and
the last step are always computed, and every gap between computes stays within ``round(T / Ns) ± 1``
(``T`` steps, ``Ns`` computes), so the computes are near-evenly spread and the prior only moves
them by a step or so.

The prior here is measured on the calibration runs every peer shares: the relative squared
feature error of plain reuse, summed over sites, ``Σ_i ‖F_i[t] − F_i[C]‖² / ‖F_i[t]‖²``, from
calibration's Gram matrices — no model work beyond that run.

The arithmetic lives in :mod:`gocopt.search.calibrated_path`, where gocopt's search can place
a path by the same rule; ``tests/test_benchmarks.py`` pins it to the paper's formula.
"""

from __future__ import annotations

from gocopt.search.calibrated_path import even_gap_range as cem_gap_range
from gocopt.search.calibrated_path import least_prior_path as cem_path
from gocopt.search.calibrated_path import reuse_prior as cem_prior

__all__ = ["cem_gap_range", "cem_path", "cem_prior"]
