"""Wall-clock speed of compiled schedules on DiT shapes, each next to the uncached model.

Runs are interleaved over rounds (uncached, then every schedule, then again) and each
configuration's fastest round is kept, so slow drifts of the machine hit all of them alike.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from gocopt.compiled import CachedModel, cache_model
from gocopt.models import model_by_name
from gocopt.sampling import DDIMSampler, initial_noise
from gocopt.schedule import GOCConfig, Schedule
from gocopt.schedule.named import interval_at_budget
from gocopt.timing import timed

SEARCHED_W = 0.85  # the step size gocopt's search settles on at interval 2 (docs/compile_results.md)


def measure(model: nn.Module, compiled: CachedModel, schedules: Mapping[str, Schedule], *, batch: int, steps: int,
            rounds: int, progress: bool = True) -> dict[str, dict[str, float]]:
    """Best-of-``rounds`` seconds of one sampling run per schedule and of the uncached model."""
    sampler = DDIMSampler(steps=steps, guidance_scale=4.0, clip_denoised=False)
    noise = initial_noise(range(batch), (model.in_channels, model.input_size, model.input_size))
    labels = torch.arange(batch) % model.num_classes

    @torch.no_grad()
    def run(runner) -> float:
        return timed(lambda: sampler.sample(runner, labels, noise, num_classes=model.num_classes))[1]

    best = {"uncached": float("inf"), **{name: float("inf") for name in schedules}}
    peak = {name: 0 for name in schedules}
    current = [""]

    def track_cache(module, args, output) -> None:  # after every call: what the queues hold now
        peak[current[0]] = max(peak[current[0]], compiled.runtime.memory_bytes())

    hook = compiled.register_forward_hook(track_cache)
    run(model)  # warm-up: allocator, thread pool
    try:
        for _ in tqdm(range(rounds), desc=f"rounds (batch {batch})", disable=not progress, leave=False):
            best["uncached"] = min(best["uncached"], run(model))
            for name, schedule in schedules.items():
                compiled.set_schedule(schedule, log=False)
                current[0] = name
                best[name] = min(best[name], run(compiled))
    finally:
        hook.remove()
    out = {"uncached": {"seconds": best["uncached"], "cost": 1.0, "cache_mib": 0.0}}
    for name, schedule in schedules.items():
        out[name] = {"seconds": best[name], "cost": schedule.cost(compiled.site_flops), "cache_mib": peak[name] / 2**20}
    return out


def gocopt_shaped(compiled: CachedModel, steps: int, budget: float, timesteps) -> Schedule:
    """What gocopt compiles to on the reference model, at any budget: FORA's mask at the budget
    with GOC at every step from 2 (w = 0.85) — so the timing includes the correction's cost."""
    n = len(compiled.sites)
    mask = interval_at_budget(steps, n, budget)
    return Schedule(mask, tuple(compiled.sites["site"]), tuple(timesteps),
                    GOCConfig.at_steps(SEARCHED_W, range(2, steps)), f"gocopt-shaped@{budget:g}")


def speed_rows(model_names, batches, budgets, *, steps: int = 20, rounds: int = 2, progress: bool = True) -> list[dict]:
    """Rows of the speed table: per model and batch, uncached seconds and speedup at each budget."""
    rows = []
    for name in model_names:
        model = model_by_name(name)
        compiled = cache_model(model)
        timesteps = DDIMSampler(steps=steps).timesteps
        schedules = {f"{b:g}": gocopt_shaped(compiled, steps, b, timesteps) for b in budgets}
        for batch in batches:
            measured = measure(model, compiled, schedules, batch=batch, steps=steps, rounds=rounds, progress=progress)
            base = measured["uncached"]["seconds"]
            for budget in budgets:
                m = measured[f"{budget:g}"]
                speedup = base / m["seconds"]
                rows.append({"model": name, "batch": batch, "budget": budget, "cost": m["cost"],
                             "uncached_seconds": base, "seconds": m["seconds"], "speedup": speedup,
                             "ideal": 1 / budget, "ratio_to_ideal": speedup * budget, "cache_mib": m["cache_mib"],
                             "coverage": float(compiled.sites.attrs["coverage"])})
        del model, compiled
    return rows


def speed_ok(rows, model: str = "DiT-XL/2", fraction: float = 0.9) -> bool | None:
    """The issue's bar: speedup >= ``fraction`` × 1/budget for every row of ``model`` (None: not measured)."""
    ratios = [r["ratio_to_ideal"] for r in rows if r["model"] == model]
    return bool(np.all(np.asarray(ratios) >= fraction)) if ratios else None
