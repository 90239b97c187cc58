"""Calibration: how every site's output moves from step to step on the uncached model.

One all-compute sampling run (the same sampler the schedule is for) with an observer on every
site. Per (step, site) it records, over the whole batch:

* ``rel_change``  ``‖F[s] − F[s−1]‖ / ‖F[s]‖`` — also the one-step error of plain reuse;
* ``direction_cos``  cosine between ``d[s] = F[s] − F[s−1]`` and ``d[s−1]`` (≤ 0: the
  trajectory turns back — the inflections GOC must not extrapolate across);
* ``err_goc_w{w}``  ``‖F[s] − (F[s−1] + w·d[s−1])‖ / ‖F[s]‖`` — the one-step error of GOC's
  extrapolation at a few ``w``.

It also records each site's *trajectory Gram matrix* ``G[i][s, s'] = <F_i[s], F_i[s']>`` over a
fixed random subset of the output's elements (at most ``GRAM_ELEMENTS`` per site and context, the
same subset at every step): every least-squares forecast of a step from earlier steps can be
fitted from it (:mod:`gocopt.schedule.fit`), whatever mask the search picks later. Memory is
bounded by ``steps × sites × GRAM_ELEMENTS``, not by the model's activations or the batch.

The final samples are kept: they are the uncached reference that candidate schedules are scored
against.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gocopt.atomic import atomic_path
from gocopt.compiled import CachedModel
from gocopt.errors import CalibrationError, ScheduleError
from gocopt.runtime.runtime import DEFAULT_CONTEXT
from gocopt.sampling import Sampler
from gocopt.schedule.schedule import all_compute

GOC_PROBE_WEIGHTS = (0.4, 0.8, 1.2)
GRAM_ELEMENTS = 16_384


@dataclass
class Calibration:
    """Statistics of one calibration run and the uncached samples it produced."""

    stats: pd.DataFrame  # one row per (step, site)
    samples: torch.Tensor  # uncached final samples, on CPU
    labels: torch.Tensor
    seeds: tuple[int, ...]
    gram: np.ndarray | None = None  # (sites, steps, steps): trajectory inner products, contexts summed
    # the latent before every step, then the sample (``keep_latents``): where the span table starts its
    # runs, so it need not run the uncached model again. Not part of the record: only the process that
    # calibrates measures spans.
    latents: list[torch.Tensor] | None = None

    def save(self, path: str | Path) -> None:
        """The statistics as CSV (the samples are cheap to regenerate from the seeds)."""
        with atomic_path(path) as tmp:
            self.stats.to_csv(tmp, index=False, float_format="%.6g")

    def matrix(self, column: str) -> torch.Tensor:
        """``column`` as a (steps, sites) tensor (NaN where undefined, e.g. step 0)."""
        table = self.stats.pivot_table(index="step", columns="site", values=column, aggfunc="mean", dropna=False)
        table = table.sort_index(axis=0).sort_index(axis=1)  # contexts (cond / uncond) averaged
        return torch.tensor(table.to_numpy(), dtype=torch.float64)

    def to_record(self) -> dict:
        """Everything, as plain data (numpy arrays, lists): what a distributed study stores so its
        workers need not calibrate again (:mod:`gocopt.search.shared`); :meth:`from_record` inverts it
        bit for bit."""
        stats = {column: values.to_numpy() if pd.api.types.is_numeric_dtype(values) else values.tolist()
                 for column, values in self.stats.items()}
        return {"stats": stats, "samples": self.samples.float().numpy(),  # exact for bf16/fp16 too
                "samples_dtype": str(self.samples.dtype).removeprefix("torch."),
                "labels": [int(v) for v in self.labels],
                "seeds": [int(s) for s in self.seeds], "gram": self.gram}

    @classmethod
    def from_record(cls, record: dict) -> Calibration:
        samples = torch.as_tensor(np.asarray(record["samples"])).to(getattr(torch, record["samples_dtype"]))
        return cls(pd.DataFrame(dict(record["stats"])), samples,
                   torch.tensor(record["labels"]), tuple(record["seeds"]),
                   None if record["gram"] is None else np.asarray(record["gram"]))

    def summary(self) -> dict:
        return {"samples": len(self.seeds), "seeds": [self.seeds[0], self.seeds[-1]],
                "labels": sorted(set(int(v) for v in self.labels)),
                "mean_rel_change": float(self.stats["rel_change"].mean())}


def first_non_finite(samples: torch.Tensor) -> int | None:
    """The index of the first sample holding a NaN or an infinity (one host read), or None."""
    bad = torch.nonzero(~torch.isfinite(samples.flatten(1)).all(1))
    return int(bad[0, 0]) if len(bad) else None


def _at_timestep(sampler: Sampler, step: int) -> str:
    return f" (timestep {sampler.timesteps[step]:g})" if sampler.timesteps else ""


def _in_context(context: str) -> str:
    return "" if context == DEFAULT_CONTEXT else f", {context!r} context"


@torch.no_grad()
def calibrate(compiled: CachedModel, sampler: Sampler, labels: torch.Tensor, noise: torch.Tensor, *,
              num_classes: int | None,
              seeds: tuple[int, ...] | None = None, keep_latents: bool = False) -> Calibration:
    """Run ``sampler`` once on the uncached model and collect per-(step, site) statistics.

    ``keep_latents``: keep the latent before every step (``Calibration.latents``); the sampler must
    have ``latents()`` (gocopt's DDIM), whose last one is the sample ``sample()`` would give.

    Raises :class:`~gocopt.errors.CalibrationError` at the first site output that is not finite,
    naming the step and the site (or, when every site stayed finite, at non-finite samples): no
    statistic, span or schedule is ever computed from a run that went NaN."""
    if keep_latents and not callable(getattr(sampler, "latents", None)):
        raise ScheduleError(f"calibrate(keep_latents=True) needs a sampler with latents() (gocopt's DDIM); "
                            f"{type(sampler).__name__} has none: leave keep_latents off for it")
    previous = compiled.schedule
    compiled.set_schedule(all_compute(tuple(compiled.sites["site"]), sampler.steps, sampler.timesteps), log=False)
    site_ids = list(compiled.sites["site"])
    history: dict[tuple[str, int], list[torch.Tensor]] = {}  # (context, site) → [F[s-1], F[s-2]]
    trajectory: dict[tuple[str, int], list[torch.Tensor]] = {}  # (context, site) → subsampled F[0..s]
    subsets: dict[int, torch.Tensor] = {}  # numel → the element subset (fixed, seeded)
    rows: list[dict] = []

    def observe(step: int, site: int, value: tuple[torch.Tensor, ...]) -> None:
        current = torch.cat([v.detach().reshape(-1).double() for v in value])
        context = compiled.runtime.context_name
        if not bool(torch.isfinite(current).all()):  # calibration syncs anyway; the first one is named
            raise CalibrationError(f"the uncached model's output at site {site_ids[site]!r} is not finite at step "
                                   f"{step}{_at_timestep(sampler, step)}{_in_context(context)}, in "
                                   f"{int((~torch.isfinite(current)).sum())} of {current.numel()} values; gocopt "
                                   "cannot measure or cache a model whose own run is not finite: check its weights, "
                                   "dtype and inputs")
        past = history.setdefault((context, site), [])
        row = {"step": step, "site": site, "context": context, "rel_change": float("nan"),
               "direction_cos": float("nan")}
        row.update({f"err_goc_w{w}": float("nan") for w in GOC_PROBE_WEIGHTS})
        norm = current.norm().clamp_min(1e-12)
        if len(past) >= 1:
            d = current - past[0]
            row["rel_change"] = float(d.norm() / norm)
            if len(past) >= 2:
                d_prev = past[0] - past[1]
                row["direction_cos"] = float(torch.dot(d, d_prev) / (d.norm() * d_prev.norm()).clamp_min(1e-12))
                for w in GOC_PROBE_WEIGHTS:
                    row[f"err_goc_w{w}"] = float((d - w * d_prev).norm() / norm)
        rows.append(row)
        history[(context, site)] = [current] + past[:1]
        if current.numel() not in subsets:
            generator = torch.Generator().manual_seed(current.numel())
            subsets[current.numel()] = torch.randperm(current.numel(), generator=generator)[:GRAM_ELEMENTS]
        trajectory.setdefault((context, site), []).append(current[subsets[current.numel()].to(current.device)].cpu())

    try:
        with compiled.runtime.observing(observe):
            compiled.reset()
            if keep_latents:
                latents = sampler.latents(compiled, labels, noise, num_classes=num_classes)  # type: ignore[attr-defined]
                samples = latents[-1].cpu()
            else:
                latents, samples = None, sampler.sample(compiled, labels, noise, num_classes=num_classes).cpu()
    finally:
        compiled.set_schedule(previous, log=False)
    bad = first_non_finite(samples)
    if bad is not None:
        raise CalibrationError(f"the uncached model's sample {bad} (seed {seeds[bad] if seeds else bad}) is not "
                               "finite, though every cache site's output was: the non-finite values arise outside the "
                               "cached branches (the final layer, or the sampler's update); check the model's final "
                               "layer, dtype and the sampler's settings")
    stats = pd.DataFrame(rows)
    sites = compiled.sites[["site", "block", "kind"]].rename(columns={"site": "site_id"}).reset_index(names="site")
    stats = stats.merge(sites, on="site").sort_values(["step", "site"]).reset_index(drop=True)
    timesteps = sampler.timesteps or [float("nan")] * sampler.steps
    stats.insert(1, "timestep", [timesteps[s] for s in stats["step"]])
    gram = np.zeros((len(compiled.sites), sampler.steps, sampler.steps))
    for (_, site), values in trajectory.items():
        if len(values) == sampler.steps:
            stacked = torch.stack(values)
            gram[site] += (stacked @ stacked.T).numpy()
    return Calibration(stats, samples, labels.cpu(), tuple(seeds) if seeds is not None else tuple(range(len(labels))),
                       gram, latents)
