"""The search's last choice: of its best few trials, the one best over the search and held-out seeds.

A default compile scores each trial on eight search seeds, which judge two schedules to about
±1.2 dB paired, while most of its trials differ by less (docs/benchmarks/selection.md). The kept
trial is then partly chance, and the rest of the compile cannot undo it. The held-out seeds are
sampled uncached anyway, for the result's report; scoring the runners-up there too and keeping the
best over both seed sets pooled judges the last and most consequential comparison on twice the
seeds, for one trial's work per runner-up (``Effort.finalists``, planned by
:func:`gocopt.search.effort.plan_work`). The kept schedule's held-out score then helped choose it,
so with several finalists it is slightly optimistic; the record lists every finalist's scores.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gocopt.errors import NumericalError
from gocopt.schedule.schedule import Schedule
from gocopt.search.space import Candidate

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finalist:
    """One of the search's best trials, scored on both seed sets."""

    candidate: Candidate
    schedule: Schedule
    search_psnr: float  # mean on the search seeds, as the trial scored it
    heldout: dict[str, Any]  # the held-out check's record (mean PSNR with its standard error, ...)
    pooled_psnr: float  # the mean over both seed sets together: what the choice compares

    def to_record(self) -> dict[str, Any]:
        return {"params": self.candidate.as_params(), "search_psnr": self.search_psnr,
                "heldout_psnr": self.heldout["psnr_vs_uncached"], "pooled_psnr": self.pooled_psnr}


def choose_finalist(ranked: Sequence[tuple[Candidate, float]], make_schedule: Callable[[Candidate], Schedule],
                    score_heldout: Callable[[Schedule], dict[str, Any]],
                    search_samples: int) -> tuple[Finalist, list[Finalist]]:
    """The finalist with the best mean PSNR over the search and held-out seeds pooled (of equals,
    the search's better), and every finalist scored.

    ``ranked``: the search's best trials as (candidate, mean PSNR on the ``search_samples`` search
    seeds), best first (:func:`gocopt.search.study.best_trials`); with one, it is kept whatever its
    held-out score. ``score_heldout`` scores a schedule on the held-out seeds (its record's
    ``samples`` seeds); where a runner-up's samples diverge there (:class:`NumericalError`), it is
    left out with a warning, and the error is raised only when every finalist diverges."""
    finalists: list[Finalist] = []
    errors: list[NumericalError] = []
    for candidate, search_psnr in ranked:
        schedule = make_schedule(candidate)
        try:
            heldout = score_heldout(schedule)
        except NumericalError as error:
            if len(ranked) == 1:
                raise
            logger.warning("finalist %s left out: %s", candidate, error)
            errors.append(error)
            continue
        seeds = heldout["samples"]
        pooled = (search_psnr * search_samples + heldout["psnr_vs_uncached"] * seeds) / (search_samples + seeds)
        finalists.append(Finalist(candidate, schedule, search_psnr, heldout, pooled))
    if not finalists:
        raise errors[0]
    kept = max(finalists, key=lambda f: f.pooled_psnr)  # max keeps the first of equals: the search's order
    if len(finalists) > 1:
        logger.info("finalists (search / held-out / pooled dB): %s; kept #%d",
                    "; ".join(f"{f.search_psnr:.2f} / {f.heldout['psnr_vs_uncached']:.2f} / {f.pooled_psnr:.2f}"
                              for f in finalists), finalists.index(kept) + 1)
    return kept, finalists


__all__ = ["Finalist", "choose_finalist"]
