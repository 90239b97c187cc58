"""The quality table: every caching strategy on a trained model, same seeds, one run.

Each row is a *contender*: something the sampler can call, a way to start a run, and the cost
that run realised (a static schedule's cost is its mask's; the dynamic first-block cache counts
its own, probe included). All rows of one step count are scored against one uncached run on the
same seeds, with the paired metrics (PSNR, SSIM, FD vs uncached) that rank schedules and the
unpaired ones (FID with its bootstrap noise, IS, class accuracy) that flag divergence. Wall-clock
speedup is measured at batch size 1 (one image, batched CFG), each contender right after the
uncached model on the same seed, so both see the same machine state.

Two trained models (:class:`TrainedModel`): the pixel-space reference model every design choice
was tuned on, and the latent one nobody tuned on (no x0 clipping; scored on its decoded pixels).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

import gocopt
from benchmarks.allowance import THRESHOLD_ITERATIONS, Allowance
from benchmarks.peers.budcache import budcache_row
from benchmarks.peers.cem import cem_path, cem_prior
from benchmarks.peers.dpcache import dp_path, forecast_errors
from benchmarks.peers.first_block_cache import FirstBlockCache
from benchmarks.peers.l2p import L2PCache, l2p_predictor, l2p_schedule, l2p_weights
from benchmarks.peers.lemica import lexicographic_minimax_path
from benchmarks.peers.smoothcache import smoothcache_mask
from benchmarks.peers.taylorseer import ORDERS as TAYLORSEER_ORDERS
from benchmarks.peers.taylorseer import TaylorSeerForecast, taylorseer_mask
from gocopt.calibrate import calibrate
from gocopt.compiled import CachedModel, cache_model
from gocopt.driver import SEARCH_SEED_BASE
from gocopt.evaluate import SampleSet
from gocopt.metrics.decoded import evaluator_for
from gocopt.metrics.fidelity import psnr
from gocopt.metrics.frechet import frechet_distance
from gocopt.metrics.quality import QualityEvaluator
from gocopt.models import CLIPS_DENOISED, model_by_name
from gocopt.models.reference import REFERENCE_GUIDANCE_SCALE
from gocopt.sampling import DDIMSampler, initial_noise
from gocopt.schedule import GOCConfig, Schedule
from gocopt.schedule.named import interval_at_budget, l2c_mask, paper_goc
from gocopt.schedule.predictors import Predictor
from gocopt.search.effort import Effort
from gocopt.search.path import EdgeTable, path_mask
from gocopt.search.spans import max_gap_for, measure_spans, span_image_steps
from gocopt.timing import timed
from gocopt.work import WorkMeter

# Seed sets, each disjoint from gocopt.compile's search (10_000+) and held-out (20_000+) seeds:
DESIGN_SEED_BASE = 30_000  # the design experiments' (compile_cost, span_tables; the head-to-head's until #21)
BENCHMARK_SEED_BASE = 60_000  # the head-to-head's: no design experiment has seen them (issue #21)
LABELS = {
    "uncached": "uncached",
    "fora": "FORA interval-K, plain reuse",
    "fora_goc_paper": "FORA + GOC, paper settings (w=1.2)",
    "l2c": "L2C-like static, plain",
    "smoothcache": "SmoothCache-style (calibration + threshold)",
    "first_block_cache": "FirstBlockCache/TeaCache-style (dynamic, probe counted)",
    "taylorseer": "TaylorSeer, 1st order on FORA's interval-K",
    "taylorseer_fora2": "TaylorSeer, 2nd order on FORA's interval-K",
    "taylorseer1": "TaylorSeer, 1st order, warm-up + every N",
    "taylorseer2": "TaylorSeer, 2nd order, warm-up + every N",
    "taylorseer_best": "TaylorSeer, best of orders 1–4 on the span seeds, warm-up + every N",
    "l2p": "L2P (model-output weights over the whole history, Adam one step ahead) on its front-loaded schedule",
    "l2p_fora": "L2P (model-output weights over the whole history, Adam one step ahead) on FORA's interval-K",
    "dpcache": "DPCache-style (path-aware DP over calibration forecast errors + TaylorSeer 1st order)",
    "cem": "CEM (DP over its reuse-error prior, gaps round(T/Ns) ± 1, first and last computed, plain reuse)",
    "budcache": "BudCache-style (full steps searched by annealing + hill climbing, plain reuse)",
    "lemica": "LeMiCa (lexicographic minimax path, whole model, plain reuse)",
    "composite": "best composite: a peer's placement × a peer's forecast, picked on calibration seeds",
    "gocopt": "gocopt compile (searched mask + predictor)",
    "gocopt_whole_steps": "gocopt compiled at the whole-step peers' cost (floor(budget·steps)/steps)",
}
GOCOPT_ROWS = ("gocopt", "gocopt_whole_steps")
SETUP_NEEDS = {  # the set-ups (QualityBench.setup phases) each row's method uses; none for the rest
    "smoothcache": ("calibration",),  # its per-site change curve
    "dpcache": ("calibration",), "cem": ("calibration",),  # their error tables, from the calibration runs
    "l2p": ("l2p outputs",), "l2p_fora": ("l2p outputs",),
    "lemica": ("lemica spans",),
    "budcache": ("budcache {budget}",),
    "first_block_cache": ("first_block_cache {budget}",),
    "taylorseer_best": ("taylorseer_best {budget}",),
    "composite": ("composite {budget}", "calibration", "lemica spans", "budcache {budget}"),
}
SECTIONS = ("default", "generous")  # a cell's two set-up allowances (see benchmarks.cells)
GOAL_MARGIN_DB = 1.0  # issue #21: gocopt ≥ the best other row by this much PSNR, with lower FD
PLACEMENTS = {"fora": "FORA's interval", "lemica": "LeMiCa's path", "dpcache": "DPCache's path",
              "cem": "CEM's path", "budcache": "BudCache's steps",
              "taylorseer": "TaylorSeer's shape"}  # the whole-step masks the composites combine
FORECASTS = ("plain", "GOC (paper)", "TaylorSeer 1st", "TaylorSeer 2nd", "L2P")


@dataclass(frozen=True)
class TrainedModel:
    """A shipped model as the quality table measures it: how it is sampled and how it is scored."""

    name: str  # "reference" | "latent"; its schedules are schedules/{name}_ddim{steps}_b{budget}.json
    model: nn.Module
    clip_denoised: bool
    evaluator: QualityEvaluator

    @classmethod
    def named(cls, name: str) -> TrainedModel:
        evaluator = evaluator_for(name)
        if evaluator is None:
            raise ValueError(f"{name!r} is not a trained model; use 'reference' or 'latent'")
        return cls(name, model_by_name(name), CLIPS_DENOISED[name], evaluator)


@dataclass
class Contender:
    """One row: what the sampler calls, how a run starts, what the last run cost (site FLOPs)."""

    method: str
    budget: float
    model: Callable[..., torch.Tensor]
    reset: Callable[[], None]
    run_cost: Callable[[], float]
    detail: str = ""  # what a composite row chose
    setup_work: float | None = None  # model work before sampling, when the row knows it (gocopt's schedule file)
    allowance: float | None = None  # the set-up work it was allowed (the rows that set themselves up)


@dataclass
class QualitySettings:
    """What the quality table measures; the defaults are the committed table's."""

    steps: tuple[int, ...] = (20, 50)
    budgets: tuple[float, ...] = (0.25, 0.35, 0.5, 0.75)
    samples: int = 1000
    timing_samples: int = 10
    setup_work: float = 64.0  # the peers' set-up allowance when a whole table runs (cells set theirs per section)
    batch_size: int = 500
    seed: int = 0
    schedules_dir: Path | None = Path("schedules")  # committed gocopt schedules; None: compile in the run
    setup_ceiling: float | None = None  # caps every allowance (CI-sized cells); None: the sections' own
    compile_max_samples: float | None = None  # an in-run compile's work cap (None: gocopt.compile's default)
    trials: int | None = None  # an in-run compile's trials and surrogate candidates (None: gocopt's defaults)
    surrogate_trials: int | None = None
    methods: tuple[str, ...] = field(default=tuple(LABELS))


def _schedule_contender(method: str, budget: float, compiled: CachedModel, schedule: Schedule,
                        detail: str = "") -> Contender:
    def reset() -> None:
        compiled.set_schedule(schedule, log=False)  # several contenders share one compiled model

    cost = schedule.cost(compiled.site_flops)
    return Contender(method, budget, compiled, reset, lambda: cost, detail)


def _first_block_contender(budget: float, fbc: FirstBlockCache) -> Contender:
    return Contender("first_block_cache", budget, fbc, fbc.reset, fbc.cost)


class QualityBench:
    """The contenders for one step count, every searching peer set up within one :class:`Allowance`.

    ``gocopt_models``: gocopt's compiled models by budget when the caller made them (a cell compiles
    its default section's in the cell, first, since their work sets the allowance); otherwise the
    committed schedules are loaded, or compiled here when ``settings.schedules_dir`` is None."""

    def __init__(self, trained: TrainedModel, steps: int, settings: QualitySettings, allowance: Allowance, *,
                 progress: bool = True, gocopt_models: dict[float, CachedModel] | None = None) -> None:
        self.trained, self.model, self.settings, self.progress = trained, trained.model, settings, progress
        self.allowance, self.gocopt_models = allowance, dict(gocopt_models or {})
        model = trained.model
        self.sampler = bench_sampler(trained, steps)
        self.compiled = cache_model(model)
        self.ids = tuple(self.compiled.sites["site"])
        self.flops = np.asarray(self.compiled.site_flops, dtype=np.float64)
        shape = (model.in_channels, model.input_size, model.input_size)
        calib = SampleSet.make(allowance.calibration_samples(), SEARCH_SEED_BASE + settings.seed, model.num_classes)
        self.calib_labels, self.calib_noise = calib.labels, initial_noise(calib.seeds, shape)
        self.meter = WorkMeter([model, self.compiled], steps=steps, rows_per_image_step=2)  # CFG: 2 rows an image
        with self.setup("calibration"):
            self.calibration = calibrate(self.compiled, self.sampler, self.calib_labels, self.calib_noise,
                                         num_classes=model.num_classes, seeds=calib.seeds)
        self._forecast_errors: np.ndarray | None = None  # DPCache's table, made on first use
        self._plain_spans: EdgeTable | None = None  # LeMiCa's, made on first use
        self._masks: dict[tuple[str, float], np.ndarray] = {}  # each searched placement once per budget
        self._outputs: torch.Tensor | None = None  # L2P's training data, made on first use

    @contextlib.contextmanager
    def setup(self, name: str) -> Iterator[None]:
        """Count the model work inside the block as the set-up ``name`` (see :data:`SETUP_NEEDS`)."""
        with self.meter, self.meter.phase(name):
            yield

    def setup_work(self, method: str, budget: float) -> float:
        """The model work, in uncached-sample equivalents, that ``method``'s row needed before it could
        sample at ``budget``: every set-up it uses (:data:`SETUP_NEEDS`), each counted once. gocopt's
        row: the work its schedule file records, less held-out scoring (the whole compile that made it)."""
        phases = self.meter.summary()["phases"]
        needs = {need.format(budget=budget) for need in SETUP_NEEDS.get(method, ())}
        return sum(phases[name]["sample_equivalents"] for name in needs if name in phases)

    def schedule(self, mask: np.ndarray, name: str, predictor: Predictor | None = None) -> Schedule:
        return Schedule(mask, self.ids, tuple(self.sampler.timesteps), predictor or GOCConfig(), name)

    @property
    def plain_spans(self) -> EdgeTable:
        """LeMiCa's span table: whole-model plain reuse, end-to-end error (its paper's), on as many
        calibration seeds as the allowance pays for."""
        if self._plain_spans is None:
            steps, max_gap = self.sampler.steps, max_gap_for(self.settings.budgets, self.sampler.steps)
            per_seed = span_image_steps(steps, max_gap, 3, "end-to-end", True) / steps
            seeds = slice(0, min(self.allowance.span_seeds(per_seed), len(self.calib_labels)))
            with self.setup("lemica spans"):
                self._plain_spans = measure_spans(
                    self.compiled, self.sampler, self.calib_labels[seeds], self.calib_noise[seeds],
                    self.calibration.samples[seeds], gram=None, num_classes=self.model.num_classes,
                    progress=self.progress, method="end-to-end", max_gap=max_gap)
        return self._plain_spans

    def lemica_mask(self, budget: float) -> np.ndarray:
        """LeMiCa: the whole model computed at the steps of the lexicographic minimax path that fits the
        budget, from the first step to the last."""
        steps = self.sampler.steps
        path = lexicographic_minimax_path(self.plain_spans, int(np.floor(budget * steps + 1e-9)))
        return path_mask(path, steps, len(self.ids))

    def dpcache_mask(self, budget: float) -> np.ndarray:
        """DPCache: the whole model computed at the steps of the least path-aware forecast error."""
        steps, max_gap = self.sampler.steps, max_gap_for(self.settings.budgets, self.sampler.steps)
        if self._forecast_errors is None:
            self._forecast_errors = forecast_errors(self.calibration.gram, max_gap)
        path = dp_path(self._forecast_errors, int(np.floor(budget * steps + 1e-9)), max_gap)
        return path_mask(path, steps, len(self.ids))

    def cem_mask(self, budget: float) -> np.ndarray:
        """CEM: the whole model computed at the steps of the least-prior path, first and last step
        forced, gaps within round(T / Ns) ± 1 (:mod:`benchmarks.peers.cem`)."""
        steps = self.sampler.steps
        path = cem_path(cem_prior(self.calibration.gram), int(np.floor(budget * steps + 1e-9)))
        return path_mask(path, steps, len(self.ids))

    @torch.no_grad()
    def budcache_mask(self, budget: float) -> np.ndarray:
        """BudCache: floor(budget · steps) full steps, placed by its annealing + hill climbing
        (:mod:`benchmarks.peers.budcache`) against the uncached output on calibration seeds, with the
        seeds and evaluations the allowance pays for (:meth:`Allowance.budcache_search`)."""
        steps, n = self.sampler.steps, len(self.ids)
        computes = int(np.floor(budget * steps + 1e-9))
        seeds, evaluations = self.allowance.budcache_search()

        def score(row: np.ndarray) -> float:
            return self.calibration_error(self.schedule(np.repeat(row[:, None], n, axis=1), "budcache"), seeds)

        with self.setup(f"budcache {budget}"):
            row = budcache_row(score, steps, computes, evaluations=evaluations, seed=self.settings.seed)
        return np.repeat(row[:, None], n, axis=1)

    @torch.no_grad()
    def calibration_error(self, schedule: Schedule, seeds: int) -> float:
        """Mean squared error against the uncached run on the first ``seeds`` calibration seeds: how
        the peers that search (BudCache, TaylorSeer's order, the composites) score a candidate."""
        chosen = slice(0, min(seeds, len(self.calib_labels)))
        self.compiled.set_schedule(schedule, log=False)
        self.compiled.reset()
        out = self.sampler.sample(self.compiled, self.calib_labels[chosen], self.calib_noise[chosen],
                                  num_classes=self.model.num_classes)
        return float(((out - self.calibration.samples[chosen]) ** 2).mean())

    def placement(self, method: str, budget: float) -> np.ndarray:
        """A peer's whole-step mask at ``budget`` (searched ones made once, shared with the composites)."""
        if (method, budget) not in self._masks:
            make = {"fora": lambda: interval_at_budget(self.sampler.steps, len(self.ids), budget),
                    "lemica": lambda: self.lemica_mask(budget), "dpcache": lambda: self.dpcache_mask(budget),
                    "cem": lambda: self.cem_mask(budget),
                    "taylorseer": lambda: taylorseer_mask(self.sampler.steps, len(self.ids), budget),
                    "budcache": lambda: self.budcache_mask(budget)}[method]
            self._masks[(method, budget)] = make()
        return self._masks[(method, budget)]

    def forecast(self, name: str, mask: np.ndarray) -> Predictor:
        """A peer's forecast for ``mask``, by its name in ``FORECASTS``."""
        if name == "plain":
            return GOCConfig()
        if name == "GOC (paper)":
            return paper_goc(self.sampler.steps)
        if name.startswith("TaylorSeer"):
            return TaylorSeerForecast.for_mask(mask, 1 if "1st" in name else 2)
        return l2p_predictor(mask, self.calibration.gram)

    def composite(self, budget: float) -> Contender:
        """Every peer placement × every peer forecast, scored on calibration seeds against the uncached
        run (as many seeds per pair as the allowance pays for); the best."""
        scored = []
        masks = {placement: self.placement(placement, budget) for placement in PLACEMENTS}  # their own set-ups
        seeds = self.allowance.composite_seeds(len(PLACEMENTS) * len(FORECASTS))
        with self.setup(f"composite {budget}"):
            for placement, mask in masks.items():
                for name in FORECASTS:
                    schedule = self.schedule(mask, f"{placement} + {name}", self.forecast(name, mask))
                    scored.append((self.calibration_error(schedule, seeds), placement, name, schedule))
        _, placement, name, schedule = min(scored, key=lambda item: item[0])
        return _schedule_contender("composite", budget, self.compiled, schedule, f"{PLACEMENTS[placement]} + {name}")

    def contenders(self, budget: float, methods: Sequence[str] | None = None) -> list[Contender]:
        """The rows ``methods`` (default: the settings') at ``budget``, each stamped with the allowance
        when it sets itself up."""
        steps, n = self.sampler.steps, len(self.ids)
        fora = interval_at_budget(steps, n, budget)
        paper = paper_goc(steps)
        seer = taylorseer_mask(steps, n, budget)

        def taylorseer(method: str, mask: np.ndarray, order: int) -> Contender:
            forecast = TaylorSeerForecast.for_mask(mask, order)
            return _schedule_contender(method, budget, self.compiled, self.schedule(mask, method, forecast))

        def smoothcache() -> Contender:
            mask = smoothcache_mask(self.calibration.matrix("rel_change").numpy(), self.flops, budget)
            return _schedule_contender("smoothcache", budget, self.compiled, self.schedule(mask, "smoothcache"))

        builders: dict[str, Callable[[], Contender]] = {
            "fora": lambda: _schedule_contender("fora", budget, self.compiled, self.schedule(fora, "fora")),
            "fora_goc_paper": lambda: _schedule_contender("fora_goc_paper", budget, self.compiled,
                                                          self.schedule(fora, "fora+goc(paper)", paper)),
            "l2c": lambda: _schedule_contender("l2c", budget, self.compiled, self.schedule(
                l2c_mask(steps, self.compiled.sites["block"].to_numpy(), self.flops, budget), "l2c")),
            "smoothcache": smoothcache,
            "first_block_cache": lambda: _first_block_contender(budget, self.first_block_cache(budget)),
            "taylorseer": lambda: taylorseer("taylorseer", fora, 1),
            "taylorseer_fora2": lambda: taylorseer("taylorseer_fora2", fora, 2),
            "taylorseer1": lambda: taylorseer("taylorseer1", seer, 1),
            "taylorseer2": lambda: taylorseer("taylorseer2", seer, 2),
            "taylorseer_best": lambda: self.taylorseer_best(budget, seer),
            "l2p": lambda: self.l2p("l2p", budget, l2p_schedule(steps, int(np.floor(budget * steps + 1e-9)))),
            "l2p_fora": lambda: self.l2p("l2p_fora", budget, fora[:, 0]),
            "dpcache": lambda: taylorseer("dpcache", self.placement("dpcache", budget), 1),
            "cem": lambda: _schedule_contender("cem", budget, self.compiled,
                                               self.schedule(self.placement("cem", budget), "cem")),
            "budcache": lambda: _schedule_contender("budcache", budget, self.compiled,
                                                    self.schedule(self.placement("budcache", budget), "budcache")),
            "lemica": lambda: _schedule_contender("lemica", budget, self.compiled,
                                                  self.schedule(self.placement("lemica", budget), "lemica")),
            "composite": lambda: self.composite(budget),
            "gocopt": lambda: self.gocopt(budget),
            "gocopt_whole_steps": lambda: self.gocopt(whole_step_cost(budget, steps), "gocopt_whole_steps", budget),
        }
        if whole_step_cost(budget, steps) >= budget - 1e-9:  # the whole-step peers spend the budget exactly
            del builders["gocopt_whole_steps"]
        chosen = [builders[m]() for m in (methods or self.settings.methods) if m in builders]
        for contender in chosen:
            if contender.method in SETUP_NEEDS:
                contender.allowance = self.allowance.work
        return chosen

    def taylorseer_best(self, budget: float, mask: np.ndarray) -> Contender:
        """TaylorSeer on its own shape at the order of 1–4 (its DiT code defaults to 4) whose error on
        calibration seeds is least (as many seeds per order as the allowance pays for)."""
        seeds = self.allowance.taylorseer_seeds()
        with self.setup(f"taylorseer_best {budget}"):
            scored = [(self.calibration_error(s, seeds), order, s) for order in TAYLORSEER_ORDERS
                      for s in [self.schedule(mask, f"taylorseer{order}", TaylorSeerForecast.for_mask(mask, order))]]
        _, order, schedule = min(scored, key=lambda item: item[:2])
        return _schedule_contender("taylorseer_best", budget, self.compiled, schedule, f"order {order}")

    def l2p(self, method: str, budget: float, computed: np.ndarray) -> Contender:
        """L2P wrapping the model (:class:`~benchmarks.peers.l2p.L2PCache`) on the ``computed`` steps,
        its weights trained on the uncached outputs of the calibration runs."""
        cache = L2PCache(self.model, computed, l2p_weights(self.model_outputs(), computed, seed=self.settings.seed))
        return Contender(method, budget, cache, cache.reset, cache.cost)

    @torch.no_grad()
    def model_outputs(self) -> torch.Tensor:
        """``(steps, rows, …)``: the uncached model's outputs at every step of the calibration runs
        (one more uncached run of those seeds, made once: L2P's set-up)."""
        if self._outputs is None:
            outputs: list[torch.Tensor] = []

            def record(module, args, output) -> None:
                outputs.append(output.detach().cpu())

            hook = self.model.register_forward_hook(record)
            try:
                with self.setup("l2p outputs"):
                    self.sampler.sample(self.model, self.calib_labels, self.calib_noise,
                                        num_classes=self.model.num_classes)
            finally:
                hook.remove()
            self._outputs = torch.stack(outputs)
        return self._outputs

    def first_block_cache(self, budget: float) -> FirstBlockCache:
        """The threshold whose realised cost on calibration seeds is at most ``budget`` (bisection, as
        many seeds per run as the allowance pays for)."""
        fbc = FirstBlockCache(self.model, threshold=0.0)
        low, high = -4.0, 1.0  # log10 threshold: 1e-4 recomputes every step, 10 skips all it can
        seeds = slice(0, min(self.allowance.threshold_seeds(), len(self.calib_labels)))
        with self.setup(f"first_block_cache {budget}"):
            self.meter.watch(fbc)  # it runs the model's blocks itself, not the model's forward
            for _ in range(THRESHOLD_ITERATIONS):
                fbc.threshold = 10 ** ((low + high) / 2)
                fbc.reset()
                with torch.no_grad():
                    self.sampler.sample(fbc, self.calib_labels[seeds], self.calib_noise[seeds],
                                        num_classes=self.model.num_classes)
                if fbc.cost() <= budget:
                    high = (low + high) / 2
                else:
                    low = (low + high) / 2
        fbc.threshold = 10**high
        fbc.reset()
        return fbc

    def gocopt(self, budget: float, method: str = "gocopt", row_budget: float | None = None) -> Contender:
        """gocopt's model at ``budget`` (:meth:`gocopt_model`), as the row ``method`` of the
        ``row_budget`` group (``budget`` by default)."""
        compiled = self.gocopt_model(budget)
        contender = _schedule_contender(method, budget if row_budget is None else row_budget, compiled,
                                        compiled.schedule)
        contender.setup_work = compile_work(compiled.schedule)
        return contender

    def gocopt_model(self, budget: float) -> CachedModel:
        """The caller's model for ``budget``, else the committed schedule loaded as at deploy time,
        else (no ``schedules_dir``) one compiled now."""
        if budget not in self.gocopt_models:
            s = self.settings
            self.gocopt_models[budget] = (compile_in_run(self.trained, self.sampler, budget, s, self.progress)
                                          if s.schedules_dir is None
                                          else load_committed(self.trained, self.sampler, budget, s.schedules_dir))
        return self.gocopt_models[budget]


def bench_sampler(trained: TrainedModel, steps: int) -> DDIMSampler:
    """The sampler every row of a step count runs: DDIM with CFG 4, clipped as the model is."""
    return DDIMSampler(steps=steps, guidance_scale=REFERENCE_GUIDANCE_SCALE, clip_denoised=trained.clip_denoised)


def load_committed(trained: TrainedModel, sampler: DDIMSampler, budget: float, schedules_dir: Path) -> CachedModel:
    """The committed schedule for this model, sampler and ``budget``, loaded as at deploy time."""
    name, steps = trained.name, sampler.steps
    path = schedules_dir / f"{name}_ddim{steps}_b{budget:.2f}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: make it with `gocopt compile --model {name} --steps {steps} "
                                f"--budget {budget} --effort full`, or run the benchmark with --compile")
    return gocopt.load(trained.model, path, sampler=sampler)


def compile_in_run(trained: TrainedModel, sampler: DDIMSampler, budget: float, settings: QualitySettings,
                   progress: bool = True) -> CachedModel:
    """gocopt's compile made in the run, from scratch, with the library's defaults except what the
    settings change (CI-sized runs shrink it); its schedule records the work it did."""
    effort = compile_effort(settings)
    return gocopt.compile(trained.model, budget, sampler=sampler, spec=gocopt.DiTSpec(evaluator=trained.evaluator),
                          effort=effort, progress=progress)


def compile_effort(settings: QualitySettings) -> Effort:
    """The effort of the compile made in the run: the library's default, as the settings change it.
    Recorded in each head-to-head cell, so a cell made under an earlier default says so."""
    return Effort(seed=settings.seed).with_overrides(max_samples=settings.compile_max_samples,
                                                     trials=settings.trials, surrogate_trials=settings.surrogate_trials)


def compile_work(schedule: Schedule) -> float | None:
    """The model work a schedule file records for the compile that made it, less held-out scoring
    (which scores the result and does not shape it); None for a file that records none."""
    work = schedule.provenance.get("work")
    if not work:
        return None
    held_out = work["phases"].get("held-out scoring", {}).get("sample_equivalents", 0.0)
    return float(work["total"]["sample_equivalents"] - held_out)


@torch.no_grad()
def sample_contender(contender: Contender, sampler: DDIMSampler, labels: torch.Tensor, noise: torch.Tensor, *,
                     num_classes: int, batch_size: int) -> tuple[torch.Tensor, float]:
    """Samples (one run per batch) and the realised cost, averaged over samples."""
    chunks, cost = [], 0.0
    for i in range(0, len(labels), batch_size):
        contender.reset()
        chunks.append(sampler.sample(contender.model, labels[i : i + batch_size], noise[i : i + batch_size],
                                     num_classes=num_classes))
        cost += contender.run_cost() * len(chunks[-1])
    return torch.cat(chunks), cost / len(labels)


@torch.no_grad()
def batch_one_speedup(contender: Contender, uncached: nn.Module, sampler: DDIMSampler, labels: torch.Tensor,
                      noise: torch.Tensor, *, num_classes: int) -> tuple[float, float]:
    """(speedup, cached seconds per image) at batch size 1, each seed run uncached then cached."""
    def seconds(model, i) -> float:
        return timed(lambda: sampler.sample(model, labels[i : i + 1], noise[i : i + 1], num_classes=num_classes))[1]

    contender.reset()
    seconds(contender.model, 0)  # warm-up
    base = cached = 0.0
    for i in range(len(labels)):
        base += seconds(uncached, i)
        contender.reset()
        cached += seconds(contender.model, i)
    return base / cached, cached / len(labels)


def fid_noise(evaluator: QualityEvaluator, samples: torch.Tensor, resamples: int = 20, seed: int = 0) -> float:
    """Bootstrap standard deviation of FID for these samples: how much FID moves by chance."""
    features, real = evaluator.features(samples), evaluator.real_features
    rng = np.random.default_rng(seed)
    values = [frechet_distance(features[rng.integers(0, len(features), len(features))], real) for _ in range(resamples)]
    return float(np.std(values))


def _sample_in_batches(sampler: DDIMSampler, model: nn.Module, labels: torch.Tensor, noise: torch.Tensor,
                       batch_size: int) -> torch.Tensor:
    return torch.cat([sampler.sample(model, labels[i : i + batch_size], noise[i : i + batch_size],
                                     num_classes=model.num_classes) for i in range(0, len(labels), batch_size)])


def quality_rows(trained: TrainedModel, settings: QualitySettings, progress: bool = True) -> tuple[list[dict], dict]:
    """Every contender at every step count and budget; rows plus the per-step-count uncached facts.

    Each row keeps its per-sample PSNR (``psnr_per_sample``, in the seeds' order) so that margins
    between rows can be paired, with their standard errors."""
    labels, noise = evaluation_set(trained, settings.samples, BENCHMARK_SEED_BASE + settings.seed)
    timing = slice(0, settings.timing_samples)
    rows: list[dict] = []
    uncached_facts: dict = {}
    for steps in settings.steps:
        bench = QualityBench(trained, steps, settings, Allowance("fixed", settings.setup_work), progress=progress)
        uncached, row = uncached_run(trained, bench.sampler, labels, noise, settings.batch_size)
        uncached_facts[steps] = {k: row[k] for k in ("fid", "fid_noise", "seconds")}
        rows.append(row)
        for budget in settings.budgets:
            rows += contender_rows(bench, budget, labels, noise, uncached, timing, progress)
    return rows, uncached_facts


def evaluation_set(trained: TrainedModel, samples: int, seed_base: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The labels and initial noise of ``samples`` evaluation seeds from ``seed_base``."""
    model = trained.model
    chosen = SampleSet.make(samples, seed_base, model.num_classes)
    return chosen.labels, initial_noise(chosen.seeds, (model.in_channels, model.input_size, model.input_size))


def uncached_run(trained: TrainedModel, sampler: DDIMSampler, labels: torch.Tensor, noise: torch.Tensor,
                 batch_size: int) -> tuple[torch.Tensor, dict]:
    """The uncached samples every row of a step count is scored against, and their own row
    (FID with its bootstrap noise, IS, accuracy, seconds)."""
    model, evaluator = trained.model, trained.evaluator
    with torch.no_grad():
        uncached, seconds = timed(functools.partial(_sample_in_batches, sampler, model, labels, noise, batch_size))
    base = evaluator.score(uncached, labels)
    return uncached, {"steps": sampler.steps, "budget": None, "method": "uncached", "label": LABELS["uncached"],
                      "cost": 1.0, "speedup": 1.0, "setup_work": 0.0, "psnr_vs_uncached": None, "ssim_vs_uncached": 1.0,
                      "fd_vs_uncached": 0.0, "fid_noise": fid_noise(evaluator, uncached), "seconds": seconds, **base,
                      "samples": len(labels)}


def contender_rows(bench: QualityBench, budget: float, labels: torch.Tensor, noise: torch.Tensor,
                   uncached: torch.Tensor, timing: slice, progress: bool = True,
                   methods: Sequence[str] | None = None, section: str | None = None) -> list[dict]:
    """The contenders ``methods`` (default: all) of ``bench`` at ``budget``: sampled on ``labels`` /
    ``noise``, scored against the ``uncached`` samples of the same seeds, timed at batch size 1 on the
    ``timing`` seeds; each row names its ``section`` when given."""
    model, evaluator, sampler, steps = bench.model, bench.trained.evaluator, bench.sampler, bench.sampler.steps
    uncached_images = evaluator.images(uncached)
    rows = []
    for contender in tqdm(bench.contenders(budget, methods), desc=f"DDIM-{steps} b{budget:g} rows"
                          + (f" ({section})" if section else ""), disable=not progress):
        cached, cost = sample_contender(contender, sampler, labels, noise, num_classes=model.num_classes,
                                        batch_size=bench.settings.batch_size)
        speedup, per_image = batch_one_speedup(contender, model, sampler, labels[timing], noise[timing],
                                               num_classes=model.num_classes)
        per_sample = psnr(evaluator.images(cached), uncached_images)
        rows.append({"steps": steps, "budget": budget, "method": contender.method, "section": section,
                     "label": LABELS[contender.method] + (f" ({contender.detail})" if contender.detail else ""),
                     "detail": contender.detail or None, "cost": cost, "speedup": speedup,
                     "setup_work": (contender.setup_work if contender.setup_work is not None
                                    else bench.setup_work(contender.method, budget)),
                     "allowance": contender.allowance,
                     "seconds_per_image": per_image, **evaluator.score(cached, labels, reference=uncached),
                     "samples": len(labels), "psnr_per_sample": [round(float(v), 3) for v in per_sample]})
    return rows


def paired_margin(ours: dict, theirs: dict) -> tuple[float, float | None]:
    """``ours`` − ``theirs`` in mean PSNR, with the standard error of the paired per-sample
    differences (None when a row does not carry its per-sample PSNR)."""
    margin = ours["psnr_vs_uncached"] - theirs["psnr_vs_uncached"]
    if "psnr_per_sample" not in ours or "psnr_per_sample" not in theirs:
        return margin, None
    diff = np.asarray(ours["psnr_per_sample"]) - np.asarray(theirs["psnr_per_sample"])
    return margin, float(diff.std(ddof=1) / np.sqrt(len(diff)))


def _equal_cost_row(ours: Sequence[dict], cost: float) -> dict | None:
    """Of gocopt's rows (by cost), the dearest that costs no more than ``cost``; None if every one
    costs more (such a peer is shown, never counted: a margin bought with more compute is no margin)."""
    fitting = [r for r in ours if r["cost"] <= cost + 1e-9]
    return fitting[-1] if fitting else None


def whole_step_cost(budget: float, steps: int) -> float:
    """What a peer that computes whole steps spends at ``budget``: floor(budget · steps) of them."""
    return int(np.floor(budget * steps + 1e-9)) / steps


def verdicts(rows: Sequence[dict]) -> list[dict]:
    """Per (steps, budget): does gocopt beat every other row on PSNR and FD at equal or higher cost?

    Each peer row is held against the gocopt row of the highest cost that is not above its own
    (``gocopt_whole_steps`` for the peers that compute whole steps, where the budget is not a whole
    number of steps); a peer cheaper than every gocopt row is listed in ``cheaper_rows`` and not
    counted (issue #32: only gocopt compiled at that peer's cost could be held against it).
    ``margin_db`` is gocopt's least PSNR lead over a peer at equal cost (the best
    row), ``margin_stderr`` its paired standard error; ``composite_margin_db`` the lead over the best
    composite; ``meets_goal`` issue #21's bar: best PSNR and FD of every row, by ≥ 1 dB."""
    out = []
    for steps, budget in sorted({(r["steps"], r["budget"]) for r in rows if r["method"] == "gocopt"}):
        group = [r for r in rows if r["steps"] == steps and r["budget"] == budget]
        ours = sorted((r for r in group if r["method"] in GOCOPT_ROWS), key=lambda r: r["cost"])
        peers = [r for r in group if r["method"] not in (*GOCOPT_ROWS, "uncached")]

        matched = {r["method"]: _equal_cost_row(ours, r["cost"]) for r in peers}
        against = {m: row for m, row in matched.items() if row is not None}
        counted = [r for r in peers if r["method"] in against]
        losses = [r["method"] for r in counted if r["psnr_vs_uncached"] >= against[r["method"]]["psnr_vs_uncached"]
                  or r["fd_vs_uncached"] <= against[r["method"]]["fd_vs_uncached"]]
        cheaper = [r["method"] for r in peers if r["method"] not in against]
        lead = {r["method"]: paired_margin(against[r["method"]], r) for r in counted}
        best = min(lead, key=lambda m: lead[m][0]) if lead else None
        composite = lead.get("composite", (None, None))
        margin = lead[best] if best else (None, None)
        out.append({"steps": steps, "budget": budget, "gocopt_wins": not losses, "loses_to": losses,
                    "cheaper_rows": cheaper, "best_peer": best, "margin_db": margin[0], "margin_stderr": margin[1],
                    "composite_margin_db": composite[0], "composite_margin_stderr": composite[1],
                    "meets_goal": not losses and margin[0] is not None and margin[0] >= GOAL_MARGIN_DB,
                    "against": {m: r["method"] for m, r in against.items()},
                    "over_budget": [r["method"] for r in group if r["cost"] > budget + 1e-9]})
    return out
