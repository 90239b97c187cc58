"""The conditioning pass: adaLN chunks that only reused sites read are not computed."""

from __future__ import annotations

import torch
from torch import fx, nn

from gocopt.compiled import cache_model
from gocopt.passes import sites_only_reached
from gocopt.runtime import GOCConfig
from gocopt.runtime.modules import ConditioningChunks
from gocopt.sampling import DDIMSampler
from gocopt.schedule import named_schedule


def _chunk_modules(compiled) -> list[ConditioningChunks]:
    return [m for m in compiled.module.modules() if isinstance(m, ConditioningChunks)]


def test_each_block_shift_and_scale_are_pruned_and_gates_kept(tiny_model):
    compiled = cache_model(tiny_model)
    chunks = _chunk_modules(compiled)
    assert len(chunks) == len(tiny_model.blocks)  # the final layer's adaLN feeds no site: left alone
    sites = compiled.sites
    for block, module in enumerate(chunks):
        attn = int(sites.index[(sites["block"] == block) & (sites["kind"] == "attn")][0])
        mlp = int(sites.index[(sites["block"] == block) & (sites["kind"] == "mlp")][0])
        # official chunk order: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp
        assert module.consumers == ((attn,), (attn,), None, (mlp,), (mlp,), None)


def test_pruned_steps_match_the_full_conditioning(tiny_model):
    """At reused steps the pruned model equals the same schedule with every chunk computed."""
    compiled = cache_model(tiny_model)
    sampler = DDIMSampler(steps=6, guidance_scale=2.0)
    compiled.set_schedule(named_schedule("interval:2", tuple(compiled.sites["site"]), steps=6,
                                         timesteps=sampler.timesteps, goc=GOCConfig.at_steps(0.8, range(2, 6))))
    zeros_seen = []
    hook = _chunk_modules(compiled)[0].register_forward_hook(
        lambda module, args, out: zeros_seen.append(bool((out[0] == 0).all())))
    labels, noise = torch.arange(3), torch.randn(3, tiny_model.in_channels, tiny_model.input_size, tiny_model.input_size)
    pruned = sampler.sample(compiled, labels, noise, num_classes=tiny_model.num_classes)
    hook.remove()
    assert zeros_seen == [False, True] * 3  # shift_msa skipped exactly at the reused steps
    compiled.runtime.computes = lambda sites: True  # force the full linear everywhere
    full = sampler.sample(compiled, labels, noise, num_classes=tiny_model.num_classes)
    torch.testing.assert_close(pruned, full, rtol=1e-5, atol=1e-6)


class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 12)
        self.site = nn.Identity()

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.linear(c).chunk(3, dim=-1)
        return x + gate * self.site(x * (1 + scale) + shift)


def test_a_chunk_is_prunable_only_if_every_path_ends_in_a_site():
    gm = fx.symbolic_trace(_Toy())
    nodes = {n.name: n for n in gm.graph.nodes}
    nodes["site"].meta["gocopt"] = {"site": 7}
    getitems = [n for n in gm.graph.nodes if n.op == "call_function" and "getitem" in n.name]
    shift, scale, gate = sorted(getitems, key=lambda n: n.args[1])
    assert sites_only_reached(shift) == frozenset({7})
    assert sites_only_reached(scale) == frozenset({7})
    assert sites_only_reached(gate) is None  # the gate multiplies the site's output: always needed
