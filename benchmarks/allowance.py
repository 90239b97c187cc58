"""Set-up work allowances: how much model work a searching peer may spend before it samples, and
how it spends it, so that each head-to-head section compares rows on equal set-up work.

gocopt's compile is counted by :class:`gocopt.work.WorkMeter` in *uncached-sample equivalents*
(one uncached sample, every step, CFG rows included; a cached run counts in full, for gocopt's
search trials and the peers' alike). A section gives every peer that sets itself up (calibration,
span tables, searches, fits, composite picks) the same allowance ``work`` — the compile's own work
less held-out scoring — and each peer turns it into the knob its own code has:

========================  ==========================================================================
peer                      how it spends ``work`` (``n`` seeds each)
========================  ==========================================================================
SmoothCache, DPCache,     one calibration run of ``n = work`` samples (their error tables are means
CEM                       over calibration samples; nothing else runs)
L2P                       one uncached run of ``n = work`` seeds, the outputs its weights train on
FirstBlockCache           its threshold bisection, ``THRESHOLD_ITERATIONS`` runs of ``work / 14`` seeds
TaylorSeer (best order)   orders 1–4, each scored on ``work / 4`` seeds
LeMiCa                    end-to-end span tables on ``work / (work per seed)`` seeds
BudCache                  ``work / 400`` seeds per evaluation (its code's 200 annealing proposals and
                          as many for hill climbing), and as many evaluations as that leaves; the
                          search is cut off when the allowance is spent
composite                 every placement × forecast pair scored on ``work / pairs`` seeds,
                          on top of the placements' own set-ups (so a composite spends more than
                          the allowance: generous to it)
========================  ==========================================================================

Every count is at least the peer's minimum (one seed; eight calibration samples), so a peer whose
method cannot run on less spends its minimum, and its row shows it. Every count also stops at a
*ceiling* (``CEILINGS``): past it, a cell would no longer fit the quarter hour it is sized for. The
ceilings bind only in the generous section (thousands of samples of allowance); the row records
what the peer actually spent, so a reader sees where a ceiling held a peer back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmarks.peers.budcache import ANNEALING_ITERATIONS
from benchmarks.peers.taylorseer import ORDERS as TAYLORSEER_ORDERS

CALIBRATION_MINIMUM = 8  # gocopt's default compile calibrates on 8 samples; no peer gets fewer
CEILINGS = {"calibration": 256, "fbc_seeds": 32, "taylorseer_seeds": 64, "span_seeds": 6,
            "budcache_seeds": 4, "budcache_evaluations": 1000, "composite_seeds": 32}
THRESHOLD_ITERATIONS = 14  # FirstBlockCache's bisection over log10 thresholds in [-4, 1]


@dataclass(frozen=True)
class Allowance:
    """The set-up work (uncached-sample equivalents) every peer of one section may spend.

    ``section`` names it in the cell (``"default"``: against gocopt's default compile, made in the
    cell; ``"generous"``: against the committed ``--effort full`` schedule)."""

    section: str
    work: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.work) and self.work > 0):
            raise ValueError(f"a set-up allowance must be a positive number of samples, got {self.work!r}")

    def _seeds(self, share: float, ceiling: str, minimum: int = 1) -> int:
        return int(min(CEILINGS[ceiling], max(minimum, math.floor(share + 1e-9))))

    def calibration_samples(self) -> int:
        """Samples of the calibration run (SmoothCache, DPCache, CEM, the composites' placements) and of
        L2P's uncached outputs; their seeds also score the peers that search."""
        return self._seeds(self.work, "calibration", CALIBRATION_MINIMUM)

    def threshold_seeds(self) -> int:
        """Seeds of each of FirstBlockCache's bisection runs."""
        return self._seeds(self.work / THRESHOLD_ITERATIONS, "fbc_seeds")

    def taylorseer_seeds(self) -> int:
        """Seeds each TaylorSeer order is scored on when the best order is picked."""
        return self._seeds(self.work / len(TAYLORSEER_ORDERS), "taylorseer_seeds")

    def span_seeds(self, work_per_seed: float) -> int:
        """Seeds of LeMiCa's end-to-end span table (``work_per_seed``: one seed's table)."""
        return self._seeds(self.work / work_per_seed, "span_seeds")

    def budcache_search(self) -> tuple[int, int]:
        """(seeds per evaluation, evaluations) of BudCache's search: its 200 annealing proposals and
        as many again for climbing share the allowance, the seeds set by that, the evaluations by
        what the seeds leave."""
        seeds = self._seeds(self.work / (2 * ANNEALING_ITERATIONS), "budcache_seeds")
        return seeds, self._seeds(self.work / seeds, "budcache_evaluations")

    def composite_seeds(self, pairs: int) -> int:
        """Seeds each placement × forecast pair is scored on when the composite picks."""
        return self._seeds(self.work / pairs, "composite_seeds")

    def __str__(self) -> str:
        return f"{self.section}: {self.work:.0f} samples"


__all__ = ["Allowance", "CALIBRATION_MINIMUM", "CEILINGS", "THRESHOLD_ITERATIONS"]
