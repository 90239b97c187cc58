"""A gocopt-compiled model under torch.compile: one graph per distinct step plan, equal to eager.

    python examples/torch_compile_check.py

Samples the reference model with an interval-2 + GOC schedule eagerly, then under plain
``torch.compile(model)`` and under ``model.compile()`` (every plan ``fullgraph=True``), with the
default recompile limit and ``fail_on_recompile_limit_hit``, and prints the graphs compiled, the
graph breaks and the largest difference to eager.
"""

from __future__ import annotations

import torch
import torch._dynamo
from torch._dynamo.utils import counters

from gocopt.compiled import cache_model
from gocopt.models import reference
from gocopt.sampling import DDIMSampler, initial_noise
from gocopt.schedule import GOCConfig, named_schedule


def main() -> None:
    cached = cache_model(reference())
    sampler = DDIMSampler(steps=20, guidance_scale=4.0)
    cached.set_schedule(named_schedule("interval:2", tuple(cached.sites["site"]), steps=20, timesteps=sampler.timesteps,
                                       predictor=GOCConfig.at_steps(0.85, range(2, 20))))
    print(f"{len(cached.runtime.plan.plans)} distinct step plans for 20 steps: {cached.runtime.plan.plan_of_step}")
    labels, noise = torch.arange(8) % 10, initial_noise(range(8), (1, 8, 8))
    eager = sampler.sample(cached, labels, noise, num_classes=10)
    torch._dynamo.config.fail_on_recompile_limit_hit = True
    for name, make in (("torch.compile(model)", lambda: torch.compile(cached)),
                       ("model.compile_graphs() (fullgraph per plan)", lambda: cached.compile_graphs())):
        torch._dynamo.reset()
        counters.clear()
        runner = make()
        out = sampler.sample(runner, labels, noise, num_classes=10)
        out = sampler.sample(runner, labels, noise, num_classes=10)  # a second run: no new compilation
        print(f"{name}: {counters['stats']['unique_graphs']} graphs, "
              f"{sum(counters['graph_break'].values())} graph breaks, "
              f"max |compiled - eager| = {float((out - eager).abs().max()):.2e}")
    cached.compile_graphs(disable=True)


if __name__ == "__main__":
    main()
