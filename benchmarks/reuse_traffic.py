"""Memory traffic of one reused site, counted op by op (eager, any device).

    python -m benchmarks.reuse_traffic --model DiT-S/2

Runs an interval-2 schedule to its first corrected step, then runs that step's plan graph node by
node under :class:`~gocopt.trace.traffic.TrafficCounter` and adds up the nodes that make reused
values (the prediction and the gated residual add that consumes it). The unit is one
activation-sized tensor read or written (``N × T × D`` of the site's output): a reused plain site
needs 3 (``addcmul``: read the stream and the value, write the stream), a reused GOC site 6 (plus a
``lerp``: read two kept values, write the one used and kept). A computed site is reported beside it.
"""

from __future__ import annotations

import argparse

import torch
from torch import fx

from gocopt.compiled import CachedModel, cache_model
from gocopt.models import model_by_name
from gocopt.schedule import GOCConfig, named_schedule
from gocopt.trace.traffic import TrafficCounter

PROBE_STEP = 3  # interval 2: steps 1, 3, 5, … reused; from step 2 on GOC has two values to correct with


class _PerNodeTraffic(fx.Interpreter):
    """Bytes moved per node of a plan graph, split into reuse nodes and the rest."""

    def __init__(self, gm: fx.GraphModule, min_numel: int) -> None:
        super().__init__(gm)
        self.min_numel = min_numel
        self.reuse_bytes = 0
        self.total_bytes = 0

    def run_node(self, n: fx.Node):
        with TrafficCounter(self.min_numel) as counter:
            out = super().run_node(n)
        self.total_bytes += counter.bytes
        if "gocopt_reuse" in n.meta:
            self.reuse_bytes += counter.bytes
        return out


@torch.no_grad()
def reuse_traffic(compiled: CachedModel, goc: GOCConfig, *, batch: int = 2, steps: int = 20) -> dict[str, float]:
    """Activation-sized tensors touched per reused site at a reused step of interval 2 (see the docstring)."""
    model = compiled.original
    timesteps = [round(i * 999 / (steps - 1)) for i in range(steps)][::-1]
    compiled.set_schedule(named_schedule("interval:2", tuple(compiled.sites["site"]), steps=steps,
                                         timesteps=timesteps, predictor=goc), log=False)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, model.in_channels, model.input_size, model.input_size, generator=g)
    y = torch.arange(batch) % model.num_classes
    for step in range(PROBE_STEP):
        compiled(x, torch.full((batch,), timesteps[step]), y)
    plan_index = compiled.runtime.plan.plan_of_step[PROBE_STEP]
    graph = compiled._programs[plan_index].__self__
    kept = compiled.runtime.state.kept[""]
    activation = kept[0]
    coefficients = compiled.runtime.coefficients.get("", PROBE_STEP, activation)
    counter = _PerNodeTraffic(graph, activation.numel())
    counter.run(x, torch.full((batch,), timesteps[PROBE_STEP]), y, kept, coefficients)
    plan = compiled.runtime.plan.plans[plan_index]
    reused = len(plan.computes) - plan.computed
    unit = activation.numel() * activation.element_size()
    compiled.reset()
    return {"reused_sites": reused, "per_reused_site": counter.reuse_bytes / unit / reused,
            "step_total": counter.total_bytes / unit}


def measure(model_name: str, *, w: float = 0.85) -> list[dict]:
    model = model_by_name(model_name)
    compiled = cache_model(model)
    rows = []
    for name, goc in (("plain reuse", GOCConfig()), (f"GOC (w={w:g})", GOCConfig.at_steps(w, range(2, 20)))):
        rows.append({"model": model_name, "reuse": name, **reuse_traffic(compiled, goc)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="DiT-S/2")
    args = parser.parse_args()
    for row in measure(args.model):
        print(f"{row['model']} {row['reuse']:>14}: {row['per_reused_site']:.2f} activation-sized tensors per reused "
              f"site ({row['reused_sites']} reused), {row['step_total']:.1f} for the whole step")


if __name__ == "__main__":
    main()
