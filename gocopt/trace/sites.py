"""From a model and one example call to its cache sites: the fallback chain and the site table.

1. Trace the whole model (:mod:`gocopt.trace.tracer`) and find residual branches in the graph.
2. If that fails, trace each transformer block on its own, first through everything, then with
   attention modules, then attention and feed-forward modules kept as opaque leaves.
3. If a block still does not trace, cache that block whole (its residual delta), and say so.

Every step that falls back is logged at INFO and recorded in the table's ``trace`` column.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import fx, nn

from gocopt.errors import TraceError
from gocopt.trace.blocks import block_of, record_block_calls
from gocopt.trace.branches import BranchSite, find_branch_sites
from gocopt.trace.flops import FlopCounter, flops_by_module
from gocopt.trace.tracer import LeafPredicate, bind_call, trace_module

logger = logging.getLogger(__name__)


def _is_attention_like(m: nn.Module) -> bool:
    name = type(m).__name__.lower()
    return "attention" in name or "attn" in name


def _is_attention_or_mlp_like(m: nn.Module) -> bool:
    name = type(m).__name__.lower()
    return _is_attention_like(m) or any(k in name for k in ("feedforward", "mlp", "ffn"))


_BLOCK_LEAF_LADDER: tuple[tuple[str, LeafPredicate | None], ...] = (
    ("traced through", None),
    ("attention kept as leaves", _is_attention_like),
    ("attention and feed-forward kept as leaves", _is_attention_or_mlp_like),
)


@dataclass(frozen=True)
class Site:
    """One cache site: what the schedule turns on and off.

    Attributes:
        index: column of the schedule mask.
        site_id: stable name, the module path of the branch (``blocks.3.attn``).
        block: index of the transformer block, in the order forward runs them.
        kind: ``attn``, ``cross_attn``, ``joint_attn``, ``attn_mlp``, ``mlp`` or ``block``.
        graph: ``""`` for the whole-model graph, else the path of the block whose graph holds it.
        granularity: ``branch`` (a residual branch) or ``block`` (a whole block's delta).
        flops: measured FLOPs of one call at the example input.
        nodes: names of the fx nodes skipped when the site is reused.
        outputs: how many tensors the site hands back (2 for a joint attention).
    """

    index: int
    site_id: str
    block: int
    kind: str
    graph: str
    granularity: str
    flops: int
    nodes: tuple[str, ...]
    outputs: int


@dataclass
class TracedModel:
    """The result of tracing: graphs to rewrite and the sites in them (nothing rewritten yet)."""

    model: nn.Module
    call: dict[str, Any]
    mode: str  # "whole" or "per_block"
    graphs: dict[str, fx.GraphModule]
    branch_sites: dict[str, list[BranchSite]]
    block_sites: list[str]  # blocks cached whole
    sites: list[Site]
    block_paths: list[str]
    block_flops: int
    notes: list[str] = field(default_factory=list)
    block_calls: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-block mode: example calls
    branch_of: dict[int, BranchSite] = field(default_factory=dict)  # site index → its branch in a graph

    @property
    def site_flops(self) -> int:
        return sum(s.flops for s in self.sites)

    def table(self) -> pd.DataFrame:
        rows = [
            {
                "site": s.site_id, "block": s.block, "kind": s.kind, "granularity": s.granularity,
                "trace": "whole model" if self.mode == "whole"
                else ("block cached whole" if s.granularity == "block" else "per block"),
                "flops": s.flops, "flops_share": s.flops / max(1, self.site_flops), "outputs": s.outputs,
                "nodes": ",".join(s.nodes),
            }
            for s in self.sites
        ]
        frame = pd.DataFrame(rows, index=pd.RangeIndex(len(rows), name="index"))
        frame.attrs.update(mode=self.mode, block_flops=self.block_flops, site_flops=self.site_flops,
                           coverage=self.site_flops / max(1, self.block_flops), notes=list(self.notes))
        return frame


def example_call(model: nn.Module, example_inputs: Any = None) -> dict[str, Any]:
    """Bind example inputs to ``model.forward``; gocopt's own DiTs make their own."""
    if example_inputs is None:
        make = getattr(model, "example_inputs", None)
        if make is None:
            raise TraceError(
                f"{type(model).__name__} needs example inputs to trace: pass example_inputs= as a tuple of "
                "positional arguments, a dict of keyword arguments, or (args, kwargs) — one real call of the model"
            )
        example_inputs = make()
    if isinstance(example_inputs, dict):
        args, kwargs = (), example_inputs
    elif isinstance(example_inputs, tuple) and len(example_inputs) == 2 and isinstance(example_inputs[1], dict) \
            and isinstance(example_inputs[0], (tuple, list)):
        args, kwargs = tuple(example_inputs[0]), example_inputs[1]
    else:
        args, kwargs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,), {}
    return bind_call(model, args, kwargs)


def trace_sites(model: nn.Module, example_inputs: Any = None) -> TracedModel:
    """Trace ``model`` on one example call and find its cache sites (see the module docstring)."""
    call = example_call(model, example_inputs)
    block_calls = record_block_calls(model, call)
    block_paths = list(block_calls)
    by_module = flops_by_module(model, block_paths, **call)
    block_flops = sum(by_module.get(b, 0) for b in block_paths)
    try:
        gm = trace_module(model, call)
        sites = find_branch_sites(gm)
        if not sites:
            raise TraceError("the whole-model graph has no residual branch with a linear, matmul or attention")
    except Exception as e:  # noqa: BLE001 - any tracer failure means: try block by block
        logger.info("whole-model trace of %s failed (%s: %s); tracing block by block",
                    type(model).__name__, type(e).__name__, str(e).splitlines()[0][:200])
        return _trace_per_block(model, call, block_calls, by_module, block_flops, first_error=e)
    traced = TracedModel(model, call, "whole", {"": gm}, {"": sites}, [], [], block_paths, block_flops)
    traced.sites = _number_sites(traced, {"": _node_flops(gm, call)}, by_module)
    _log_summary(traced)
    return traced


def _trace_per_block(model, call, calls, by_module, block_flops, first_error) -> TracedModel:
    traced = TracedModel(model, call, "per_block", {}, {}, [], [], list(calls), block_flops,
                         notes=[f"whole-model trace failed: {type(first_error).__name__}: "
                                f"{str(first_error).splitlines()[0][:200]}"])
    node_flops = {}
    for path, (args, kwargs) in calls.items():
        block = model.get_submodule(path)
        block_call = bind_call(block, args, kwargs)
        reasons = []
        for how, leaf in _BLOCK_LEAF_LADDER:
            try:
                gm = trace_module(block, block_call, leaf)
                sites = find_branch_sites(gm)
            except Exception as e:  # noqa: BLE001 - a failed rung is recorded, and the next one tried
                reasons.append(f"{how}: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
                continue
            if sites:
                traced.graphs[path], traced.branch_sites[path] = gm, sites
                traced.block_calls[path] = block_call
                node_flops[path] = _node_flops(gm, block_call)
                if leaf is not None:
                    traced.notes.append(f"{path}: traced with {how}")
                break
            reasons.append(f"{how}: no residual branch found in the block's graph")
        else:
            traced.block_sites.append(path)
            note = f"{path}: cached as a whole block ({'; '.join(reasons)})"
            traced.notes.append(note)
            logger.info(note)
    traced.sites = _number_sites(traced, node_flops, by_module)
    _log_summary(traced)
    return traced


def _forward_owner(bs: BranchSite) -> str:
    """The module whose forward runs the branch's residual add (``""``: the model's own forward)."""
    stack = bs.residuals[0].meta.get("nn_module_stack") if bs.residuals else None
    return list(stack.values())[-1][0] if stack else ""


def _place_graph_blocks(traced: TracedModel, node_flops: dict[str, dict[str, int]]) -> None:
    """Blocks that only the graph shows: branches in no block list run in some module's forward (or
    the model's own). Each such module becomes a block, ordered where the graph runs it, its FLOPs
    counted from the graph's nodes (so the site table's coverage stays true)."""
    gm = traced.graphs.get("")
    if traced.mode != "whole" or gm is None:
        return
    position = {node: i for i, node in enumerate(gm.graph.nodes)}
    first: dict[str, int] = {}
    for bs in traced.branch_sites.get("", []):
        block = block_of(bs.module_path, traced.block_paths)
        if block is None:
            block = _forward_owner(bs)
            traced.notes.append(f"{bs.module_path or '<model>'}: residual branch outside the block lists, in the "
                                f"forward of {block or 'the model itself'}; cached as part of that block")
        first[block] = min(first.get(block, len(position)), position[bs.outputs[0]])
    extra = [b for b in first if b not in traced.block_paths]
    if not extra:
        return
    for block in extra:
        nodes = [n for n in gm.graph.nodes if block and any(path == block or path.startswith(block + ".")
                                                         for path, _ in (n.meta.get("nn_module_stack") or {}).values())]
        if not block:  # the model's own forward: only the branches themselves count as block work
            nodes = [n for bs in traced.branch_sites[""] if _forward_owner(bs) == "" for n in bs.nodes]
        traced.block_flops += sum(node_flops[""].get(n.name, 0) for n in nodes)
    known = list(traced.block_paths)  # in call order; blocks without sites keep it, after the others
    traced.block_paths = sorted(known + extra, key=lambda b: first[b] if b in first else len(position) + known.index(b))


def _number_sites(traced: TracedModel, node_flops: dict[str, dict[str, int]], by_module: dict[str, int]) -> list[Site]:
    _place_graph_blocks(traced, node_flops)
    block_index = {path: i for i, path in enumerate(traced.block_paths)}
    found: list[tuple[int, int, Site, BranchSite | None]] = []
    for graph_path, branch_sites in traced.branch_sites.items():
        for order, bs in enumerate(branch_sites):
            module_path = ".".join(p for p in (graph_path, bs.module_path) if p)
            block = block_of(module_path, traced.block_paths)
            if block is None:
                block = _forward_owner(bs) if graph_path == "" else None
            if block is None or block not in block_index:
                traced.notes.append(f"residual branch at {module_path or '<root>'} is outside every block; not cached")
                continue
            site_id = module_path if module_path != block else f"{block}.{bs.kind}"
            flops = sum(node_flops[graph_path].get(n.name, 0) for n in bs.nodes)
            found.append((block_index[block], order, Site(0, site_id, block_index[block], bs.kind, graph_path,
                                                          "branch", flops, tuple(n.name for n in bs.nodes),
                                                          len(bs.outputs)), bs))
    for path in traced.block_sites:
        found.append((block_index[path], 0, Site(0, f"{path}.block", block_index[path], "block", path, "block",
                                                 by_module.get(path, 0), (), 1), None))
    found.sort(key=lambda item: (item[0], item[1]))
    sites, seen = [], set()
    for index, (_, _, site, branch) in enumerate(found):
        site_id = site.site_id if site.site_id not in seen else f"{site.site_id}#{index}"
        seen.add(site_id)
        sites.append(dataclasses.replace(site, index=index, site_id=site_id))
        if branch is not None:
            traced.branch_of[index] = branch
    return sites


@torch.no_grad()
def _node_flops(gm: fx.GraphModule, call: dict[str, Any]) -> dict[str, int]:
    """FLOPs of every node of ``gm`` on the example call (an fx Interpreter, one node at a time)."""

    class _Counting(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            with FlopCounter() as counter:
                out = super().run_node(n)
            flops[n.name] = counter.total
            return out

    flops: dict[str, int] = {}
    args = [call[str(n.target)] for n in gm.graph.nodes if n.op == "placeholder"]
    _Counting(gm).run(*args)
    return flops


def _log_summary(traced: TracedModel) -> None:
    kinds = pd.Series([s.kind for s in traced.sites]).value_counts().to_dict() if traced.sites else {}
    logger.info("%s: %d cache sites in %d blocks (%s), covering %.1f%% of block FLOPs, traced %s",
                type(traced.model).__name__, len(traced.sites), len(traced.block_paths),
                ", ".join(f"{v} {k}" for k, v in kinds.items()),
                100 * traced.site_flops / max(1, traced.block_flops), traced.mode.replace("_", " "))


def find_sites(model: nn.Module, example_inputs: Any = None) -> pd.DataFrame:
    """The cache sites of ``model`` as a DataFrame, one row per site (see :class:`Site`).

    ``example_inputs``: one real call of the model — a tuple of positional arguments, a dict of
    keyword arguments, or ``(args, kwargs)``. gocopt's own DiTs need none.
    ``frame.attrs`` holds the trace mode, FLOP coverage of the blocks and any fallback notes.
    """
    return trace_sites(model, example_inputs).table()


__all__ = ["Site", "TracedModel", "example_call", "find_sites", "trace_sites"]
