"""The graph passes in isolation: a tiny inline module, trace, pass, lint, exact comparison."""

from __future__ import annotations

import operator

import torch
from torch import fx, nn

from gocopt.passes import insert_cache_sites, specialize_plan
from gocopt.passes.specialize import CACHE_INPUT, COEFFICIENTS_INPUT, combine, site_of
from gocopt.runtime.modules import CacheSite
from gocopt.schedule.plan import SiteHistory, StepPlan
from gocopt.trace.branches import find_branch_sites
from gocopt.trace.tracer import trace_module


class _Block(nn.Module):
    """``x + gate(c) · attn(norm(x))`` then ``x + mlp(x)``: a gated and an ungated residual branch."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4)
        self.attn = nn.Linear(4, 4)
        self.gate = nn.Linear(3, 4)
        self.mlp = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 4))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = x + self.gate(c).unsqueeze(1) * self.attn(self.norm(x))
        return x + self.mlp(x)


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"x": torch.randn(2, 5, 4, generator=g), "c": torch.randn(2, 3, generator=g)}


def _rewritten(block: nn.Module) -> tuple[fx.GraphModule, list[CacheSite]]:
    gm = trace_module(block, _inputs())
    sites = find_branch_sites(gm)
    made: list[CacheSite] = []

    def make(index: int, compute: fx.GraphModule) -> CacheSite:
        made.append(CacheSite(index, f"site{index}", compute))
        return made[-1]

    insert_cache_sites(gm, sites, list(range(len(sites))), make)
    return gm, made


def test_insert_cache_sites_moves_each_branch_into_a_call_and_stays_exact():
    torch.manual_seed(0)
    block = _Block().eval()
    state = {k: v.clone() for k, v in block.state_dict().items()}
    gm, made = _rewritten(block)
    gm.graph.lint()
    calls = [n for n in gm.graph.nodes if site_of(n) is not None]
    assert [c.target for c in calls] == ["gocopt_site_0", "gocopt_site_1"] and len(made) == 2
    assert not any(n.op == "call_module" and n.target in ("attn", "mlp.0", "mlp.2") for n in gm.graph.nodes)
    with torch.no_grad():
        assert torch.equal(gm(**_inputs()), block(**_inputs()))
    assert gm.get_submodule("attn") is block.attn  # parameters shared, never copied
    assert all(torch.equal(v, block.state_dict()[k]) for k, v in state.items())  # the block is untouched


def test_a_plan_inlines_computed_sites_and_predicts_reused_ones():
    torch.manual_seed(0)
    block = _Block().eval()
    gm, _ = _rewritten(block)
    inputs = _inputs()
    newer, older = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    goc = SiteHistory(slots=2, used=True, plain=False, affine=True)  # GOC's queue of used values
    plan = StepPlan((False, True), (goc, SiteHistory()))
    graph = specialize_plan(gm, plan, {0: 1, 1: 1})
    graph.graph.lint()
    nodes = list(graph.graph.nodes)
    assert not any(site_of(n) is not None for n in nodes)  # no decisions left: straight-line code
    assert [n.name for n in nodes if n.op == "placeholder"] == ["x", "c", CACHE_INPUT, COEFFICIENTS_INPUT]
    assert sum(n.target is combine for n in nodes) == 1 and sum(n.target is torch.addcmul for n in nodes) == 1
    assert not any(n.target is operator.mul and any(a.target is combine for a in n.all_input_nodes) for n in nodes)
    with torch.no_grad():
        for w in (0.5, -0.25):  # the coefficients are data: one graph serves every step of this shape
            out, kept = graph(**inputs, gocopt_cache=(newer, older), gocopt_coefficients=torch.tensor([1 + w, -w]))
            used = (1 + w) * newer - w * older  # the GOC prediction, kept as the newest used value
            h = inputs["x"] + block.gate(inputs["c"]).unsqueeze(1) * used
            torch.testing.assert_close(out, h + block.mlp(h))
            torch.testing.assert_close(kept[0], used)
            assert kept[1] is newer  # the history moves by reference: the oldest value drops out


def test_a_history_of_computed_values_is_not_pushed_by_reuse():
    """Taylor/fitted histories hold computed values only: a reuse hands its slots on unchanged."""
    block = _Block().eval()
    gm, _ = _rewritten(block)
    a, b, c = (torch.randn(2, 5, 4) for _ in range(3))
    fitted = SiteHistory(slots=3, used=False, plain=False, affine=False)
    graph = specialize_plan(gm, StepPlan((False, True), (fitted, SiteHistory())), {0: 1, 1: 1})
    with torch.no_grad():
        out, kept = graph(**_inputs(), gocopt_cache=(a, b, c), gocopt_coefficients=torch.tensor([2.5, -2.0, 0.5]))
    assert kept == (a, b, c)
    fresh = specialize_plan(gm, StepPlan((True, True), (fitted, SiteHistory())), {0: 1, 1: 1})
    with torch.no_grad():
        _, kept = fresh(**_inputs(), gocopt_cache=(a, b, c))
    assert kept[1:] == (a, b) and not any(kept[0] is t for t in (a, b, c))


def test_an_all_compute_plan_is_the_original_graph():
    torch.manual_seed(0)
    block = _Block().eval()
    gm, _ = _rewritten(block)
    graph = specialize_plan(gm, StepPlan((True, True)), {0: 1, 1: 1})
    with torch.no_grad():
        out, kept = graph(**_inputs())
        assert torch.equal(out, block(**_inputs())) and kept == ()
