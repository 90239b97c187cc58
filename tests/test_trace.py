"""Site discovery from the fx graph, the fallback chain, and the rewrite's exactness."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from examples.diffusers.tiny import build
from gocopt.compiled import cache_model
from gocopt.errors import TraceError
from gocopt.models import model_by_name
from gocopt.models.dit import DiTBlock
from gocopt.trace import find_sites
from gocopt.trace.tracer import GuardError


def test_dit_s2_has_exactly_an_attention_and_an_mlp_site_per_block():
    table = find_sites(model_by_name("DiT-S/2"))
    assert list(table["site"]) == [f"blocks.{i}.{k}" for i in range(12) for k in ("attn", "mlp")]
    assert list(table["kind"]) == ["attn", "mlp"] * 12
    assert list(table["block"]) == [i for i in range(12) for _ in range(2)]
    assert set(table["granularity"]) == {"branch"} and table.attrs["mode"] == "whole"
    assert table.attrs["coverage"] >= 0.95
    attn, mlp = table.iloc[0], table.iloc[1]
    # sites end before the gate: the adaLN linear and the gate multiply stay outside
    assert "qkv" in attn["nodes"] and "adaLN" not in attn["nodes"]
    assert mlp["flops"] > attn["flops"] > 0  # 16 tokens × 384: the MLP's 8·D² beats attention's 4·D² + T·D


def test_tiny_dit_site_list_is_exact(tiny_model):
    table = find_sites(tiny_model)
    assert list(table["site"]) == ["blocks.0.attn", "blocks.0.mlp", "blocks.1.attn", "blocks.1.mlp"]


@pytest.mark.parametrize("name", ["DiT-S/2", "DiT-XL/2"])
def test_all_compute_rewrite_is_bit_exact_for_gocopt_dits(name):
    from gocopt.models import dit
    from gocopt.models.reference import randomize_adaln

    torch.manual_seed(0)
    model = dit(name, input_size=16)  # full width and depth; a 16×16 latent keeps it quick
    randomize_adaln(model)  # non-zero adaLN: blocks are not identities
    model.eval()
    compiled = cache_model(model)
    x, t, y = model.example_inputs(batch_size=3)
    with torch.no_grad():
        assert torch.equal(compiled(x, t, y), model(x, t, y))


@pytest.mark.parametrize("name,kinds", [
    ("dit", ["attn", "mlp"]),
    ("pixart", ["attn", "cross_attn", "mlp"]),
    ("sd3", ["joint_attn", "mlp", "mlp"]),
    ("flux", ["joint_attn", "mlp", "mlp"]),
])
def test_diffusers_transformers_trace_whole_and_rewrite_bit_exact(name, kinds):
    model, call = build(name)
    with torch.no_grad():
        expected = model(**call)[0]
        compiled = cache_model(model, example_inputs=call)
        assert torch.equal(compiled(**call)[0], expected)
    table = compiled.sites
    assert list(table[table["block"] == 0]["kind"]) == kinds
    assert table.attrs["coverage"] >= 0.9  # tiny widths: norms and adaLN weigh more than at real sizes
    if name == "flux":
        assert list(table[table["block"] >= 2]["kind"]) == ["attn_mlp", "attn_mlp"]  # single-stream blocks


def test_compiled_model_shares_the_original_parameters_and_leaves_it_untouched(tiny_model):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    modules_before = dict(tiny_model.named_modules())
    compiled = cache_model(tiny_model)
    original_ptrs = {p.data_ptr() for p in tiny_model.parameters()}
    assert {p.data_ptr() for p in compiled.parameters()} == original_ptrs
    assert dict(tiny_model.named_modules()).keys() == modules_before.keys()
    assert all(torch.equal(v, tiny_model.state_dict()[k]) for k, v in before.items())
    assert compiled.num_classes == tiny_model.num_classes  # attribute reads fall through


def test_a_graph_specialised_on_an_input_size_refuses_another_size():
    model, call = build("dit")
    compiled = cache_model(model, example_inputs=call)
    bigger = dict(call, hidden_states=torch.randn(2, 4, 16, 16))
    with pytest.raises(GuardError, match="re-trace"):
        compiled(**bigger)


def test_changed_constant_argument_is_refused():
    model, call = build("dit")
    compiled = cache_model(model, example_inputs=call)
    with pytest.raises(TraceError, match="return_dict"):
        compiled(**dict(call, return_dict=True))


# -- fallbacks ------------------------------------------------------------------------------


def _checked(x):
    """Input validation as real model code does it; a proxy is no tensor, so tracing fails here."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a tensor, got {type(x).__name__}")
    return x


class _OpaqueAttention(nn.Module):
    def __init__(self, attn):
        super().__init__()
        self.inner = attn

    def forward(self, x):
        return _checked(self.inner(x))


class _UntraceableTop(nn.Module):
    """Blocks of a DiT behind a forward that fx cannot trace; ``variant`` breaks the blocks too."""

    def __init__(self, variant: str):
        super().__init__()
        base = model_by_name("DiT-Tiny")
        self.embed = base.x_embedder
        self.blocks = base.blocks
        self.cond = nn.Parameter(torch.randn(1, 32) * 0.1)
        if variant == "attention":
            for block in self.blocks:
                block.attn = _OpaqueAttention(block.attn)
        elif variant == "block":
            for i, block in enumerate(self.blocks):
                block.__class__ = _CheckingBlock  # same class for all: still one block list
                block.check = i == 1

    def forward(self, x):
        h = _checked(self.embed(x))
        c = self.cond.expand(x.shape[0], -1)
        for block in self.blocks:
            h = block(h, c)
        return h


class _CheckingBlock(DiTBlock):
    """A DiT block whose forward validates its input when ``check`` is set: untraceable then."""

    check = False

    def forward(self, x, c):
        if self.check:
            _checked(x)
        return super().forward(x, c)


@pytest.mark.parametrize("variant,expected", [
    ("plain", ["branch", "branch", "branch", "branch"]),
    ("attention", ["branch", "branch", "branch", "branch"]),
    ("block", ["branch", "branch", "block"]),
])
def test_fallback_chain(variant, expected, caplog):
    model = _UntraceableTop(variant).eval()
    x = torch.randn(3, 1, 8, 8)
    blocks_before = list(model.blocks)
    with caplog.at_level(logging.INFO, logger="gocopt"):
        compiled = cache_model(model, example_inputs=(x,))
    assert compiled.mode == "per_block"
    assert list(compiled.sites["granularity"]) == expected
    assert "tracing block by block" in caplog.text
    with torch.no_grad():
        assert torch.equal(compiled(x), model(x))
    notes = " ".join(compiled.sites.attrs["notes"])
    if variant == "attention":
        assert "attention kept as leaves" in notes
    if variant == "block":
        assert "cached as a whole block" in notes and "blocks.1.block" in list(compiled.sites["site"])
        assert compiled.module.blocks[1].attn is model.blocks[1].attn  # the wrapper keeps attribute access
    assert all(a is b for a, b in zip(model.blocks, blocks_before))  # the user's block list is untouched


def test_model_without_blocks_gets_a_clear_error():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    with pytest.raises(TraceError, match="no transformer block list"):
        find_sites(model, example_inputs=(torch.randn(2, 4),))


def test_missing_example_inputs_are_asked_for():
    model, _ = build("dit")
    with pytest.raises(TraceError, match="example inputs"):
        find_sites(model)
