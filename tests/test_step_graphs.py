"""Few graphs per schedule: step plans by shape, coefficients as data, fixed history slots.

The oracle below applies a schedule literally — each reused site's value is ``Σ c · (value the
site used ``age`` steps ago)``, straight from its predictor's terms — by hooking the rewritten
graph's sites, with no step plans at all. The loaded model runs the shared-shape graphs; the two
must agree to float rounding on every committed schedule.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import gocopt
from gocopt.runtime.modules import CacheSite
from gocopt.sampling import DDIMSampler, initial_noise
from gocopt.schedule.io import load_schedule
from gocopt.schedule.plan import distinct_graphs, plan_run
from gocopt.search import DEFAULT_MAX_GRAPHS

SCHEDULES = sorted((Path(__file__).parent.parent / "schedules").glob("reference_*.json"))
TOLERANCE = 2e-5  # float32 rounding of a different summation order (lerp vs Σ c·v), pixels in [-1, 1]


class LiteralSchedule:
    """Runs ``compiled``'s rewritten graph with every site computed, then replaces each reused
    site's output by its predictor's terms over the values the site used at earlier steps."""

    def __init__(self, compiled) -> None:
        schedule = compiled.schedule
        self.graph, self.actions = compiled.module, schedule.predictor.actions(schedule.mask)
        self.used: dict[tuple[int, int], tuple[torch.Tensor, ...]] = {}
        self.step = 0
        for module in self.graph.modules():
            if isinstance(module, CacheSite):
                module.register_forward_hook(self._site_hook(module.index))

    def _site_hook(self, site: int):
        def hook(module, args, out):
            action = self.actions[self.step][site]
            if action is not None:
                out = tuple(sum(c * self.used[self.step - age, site][j] for age, c in action.terms)
                            for j in range(len(out)))
            self.used[self.step, site] = out
            return out

        return hook

    def __call__(self, *args, **kwargs):
        out = self.graph(*args, **kwargs)
        self.step += 1
        return out


@pytest.mark.parametrize("path", SCHEDULES, ids=[p.stem for p in SCHEDULES])
def test_shared_graphs_equal_the_literal_schedule(path, reference_model):
    schedule = load_schedule(path)
    sampler = DDIMSampler(steps=schedule.steps, guidance_scale=schedule.sampler["guidance_scale"])
    labels, noise = torch.arange(3), initial_noise(range(3), (1, 8, 8))
    with torch.no_grad():
        compiled = gocopt.load(reference_model, path, sampler=sampler)
        fast = sampler.sample(compiled, labels, noise, num_classes=10)
        literal = sampler.sample(LiteralSchedule(gocopt.load(reference_model, path, sampler=sampler)), labels, noise,
                                 num_classes=10)
    torch.testing.assert_close(fast, literal, rtol=0, atol=TOLERANCE)
    assert not torch.equal(fast, sampler.sample(reference_model, labels, noise, num_classes=10))  # it caches


@pytest.mark.parametrize("path", SCHEDULES, ids=[p.stem for p in SCHEDULES])
def test_every_committed_schedule_has_at_most_six_step_graphs(path):
    """Six inductor compilations (and CUDA graph sets) before the first image, at most."""
    schedule = load_schedule(path)
    plans = plan_run(schedule).plans
    assert len(plans) <= DEFAULT_MAX_GRAPHS == 6
    assert len(plans) == distinct_graphs(schedule.mask)  # the runtime plans exactly the rows the search limited
