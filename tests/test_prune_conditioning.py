"""The conditioning pass: adaLN chunks that only reused sites read are not computed."""

from __future__ import annotations

import operator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from gocopt.compiled import cache_model
from gocopt.passes import prune_dead_chunks
from gocopt.sampling import DDIMSampler
from gocopt.schedule import GOCConfig, Schedule, named_schedule


class _Toy(nn.Module):
    """``linear(c).chunk(3)`` → shift, scale, gate; the test deletes readers by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 12)

    def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        shift, scale, gate = self.linear(c).chunk(3, dim=-1)
        return shift, scale, gate


def _traced_reading(read: tuple[int, ...]) -> fx.GraphModule:
    """The toy, traced, with only the chunks in ``read`` still read (the others dead)."""
    gm = fx.symbolic_trace(_Toy())
    output = next(n for n in gm.graph.nodes if n.op == "output")
    getters = sorted((n for n in gm.graph.nodes if n.target is operator.getitem), key=lambda n: n.args[1])
    output.args = (tuple(getters[k] for k in read),)
    for k, getter in enumerate(getters):
        if k not in read:
            gm.graph.erase_node(getter)
    linear = next(n for n in gm.graph.nodes if n.op == "call_module")
    linear.meta["shape"] = (2, 12)
    gm.recompile()
    return gm


@pytest.mark.parametrize("read,policy,gemms", [
    ((0, 1, 2), "runs", 0),   # every chunk read: the original linear, untouched
    ((2,), "runs", 1),
    ((0, 2), "runs", 2),      # two runs of rows: two GEMMs, fewest weight bytes (CPU)
    ((0, 2), "span", 1),      # one GEMM over rows 0..2 (GPU: one launch)
])
def test_only_the_read_rows_are_computed(read, policy, gemms):
    gm = _traced_reading(read)
    c = torch.randn(2, 4)
    expected = gm(c)
    assert prune_dead_chunks(gm, policy) == (gemms > 0)
    assert sum(n.target is F.linear for n in gm.graph.nodes) == gemms
    assert sum(n.op == "call_module" for n in gm.graph.nodes) == (1 if gemms == 0 else 0)
    for got, want in zip(gm(c), expected):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def _plan_graphs(compiled) -> list[fx.GraphModule]:
    return [program.__self__ for program in compiled._programs]


def test_reused_steps_skip_shift_and_scale_and_keep_the_gates(tiny_model):
    compiled = cache_model(tiny_model)
    steps, ids = 6, tuple(compiled.sites["site"])
    mask = np.ones((steps, len(ids)), bool)
    mask[1, :] = False  # every site reused at step 1
    mask[2, 0::2] = False  # attention sites reused at step 2, MLPs computed
    compiled.set_schedule(Schedule(mask, ids))
    plans = compiled.runtime.plan
    all_compute, all_reused, attn_reused = (_plan_graphs(compiled)[plans.plan_of_step[s]] for s in (0, 1, 2))
    size = tiny_model.blocks[0].adaLN_modulation[1].out_features // 6
    adaln_modules = sum(str(n.target).startswith("blocks.") and str(n.target).endswith("adaLN_modulation.1")
                        for n in all_compute.graph.nodes if n.op == "call_module")
    assert adaln_modules == len(tiny_model.blocks)  # all compute: the original linears
    expected = ((all_reused, [(2 * size, 3 * size), (5 * size, 6 * size)]), (attn_reused, [(2 * size, 6 * size)]))
    for graph, rows in expected:
        slices = [n.args[1] for n in graph.graph.nodes if n.target is operator.getitem and isinstance(n.args[1], slice)
                  and str(n.args[0].target).endswith("weight")]
        # per block: the gates only (two runs), or gate_msa through gate_mlp (one run);
        # never the shift/scale of a reused site
        assert [(s.start, s.stop) for s in slices] == rows * len(tiny_model.blocks)


def test_pruned_steps_match_the_full_conditioning(tiny_model, monkeypatch):
    """At reused steps the pruned model equals the same plans with every chunk computed."""
    compiled = cache_model(tiny_model)
    sampler = DDIMSampler(steps=6, guidance_scale=2.0)
    compiled.set_schedule(named_schedule("interval:2", tuple(compiled.sites["site"]), steps=6,
                                         timesteps=sampler.timesteps, predictor=GOCConfig.at_steps(0.8, range(2, 6))))
    size = tiny_model.input_size
    labels, noise = torch.arange(3), torch.randn(3, tiny_model.in_channels, size, size)
    pruned = sampler.sample(compiled, labels, noise, num_classes=tiny_model.num_classes)
    monkeypatch.setattr("gocopt.passes.specialize.prune_dead_chunks", lambda gm, policy: 0)
    compiled._specialized.clear()
    compiled.set_schedule(compiled.schedule, log=False)
    full = sampler.sample(compiled, labels, noise, num_classes=tiny_model.num_classes)
    torch.testing.assert_close(pruned, full, rtol=1e-5, atol=1e-6)
