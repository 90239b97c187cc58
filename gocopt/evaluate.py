"""Sample a model with and without a cache schedule on the same seeds, time both, score both.

This is the measurement every report in gocopt rests on: the uncached run and the cached run
happen in the same process, back to back, on the same noise and labels, so the ratios are fair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from gocopt.compiled import CachedModel
from gocopt.metrics.fidelity import paired_fidelity
from gocopt.metrics.quality import QualityEvaluator
from gocopt.sampling import Sampler, initial_noise
from gocopt.timing import timed


@dataclass(frozen=True)
class SampleSet:
    """Seeds and labels of one evaluation: sample ``i`` uses seed ``seeds[i]`` and ``labels[i]``."""

    seeds: tuple[int, ...]
    labels: torch.Tensor

    @classmethod
    def make(cls, n: int, seed: int, num_classes: int) -> SampleSet:
        base = seed * 1_000_003  # disjoint seed ranges for different --seed values
        return cls(tuple(range(base, base + n)), torch.arange(n) % num_classes)


@torch.no_grad()
def sample_batches(model, sampler: Sampler, samples: SampleSet, *, shape: tuple[int, ...], num_classes: int,
                   batch_size: int = 500, device: torch.device | str = "cpu", progress: bool = True,
                   desc: str = "sampling") -> tuple[torch.Tensor, float]:
    """All samples of ``samples`` (on CPU) and the wall-clock seconds the sampling took."""
    def run() -> torch.Tensor:
        chunks = []
        for i in tqdm(range(0, len(samples.seeds), batch_size), desc=desc, disable=not progress, leave=False):
            noise = initial_noise(samples.seeds[i : i + batch_size], shape, device)
            if isinstance(model, CachedModel):
                model.reset()
            chunks.append(sampler.sample(model, samples.labels[i : i + batch_size], noise,
                                         num_classes=num_classes).cpu())
        return torch.cat(chunks)

    return timed(run, device)


def compare(model: CachedModel, sampler: Sampler, samples: SampleSet, *, evaluator: QualityEvaluator | None,
            reference: tuple[torch.Tensor, float] | None = None, batch_size: int = 500,
            device: torch.device | str = "cpu", progress: bool = True) -> dict[str, float]:
    """Score ``model`` (with its schedule) against the uncached original on the same samples.

    ``reference`` (uncached samples and their seconds) can be passed in to share one uncached
    run between several schedules.
    """
    original = model.original
    shape = (original.in_channels, original.input_size, original.input_size)
    kw: dict[str, Any] = dict(shape=shape, num_classes=original.num_classes, batch_size=batch_size, device=device,
                              progress=progress)
    if reference is None:
        reference = sample_batches(original, sampler, samples, desc="uncached", **kw)
    uncached, uncached_seconds = reference
    cached, seconds = sample_batches(model, sampler, samples, desc=model.schedule.name if model.schedule else "cached",
                                     **kw)
    result: dict[str, float] = {}
    if evaluator is not None:
        result.update(evaluator.score(cached, samples.labels, reference=uncached))
    else:
        result.update(paired_fidelity(cached, uncached))
    schedule = model.schedule
    result.update(
        cost=schedule.cost(model.site_flops) if schedule is not None else 1.0,
        seconds=seconds,
        uncached_seconds=uncached_seconds,
        speedup=uncached_seconds / seconds,
        n=len(samples.seeds),
    )
    return result
