"""Does a gocopt-compiled model run under torch.compile, and where does the graph break?

    python examples/torch_compile_check.py

Compiles the cached reference model with ``torch.compile`` (default and ``fullgraph=True``),
samples with an interval-2 + GOC schedule, and compares with eager execution.
"""

from __future__ import annotations

import torch

from gocopt.compiled import cache_model
from gocopt.models import reference
from gocopt.runtime import GOCConfig
from gocopt.sampling import DDIMSampler, initial_noise
from gocopt.schedule import named_schedule


def main() -> None:
    model = reference()
    cached = cache_model(model)
    sampler = DDIMSampler(steps=10, guidance_scale=4.0)
    cached.set_schedule(named_schedule("interval:2", tuple(cached.sites["site"]), steps=10, timesteps=sampler.timesteps,
                                       goc=GOCConfig.at_steps(0.8, range(2, 10))))
    labels, noise = torch.arange(8) % 10, initial_noise(range(8), (1, 8, 8))
    eager = sampler.sample(cached, labels, noise, num_classes=10)
    for fullgraph in (False, True):
        torch._dynamo.reset()
        try:
            compiled = torch.compile(cached, fullgraph=fullgraph)
            out = sampler.sample(compiled, labels, noise, num_classes=10)
            print(f"fullgraph={fullgraph}: runs; max |compiled - eager| = {float((out - eager).abs().max()):.2e}")
        except Exception as e:  # noqa: BLE001 - reporting what torch.compile says
            print(f"fullgraph={fullgraph}: fails: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
    explanation = torch._dynamo.explain(cached)(noise.repeat(2, 1, 1, 1), torch.full((16,), 999), torch.cat([labels, labels]))
    print(f"graph breaks: {explanation.graph_break_count}")
    for reason in {str(b.reason).splitlines()[0][:160] for b in explanation.break_reasons}:
        print(f"  - {reason}")


if __name__ == "__main__":
    main()
