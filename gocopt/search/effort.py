"""How much model work a compile spends, phase by phase, planned before any of it is done.

Our users' models take from half a second to ten seconds per image, so a compile is priced in
*uncached-sample equivalents* (image-steps ÷ steps, :mod:`gocopt.work`) and planned up front:
:class:`Effort` says how many samples each phase may use, :func:`plan_work` turns it into the work
of every phase for a given sampler and set of budgets — exactly what the meter will count — and
sizes the search to what is left of ``max_samples``. A cap that cannot pay for the phases every
compile needs is refused before anything runs, with the least cap that works.

Where the work goes at the defaults (one budget, DDIM-20): the calibration run on 8 samples (also
the search's inputs and reference), the span table on 3 of them (:mod:`gocopt.search.spans`,
``lookahead``), a surrogate study that ranks candidates with no model work at all
(:mod:`gocopt.search.surrogate`), its best few scored on the 8 samples, and the held-out check
(8 samples, uncached and cached). :meth:`Effort.full` is the setting before costs were counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from gocopt.errors import ScheduleError
from gocopt.search.graphs import DEFAULT_MAX_GRAPHS, check_max_graphs
from gocopt.search.space import Candidate
from gocopt.search.spans import SPAN_METHODS, SPAN_SEEDS, span_image_steps
from gocopt.search.study import ALWAYS_SAMPLED, SEED_CANDIDATES

MIN_TRIALS = 2  # with a surrogate: its best two, sampled; without one, the study's enqueued seed candidates
TRACING_IMAGE_STEPS = 2  # the sampler's first call, captured, and the traced model run on it (at most)
DEFAULT_MAX_SAMPLES, EXTRA_BUDGET_SAMPLES = 100, 50  # the default cap: 100 for one budget, +50 per extra budget

# Sampled whatever the surrogate ranks them: the global path with the fitted K=3 forecast and with the
# whole-history shared one, and FORA's mask with Taylor 1st (against the global path alone: +0.33 to
# +3.19 dB in 7 of 12 cells on every model, worse in none); and the whole model computed where DPCache's
# forecast table places it, with the shared forecast, paid for by held-out scoring on 6 seeds instead
# of 8. Measured on three models that differ in kind, DDIM-20 and 50, four budgets, 128 design seeds
# (docs/benchmarks/levers.md): +0.74 to +4.03 dB in 6 of 24 cells, all three models better on the mean of
# their cells (reference +0.25, latent +0.81, patch1 +0.32 dB), worse in one cell (latent DDIM-50/0.75,
# -0.93 ± 0.27, where it led on the 8 search and 8 held-out seeds alike: docs/benchmarks/selection.md).
DEFAULT_ALWAYS_SAMPLED = ("global-path", "path-shared", "interval-taylor1", "forecast-path-shared")


@dataclass(frozen=True)
class Effort:
    """What a compile spends: samples per phase, trials, the cap on model work, the graph limit.

    ``Effort()`` is the cheap default (≤ 100 uncached-sample equivalents for one budget);
    ``Effort.full()`` the settings of gocopt 0.1. Every field is checked when the object is made, so
    a bad value is refused before any work, naming the field.

    Attributes:
        search_samples: the calibration run's samples (uncached), which are also the inputs and the
            reference the search scores candidates on.
        span_seeds: of those, the ones the span table is measured on.
        span_method: ``"lookahead"`` or ``"end-to-end"`` (:func:`gocopt.search.spans.measure_spans`).
        damping_seeds: of the span seeds, the ones ``lookahead`` measures its damping on (spans run
            to the end).
        surrogate_trials: candidates per budget ranked by the surrogate (no model work); its best
            distinct schedules are the search's first trials. 0: no surrogate (the study starts from
            ``SEED_CANDIDATES`` and TPE on sampled scores).
        trials: sampled trials per budget, each on all ``search_samples``; ``None``: as many as
            ``max_samples`` pays for.
        heldout_samples: other seeds the result is scored on (uncached and cached), with its standard error.
        finalists: the best this many trials (by their mean on the search seeds) are also scored on the
            held-out seeds, and the one best over both seed sets together is kept; each finalist past
            the first costs ``heldout_samples`` samples' work, one trial's. 1: the search's best, kept
            on its own seeds' word. The held-out score then helped choose, so it is slightly optimistic.
        baselines: also score FORA + GOC (paper) and the L2C-like schedule on the held-out seeds.
        always_sample: with a surrogate, the candidates (``ALWAYS_SAMPLED`` names) sampled among the
            trials whatever the surrogate ranks them: its blind spots, where only sampling can tell.
            ``None``: ``DEFAULT_ALWAYS_SAMPLED`` with a surrogate, none without one (a search without
            a surrogate starts from ``SEED_CANDIDATES``).
        max_samples: the cap on the whole compile's model work, in uncached-sample equivalents
            (held-out scoring included); the search runs as many trials as the rest pays for.
            ``None``: 100 for one budget and 50 more per extra budget, or no cap when ``trials`` is set.
        max_graphs: at most this many distinct step graphs per schedule (each one ``torch.compile``
            compilation and, with CUDA graphs, one captured set); ``None``: no limit.
        seed: picks the search and held-out seed sets and the search's own draws; the same seed and
            inputs give the same schedule file.
    """

    search_samples: int = 8
    span_seeds: int = 3  # 2 proved fragile: one cell moved 4.6 dB between two measurements (issue #20 note)
    span_method: str = "lookahead"
    damping_seeds: int = 3  # of the span seeds (all of them by default)
    surrogate_trials: int = 1000
    trials: int | None = None
    heldout_samples: int = 6  # 16 bought a report's number, not a better schedule; 10 fewer pay two trials (#34)
    finalists: int = 1
    baselines: bool = False
    always_sample: tuple[str, ...] | None = None
    max_samples: float | None = None
    max_graphs: int | None = DEFAULT_MAX_GRAPHS
    seed: int = 0

    @classmethod
    def full(cls) -> Effort:
        """The settings before compile costs were counted (gocopt 0.1): 40 trials on 64 samples each,
        the span table end to end on 8, 256 held-out samples with both baselines."""
        return cls(search_samples=64, span_seeds=SPAN_SEEDS, span_method="end-to-end", surrogate_trials=0, trials=40,
                   heldout_samples=256, baselines=True)

    @classmethod
    def for_pipeline(cls) -> Effort:
        """A diffusers pipeline's default: its scheduler cannot restart a run midway, so spans run
        whole (each seed costs 1.5× what the lookahead table costs a DiT); 16 search samples, the
        span table on 2 of them, 8 held-out (the 2 fewer that pay for DPCache's placement in a DiT's
        compile were measured with gocopt's DDIM only; here it takes a place among the trials)."""
        return cls(search_samples=16, span_seeds=2, heldout_samples=8)

    def __post_init__(self) -> None:
        for name in ("search_samples", "span_seeds", "damping_seeds", "heldout_samples", "finalists"):
            if getattr(self, name) < 1:
                raise ScheduleError(f"Effort.{name}={getattr(self, name)}: must be at least 1")
        if self.always_sample is None:  # resolved here, so the repr and equality show what will run
            object.__setattr__(self, "always_sample", self._default_always)
        if self.span_method not in SPAN_METHODS:
            raise ScheduleError(f"Effort.span_method={self.span_method!r}; expected one of {SPAN_METHODS}")
        unknown = [name for name in self.always_names if name not in ALWAYS_SAMPLED]
        if unknown:
            raise ScheduleError(f"Effort.always_sample names {unknown}; expected names from {tuple(ALWAYS_SAMPLED)}")
        unseeded = [name for name in self.always_names if ALWAYS_SAMPLED[name] not in SEED_CANDIDATES]
        if not self.surrogate_trials and unseeded:  # without a surrogate the study starts from SEED_CANDIDATES
            raise ScheduleError(f"Effort.always_sample names {unseeded}, which only a surrogate-led search samples, "
                                "but surrogate_trials=0; give surrogate_trials > 0 or leave them out")
        if self.surrogate_trials < 0 or (self.trials is not None and self.trials < 1):
            raise ScheduleError("Effort.surrogate_trials must be >= 0 and Effort.trials >= 1 (or None)")
        if self.trials is not None and self.finalists > self.trials:
            raise ScheduleError(f"Effort.finalists={self.finalists} > Effort.trials={self.trials}: the finalists are "
                                "trials; give at most as many finalists as trials")
        check_max_samples(self.max_samples)
        check_max_graphs(self.max_graphs)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ScheduleError(f"Effort.seed={self.seed!r}: give a non-negative integer")

    @property
    def fewest_trials(self) -> int:
        """The least search that still means something: the surrogate's best two, or every
        enqueued seed candidate without a surrogate."""
        return MIN_TRIALS if self.surrogate_trials else len(SEED_CANDIDATES)

    def with_overrides(self, **fields: Any) -> Effort:
        """This effort with the given fields replaced (``None`` values ignored). An ``always_sample``
        left at its default follows a new ``surrogate_trials`` (none without a surrogate), where
        ``dataclasses.replace`` would keep candidates a search without one cannot sample."""
        given = {k: v for k, v in fields.items() if v is not None}
        if "surrogate_trials" in given and "always_sample" not in given and self.always_sample == self._default_always:
            given["always_sample"] = None
        return replace(self, **given)

    @property
    def always_names(self) -> tuple[str, ...]:
        """``always_sample`` as resolved when the effort was made (never ``None``)."""
        return self.always_sample if self.always_sample is not None else self._default_always

    @property
    def always_candidates(self) -> tuple[Candidate, ...]:
        """The candidates sampled whatever the surrogate ranks them."""
        return tuple(ALWAYS_SAMPLED[name] for name in self.always_names)

    @property
    def _default_always(self) -> tuple[str, ...]:
        return DEFAULT_ALWAYS_SAMPLED if self.surrogate_trials else ()


@dataclass(frozen=True)
class WorkPlan:
    """What a compile will spend, in uncached-sample equivalents, and the trials it affords."""

    effort: Effort
    trials: int  # per budget
    phases: dict[str, float]
    max_samples: float | None

    @property
    def total(self) -> float:
        return sum(self.phases.values())

    def describe(self) -> str:
        phases = ", ".join(f"{name} {work:.1f}" for name, work in self.phases.items())
        cap = "no cap" if self.max_samples is None else f"max_samples={self.max_samples:g}"
        return f"{self.total:.1f} uncached-sample equivalents ({phases}; {cap}), {self.trials} trials per budget"


def check_max_samples(max_samples: Any) -> None:
    """Refuse a cap that is not a positive, finite number of uncached-sample equivalents."""
    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, (int, float))
                                    or not math.isfinite(max_samples) or max_samples <= 0):
        raise ScheduleError(f"max_samples={max_samples!r}: the compile's cap is a positive number of "
                            "uncached-sample equivalents (None: the default cap, or no cap with trials= given)")


def default_max_samples(budgets: int) -> float:
    """The cap a compile has when none is given: 100 samples for one budget, 50 more per extra one."""
    return DEFAULT_MAX_SAMPLES + EXTRA_BUDGET_SAMPLES * (budgets - 1)


def plan_work(effort: Effort, *, steps: int, budgets: int, max_gap: int, restartable: bool,
              max_samples: float | None, history: int = 3) -> WorkPlan:
    """The work of every phase, and the trials per budget: ``effort.trials``, or (when ``None``) as
    many as fit in ``max_samples``. Raises :class:`~gocopt.errors.ScheduleError` naming the least
    cap that works when ``max_samples`` cannot pay for the fixed phases and ``MIN_TRIALS`` trials.

    ``restartable``: the sampler can start a run from a latent at any step (gocopt's DDIM), which
    the span table and ``lookahead`` need; otherwise every span runs whole.
    """
    check_max_samples(max_samples)
    span_seeds = min(effort.span_seeds, effort.search_samples)
    method = effort.span_method if restartable else "end-to-end"
    fixed = {
        "tracing": TRACING_IMAGE_STEPS / steps,
        "calibration": float(effort.search_samples),
        "spans": span_image_steps(steps, max_gap, history, method, restartable, seeds=span_seeds,
                                  damping_seeds=effort.damping_seeds, latents_given=True) / steps,
        "held-out scoring": float(effort.heldout_samples
                                  * (1 + budgets * (effort.finalists + (2 if effort.baselines else 0)))),
    }
    per_trial = budgets * effort.search_samples
    if effort.trials is not None:
        trials = effort.trials
    elif max_samples is None:
        raise ScheduleError("Effort.trials=None sizes the search to max_samples; give one or the other")
    else:
        trials = math.floor((max_samples - sum(fixed.values())) / per_trial + 1e-9)
    fewest = max(effort.fewest_trials, effort.finalists) if effort.trials is None else trials
    least = sum(fixed.values()) + per_trial * fewest
    if max_samples is not None and max_samples + 1e-9 < least:
        raise ScheduleError(
            f"max_samples={max_samples:g} cannot pay for this compile: tracing, calibration, spans and "
            f"held-out scoring take {sum(fixed.values()):.1f} uncached-sample equivalents and {fewest} trials "
            f"per budget {per_trial * fewest:g} more; use max_samples >= {math.ceil(least - 1e-9)}, or fewer "
            "search or held-out samples or trials")
    return WorkPlan(effort, trials, {**fixed, "search trials": float(per_trial * trials)}, max_samples)


__all__ = ["DEFAULT_ALWAYS_SAMPLED", "DEFAULT_MAX_SAMPLES", "EXTRA_BUDGET_SAMPLES", "MIN_TRIALS", "Effort", "WorkPlan",
           "check_max_samples", "default_max_samples", "plan_work"]
