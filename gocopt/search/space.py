"""The search space: a few numbers → a step × site mask that meets the budget by construction.

A candidate ranks every (step, site) pair by how cheaply it can be reused — calibration's
one-step reuse error, tilted by where the pair sits (early or late step, shallow or deep block,
MLP or attention) — and :func:`fill_to_budget` reuses pairs in that order until the cost is at
most the budget, then computes back the least reusable ones while it stays at most the budget.
So every candidate's cost is ≤ budget and within one site-step of it. Four families start from
different masks: ``greedy`` (all computed), ``interval`` (FORA's interval-K at the budget),
``l2c`` (the L2C-like early-step schedule) and ``path`` (compute steps placed globally by
:mod:`gocopt.search.path`, with a share of the budget; the rest is spent site by site), so the
named baselines are points of the space.

A candidate also names its predictor (:mod:`gocopt.schedule.predictors`): GOC with per-group
``w``, a Taylor forecast, or coefficients fitted to the mask from calibration's Gram matrices.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from gocopt.errors import ScheduleError
from gocopt.schedule.fit import fit_predictor, fit_shared
from gocopt.schedule.goc import GOCConfig
from gocopt.schedule.named import interval_covering, l2c_mask
from gocopt.schedule.predictors import Predictor, Taylor
from gocopt.search.calibrated_path import (
    least_forecast_path,
    least_prior_path_within,
    reuse_prior,
    taylor_forecast_errors,
)
from gocopt.search.graphs import DEFAULT_MAX_GRAPHS, limit_graphs
from gocopt.search.path import EdgeTable, best_path, path_mask

FAMILIES = ("greedy", "interval", "l2c", "path")  # what the search suggests
# Built when a candidate names them, like EXTRA_PREDICTORS: whole-model compute steps placed from
# calibration alone (:mod:`gocopt.search.calibrated_path`), by the reuse prior with near-even gaps
# (CEM's rule) or by the first-order forecast table (DPCache's)
EXTRA_FAMILIES = ("prior-path", "forecast-path")
PREDICTORS = ("goc", "taylor1", "taylor2", "fitted2", "fitted3", "fitted4")  # what the search suggests
# Built when a candidate names them (``Effort.always_sample``), not suggested: adding a choice to the
# suggested space would move every compile, which only the levers protocol may do (issue #34)
EXTRA_PREDICTORS = ("shared",)  # whole history, one forecast per group of sites computed alike


@dataclass(frozen=True)
class Candidate:
    """One point of the search space (what an Optuna trial suggests).

    Attributes:
        family: the starting mask (see the module docstring).
        alpha: exponent on the calibration reuse error (0 ignores calibration).
        step_bias: > 0 prefers reusing early (noisy) steps, < 0 late ones.
        depth_bias: > 0 prefers reusing deep blocks, < 0 shallow ones.
        mlp_bias: > 0 prefers reusing MLP branches, < 0 attention.
        max_run: most consecutive reused steps of one site (GOC's queue needs fresh values); a
            preference: the budget and the graph limit may lengthen runs when they must.
        w_attn / w_mlp: GOC step size for attention-like and MLP-like sites.
        skip_inflections: no correction at detected inflection points.
        predictor: how reused values are made (``PREDICTORS``; ``w_*`` and ``skip_inflections``
            are GOC's).
        path_share: for the ``path`` family, the share of the budget its globally placed
            compute steps take.
        path_tilt: > 0 gives attention-like sites more compute steps on their path than MLP
            sites, < 0 fewer (each group still on its own least-error path).
    """

    family: str = "greedy"
    alpha: float = 1.0
    step_bias: float = 0.0
    depth_bias: float = 0.0
    mlp_bias: float = 0.0
    max_run: int = 1
    w_attn: float = 0.0
    w_mlp: float = 0.0
    skip_inflections: bool = False
    predictor: str = "goc"
    path_share: float = 1.0
    path_tilt: float = 0.0

    def as_params(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SpaceContext:
    """What every candidate is built against: costs, calibration, structure."""

    steps: int
    site_flops: np.ndarray  # (sites,)
    site_blocks: np.ndarray  # (sites,)
    site_is_mlp: np.ndarray  # (sites,) bool
    reuse_error: np.ndarray  # (steps, sites): calibration's one-step reuse error (NaN at step 0)
    inflections: tuple[int, ...] = ()
    gram: np.ndarray | None = None  # (sites, steps, steps): calibration's trajectory Gram, for fitted predictors
    edges: EdgeTable | None = None  # end-to-end span errors, for the path family
    max_graphs: int | None = DEFAULT_MAX_GRAPHS  # step graphs a schedule may have (None: no limit)
    # fitted forecasts by (site, step, steps read), reused by every candidate fitted against ``gram``
    # (:func:`~gocopt.schedule.fit.fit_predictor`'s ``memo``)
    fits: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    @property
    def min_cost(self) -> float:
        """Step 0 computes everything: no schedule costs less."""
        return 1.0 / self.steps


def check_budget(budget: float, steps: int) -> None:
    """Refuse budgets no schedule can meet, with the reason and the fix."""
    if steps < 2:
        raise ScheduleError(f"steps={steps}: caching needs at least 2 sampling steps")
    if not 0 < budget <= 1:
        raise ScheduleError(f"budget={budget}: a budget is the fraction of site FLOPs to compute, in (0, 1]")
    if budget < 1.0 / steps:
        raise ScheduleError(f"budget={budget} is below {1 / steps:.4f}, the cost of step 0 alone (every site must be "
                            f"computed once before it can be reused); use a budget >= {1 / steps:.4f} or more steps")


def priority(candidate: Candidate, ctx: SpaceContext) -> np.ndarray:
    """(steps, sites) scores; lower = reuse first. Step 0 is +inf (never reused)."""
    err = np.nan_to_num(ctx.reuse_error, nan=np.nanmax(ctx.reuse_error) if np.isfinite(ctx.reuse_error).any() else 1.0)
    score = candidate.alpha * np.log(np.clip(err, 1e-6, None))
    steps = np.arange(ctx.steps)[:, None] / max(1, ctx.steps - 1)
    depth = ctx.site_blocks[None, :] / max(1, ctx.site_blocks.max())
    score = (score - candidate.step_bias * (1 - steps) - candidate.depth_bias * depth
             - candidate.mlp_bias * ctx.site_is_mlp[None, :])
    score[0] = np.inf
    return score


def fill_to_budget(start: np.ndarray, scores: np.ndarray, flops: np.ndarray, budget: float, max_run: int) -> np.ndarray:
    """Reuse in ``scores`` order until cost ≤ budget, then compute back while it stays ≤ budget.

    ``max_run`` caps consecutive reuses of a site; if the budget cannot be met under the cap,
    the cap is raised until it can (step 0 alone always fits a checked budget).
    """
    steps, _ = start.shape
    unit = flops / (steps * flops.sum())  # cost of one site-step
    order = np.dstack(np.unravel_index(np.argsort(scores, axis=None, kind="stable"), scores.shape))[0]
    for cap in range(max(1, min(max_run, steps)), steps + 1):  # a cap of ``steps`` or more caps nothing
        mask = start.copy()
        mask[0] = True
        cost = float((mask * unit).sum())
        for s, i in order:
            if cost <= budget + 1e-12:
                break
            if s == 0 or not mask[s, i] or _run_with(mask[:, i], s) > cap:
                continue
            mask[s, i] = False
            cost -= unit[i]
        if cost <= budget + 1e-12:
            break
    else:  # pragma: no cover - unreachable after check_budget
        raise ScheduleError(f"no schedule meets budget {budget}")
    for s, i in order[::-1]:  # least reusable first: spend what is left of the budget
        if not mask[s, i] and cost + unit[i] <= budget + 1e-12:
            mask[s, i] = True
            cost += unit[i]
    return mask


def _run_with(column: np.ndarray, s: int) -> int:
    """Length of the reuse run through step ``s`` if ``s`` were reused."""
    run = 1
    k = s - 1
    while k >= 0 and not column[k]:
        run, k = run + 1, k - 1
    k = s + 1
    while k < len(column) and not column[k]:
        run, k = run + 1, k + 1
    return run


def build_mask(candidate: Candidate, ctx: SpaceContext, budget: float) -> np.ndarray:
    """The candidate's mask: cost ≤ budget, within one site-step of it, at most ``ctx.max_graphs``
    step graphs (:func:`~gocopt.search.graphs.limit_graphs`)."""
    check_budget(budget, ctx.steps)
    n = len(ctx.site_flops)
    if candidate.family == "interval":
        start = interval_covering(ctx.steps, n, budget)
    elif candidate.family == "l2c":
        start = l2c_mask(ctx.steps, ctx.site_blocks, ctx.site_flops, budget)
    elif candidate.family == "greedy":
        start = np.ones((ctx.steps, n), dtype=bool)
    elif candidate.family == "path":
        start = group_paths(candidate, ctx, budget)
    elif candidate.family in EXTRA_FAMILIES:
        start = path_mask(calibrated_path(candidate, ctx, budget), ctx.steps, n)
    else:
        raise ScheduleError(f"unknown candidate family {candidate.family!r}; expected one of "
                            f"{FAMILIES + EXTRA_FAMILIES}")
    scores = priority(candidate, ctx)
    mask = fill_to_budget(start, scores, ctx.site_flops, budget, candidate.max_run)
    return mask if ctx.max_graphs is None else limit_graphs(mask, scores, ctx.site_flops, budget, ctx.max_graphs)


def group_paths(candidate: Candidate, ctx: SpaceContext, budget: float,
                tables: tuple[EdgeTable, EdgeTable] | None = None) -> np.ndarray:
    """Attention-like and MLP sites each on the least-error path with their number of computes:
    ``path_share`` of the budget in all, tilted between the groups by ``path_tilt``.

    Both groups' paths are weighed by ``ctx.edges``, spans that reuse the whole model, unless
    ``tables`` gives one per group (attention, MLP). Spans measured per group (the other group
    computed) miss how the two groups' errors compound where their paths coincide; on the
    reference model they placed computes 0.3–6.5 dB worse in every cell, for 2–3× the measuring
    (``python -m benchmarks.span_tables``).
    """
    if tables is None:
        if ctx.edges is None:
            raise ScheduleError("the path family needs measured span errors (SpaceContext.edges)")
        tables = (ctx.edges, ctx.edges)
    attn_table, mlp_table = tables
    fewest = math.ceil(ctx.steps / min(attn_table.max_gap, mlp_table.max_gap))  # spans are at most max_gap long
    full_steps = candidate.path_share * budget * ctx.steps  # what the paths may cost, in whole-model steps
    mlp_share = float(ctx.site_flops[ctx.site_is_mlp].sum() / ctx.site_flops.sum())
    attn = min(ctx.steps, max(fewest, math.floor(full_steps * (1 + candidate.path_tilt) + 1e-9)))
    mlp = min(ctx.steps, max(fewest, math.floor((full_steps - (1 - mlp_share) * attn) / max(mlp_share, 1e-9) + 1e-9)))
    if mlp_share in (0.0, 1.0):  # one group only: one path
        attn = mlp = max(fewest, math.floor(full_steps + 1e-9))
    n = len(ctx.site_flops)
    mask = path_mask(best_path(attn_table, attn), ctx.steps, n, np.flatnonzero(~ctx.site_is_mlp).tolist())
    return path_mask(best_path(mlp_table, mlp), ctx.steps, n, np.flatnonzero(ctx.site_is_mlp).tolist(), mask)


def calibrated_path(candidate: Candidate, ctx: SpaceContext, budget: float) -> list[int]:
    """The whole model's compute steps, ``path_share`` of the budget, placed from calibration's Gram
    matrices alone: by the reuse prior with near-even gaps (``prior-path``) or by the first-order
    forecast table (``forecast-path``, gaps up to the span table's ``max_gap``, else any)."""
    if ctx.gram is None:
        raise ScheduleError(f"the {candidate.family} family needs calibration's Gram matrices (SpaceContext.gram)")
    computes = min(ctx.steps, max(1, math.floor(candidate.path_share * budget * ctx.steps + 1e-9)))
    if candidate.family == "prior-path":
        return least_prior_path_within(reuse_prior(ctx.gram), computes)
    max_gap = ctx.edges.max_gap if ctx.edges is not None else ctx.steps
    max_gap = max(max_gap, math.ceil(ctx.steps / computes))  # few computes need long gaps
    return least_forecast_path(taylor_forecast_errors(ctx.gram, max_gap), computes, max_gap)


def build_goc(candidate: Candidate, ctx: SpaceContext) -> GOCConfig:
    """Per-site w from the two group weights; correction at every step from 2, minus inflections if asked."""
    w = tuple(float(candidate.w_mlp if is_mlp else candidate.w_attn) for is_mlp in ctx.site_is_mlp)
    excluded = set(ctx.inflections) if candidate.skip_inflections else set()
    return GOCConfig(w, frozenset(s for s in range(2, ctx.steps) if s not in excluded))


def build_predictor(candidate: Candidate, ctx: SpaceContext, mask: np.ndarray) -> Predictor:
    """The candidate's predictor for ``mask`` (fitted ones are fitted to it here)."""
    name = candidate.predictor
    if name == "goc":
        return build_goc(candidate, ctx)
    if name.startswith("taylor"):
        return Taylor(int(name.removeprefix("taylor")))
    if name.startswith("fitted") or name == "shared":
        if ctx.gram is None:
            raise ScheduleError("fitted predictors need calibration's Gram matrices (SpaceContext.gram)")
        if name == "shared":
            return fit_shared(mask, ctx.gram)
        return fit_predictor(mask, ctx.gram, int(name.removeprefix("fitted")), memo=ctx.fits)
    raise ScheduleError(f"unknown predictor {name!r}; expected one of {PREDICTORS + EXTRA_PREDICTORS}")
