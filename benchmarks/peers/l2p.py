"""L2P (CVPR 2026, arXiv 2604.26365): a skipped step's output as linear weights over the whole history.

**As its code runs it** (:class:`L2PCache`, :func:`l2p_weights`, :func:`l2p_schedule`): L2P forecasts
the *model output*. A skipped step's output is ``Σ_u W[s, u] · output[u]`` over every earlier step,
forecast steps included: a lower-triangular weight matrix, initialised to plain reuse, trained one
step ahead with Adam (lr 0.01, 201 epochs) on the uncached outputs of a few calibration runs, on
L2P's own front-loaded schedule (at 50 steps: 0, 1, 2, 4, 6, 9, 14, 23, 30, 37, 44), here scaled to
the budget, and also on FORA's interval mask. It wraps the model as FirstBlockCache does: it is not
a per-site predictor, and skipping a step skips the whole model call.

**L2P-style site forecast** (:func:`l2p_predictor`): the same idea as a gocopt predictor, for the
composites that pair a peer's placement with a peer's forecast: per-site branch outputs, computed
steps only, one least-squares solve per skipped step from calibration's Gram matrices (summed over
sites and runs), the same coefficients at every site. A schedule file can hold it; it is not L2P.
"""

from __future__ import annotations

import numpy as np
import torch

from gocopt.errors import ScheduleError
from gocopt.schedule.fit import fit_shared
from gocopt.schedule.predictors import Fitted

RIDGE = 1e-8  # relative to the mean diagonal: only keeps a singular system (a site that never moves) solvable


def l2p_predictor(mask: np.ndarray, gram: np.ndarray) -> Fitted:
    """L2P's weights for a whole-model ``mask`` (every site computed at the same steps) from
    calibration's Gram matrices ``(sites, steps, steps)``: for each skipped step ``s``, the
    ``a`` minimising ``Σ_i ‖v_i[s] − Σ_u a_u v_i[u]‖²`` over the computed steps ``u < s``."""
    mask = np.asarray(mask, dtype=bool)
    if not (mask == mask[:, :1]).all():
        raise ScheduleError("L2P forecasts whole steps: every site must be computed at the same steps")
    if not mask[0, 0]:
        raise ScheduleError("step 0 is skipped before any step was computed")
    # on a whole-step mask every site is one group: gocopt's shared whole-history fit is exactly this
    # least squares (tests/test_predictors.py pins the two together, test_benchmarks.py this one to numpy)
    shared = fit_shared(mask, gram, ridge=RIDGE)
    return Fitted(shared.history, shared.terms, {"method": "L2P-style: per-step weights over the whole history, "
                                                           "shared by all sites, least squares on the calibration "
                                                           "runs", "ridge": RIDGE})


__all__ = ["l2p_predictor"]


# -- L2P as its code runs it: a model-output forecast over every earlier step ----------------------

L2P_SCHEDULE_50 = (0, 1, 2, 4, 6, 9, 14, 23, 30, 37, 44)  # its own front-loaded schedule at 50 steps
L2P_EPOCHS, L2P_LR = 201, 0.01


def l2p_schedule(steps: int, computes: int) -> np.ndarray:
    """``(steps,)`` compute row: L2P's front-loaded 50-step schedule scaled to ``steps`` and
    ``computes``. Its compute positions, as fractions of the run, are a curve over the compute index
    (piecewise linear through the 11 points of the 50-step schedule); ``computes`` points are read off
    it, evenly in the index, and rounded to steps (a collision moves to the next free step). At 50
    steps and 11 computes it is the schedule itself."""
    if not 1 <= computes <= steps:
        raise ScheduleError(f"L2P places 1..{steps} computes in {steps} steps, got {computes}")
    index = np.linspace(0.0, 1.0, len(L2P_SCHEDULE_50))
    fraction = np.asarray(L2P_SCHEDULE_50) / 50
    wanted = np.interp(np.linspace(0.0, 1.0, computes), index, fraction) * steps if computes > 1 else np.zeros(1)
    row = np.zeros(steps, dtype=bool)
    for position in np.round(wanted).astype(int):
        free = np.flatnonzero(~row[position:]) + position if position < steps else np.array([], dtype=int)
        row[free[0] if len(free) else np.flatnonzero(~row)[-1]] = True
    return row


def l2p_weights(outputs: torch.Tensor, computed: np.ndarray, *, epochs: int = L2P_EPOCHS, lr: float = L2P_LR,
                seed: int = 0) -> torch.Tensor:
    """L2P's ``(steps, steps)`` lower-triangular weights for the skipped steps of ``computed``, fitted
    as its code fits them: initialised to plain reuse (each skipped step takes the output of the
    step before it), trained one step ahead (each skipped step forecast from the true outputs of
    every earlier step) with Adam at ``lr`` for ``epochs`` full-batch epochs on ``outputs``, the
    uncached model outputs ``(steps, samples, …)`` of the calibration runs. Rows of computed steps
    stay zero (they are computed, never forecast)."""
    steps = outputs.shape[0]
    flat = outputs.reshape(steps, -1).double()
    skipped = torch.as_tensor(~np.asarray(computed, dtype=bool))
    skipped[0] = False  # nothing precedes step 0: L2P computes it
    torch.manual_seed(seed)
    below = torch.tril(torch.ones(steps, steps, dtype=torch.float64), diagonal=-1) * skipped[:, None]
    weights = torch.diag(torch.ones(steps - 1, dtype=torch.float64), -1) * below  # plain reuse
    weights.requires_grad_(True)
    optimizer = torch.optim.Adam([weights], lr=lr)
    scale = flat[skipped].pow(2).mean().clamp_min(1e-30)
    for _ in range(epochs):
        optimizer.zero_grad()
        forecast = (weights * below) @ flat  # (steps, features): every skipped step from all before it
        loss = (forecast[skipped] - flat[skipped]).pow(2).mean() / scale
        loss.backward()
        optimizer.step()
    return (weights * below).detach()


class L2PCache(torch.nn.Module):
    """``model`` with L2P's forecast: at a computed step the model runs; at a skipped one its output is
    ``Σ_u W[s, u] · output[u]`` over every earlier step's output, computed or forecast. Call it like
    the model; ``reset()`` starts a run."""

    def __init__(self, model: torch.nn.Module, computed: np.ndarray, weights: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.computed = np.asarray(computed, dtype=bool)
        self.weights = weights
        self.reset()

    def reset(self) -> None:
        self._history: list[torch.Tensor] = []

    def cost(self) -> float:
        """The fraction of steps that run the model (every site, as for the whole-step peers)."""
        return float(self.computed.mean())

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        step = len(self._history)
        if step >= len(self.computed):
            raise ScheduleError(f"L2P's schedule has {len(self.computed)} steps; call reset() between runs")
        if self.computed[step]:
            out = self.model(x, t, y)
        else:
            history = torch.stack(self._history)  # (step, …)
            coefficients = self.weights[step, :step].to(history.dtype).to(history.device)
            out = torch.tensordot(coefficients, history, dims=1)
        self._history.append(out)
        return out


__all__ += ["L2PCache", "l2p_schedule", "l2p_weights"]
