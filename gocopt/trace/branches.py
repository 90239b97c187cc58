"""Find residual branches in an fx graph: ``h = h + gate * branch(h, c)`` → a cache site.

A pure analysis from graph to a list of :class:`BranchSite` records; nothing is mutated. The
rules, all read off the graph (no model names, no generated node names):

1. A *residual add* is an ``add`` of two values where one (the stream ``h``) is an ancestor of
   the other (the branch), and the branch contains at least one *heavy* op (a linear, conv,
   matmul or attention).
2. Where the branch is ``gate * y`` and the gate does not depend on the stream (adaLN-Zero), the
   site ends at ``y``: the current step's gate then multiplies a reused value (GOC.md §2).
3. The site's nodes are the nodes between the stream and ``y``, pruned so that no node the rest
   of the graph still needs is skipped (a shared norm, an adaLN chunk): a node stays only if all
   of its users stay. What is pruned is always computed and becomes an input of the site.
4. Branches whose node sets overlap (a joint attention that feeds two streams, as in SD3 and
   Flux) form one site with several outputs.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import NamedTuple

import networkx as nx
import torch
import torch.nn.functional as F
from torch import fx

_ADD = {operator.add, operator.iadd, torch.add}
_MUL = {operator.mul, operator.imul, torch.mul}
_HEAVY_FUNCTIONS = {F.linear, torch.matmul, torch.bmm, torch.baddbmm, torch.einsum, F.conv1d, F.conv2d,
                    F.conv3d, F.scaled_dot_product_attention, operator.matmul}
_HEAVY_METHODS = {"matmul", "bmm", "baddbmm"}
_ATTENTION_FUNCTIONS = {F.scaled_dot_product_attention, F.softmax, torch.softmax}
KINDS = ("attn", "cross_attn", "joint_attn", "attn_mlp", "mlp", "block")


@dataclass(frozen=True)
class BranchSite:
    """One cache site found in one graph.

    Attributes:
        nodes: the site's nodes in graph order; these are skipped when the site is reused.
        inputs: nodes outside the site that it reads (``get_attr`` nodes excluded: copied in).
        outputs: the branch values handed back to the graph (before any gate).
        streams: the residual stream value(s) the branch reads.
        kind: one of ``KINDS``.
        module_path: the deepest module that holds all of the site's heavy ops.
        residuals: the residual add(s) ``h + …`` the branch feeds (where its block's forward runs).
    """

    nodes: tuple[fx.Node, ...]
    inputs: tuple[fx.Node, ...]
    outputs: tuple[fx.Node, ...]
    streams: tuple[fx.Node, ...]
    kind: str
    module_path: str
    residuals: tuple[fx.Node, ...] = ()


def graph_to_networkx(graph: fx.Graph) -> nx.DiGraph:
    """Data-flow DiGraph of an fx graph: an edge from every node to each of its users."""
    g = nx.DiGraph()
    for node in graph.nodes:
        g.add_node(node)
        for user in node.users:
            g.add_edge(node, user)
    return g


class _Candidate(NamedTuple):
    """One residual add ``stream + … output …`` and the nodes between the two."""

    stream: fx.Node
    output: fx.Node
    nodes: set[fx.Node]
    residual: fx.Node


def find_branch_sites(gm: fx.GraphModule) -> list[BranchSite]:
    """Every residual branch of ``gm`` with real work in it, as sites, in graph order."""
    graph = gm.graph
    dataflow = graph_to_networkx(graph)
    order = {node: i for i, node in enumerate(graph.nodes)}
    ancestors = _Memo(lambda n: nx.ancestors(dataflow, n))
    descendants = _Memo(lambda n: nx.descendants(dataflow, n))

    candidates: list[_Candidate] = []
    for node in graph.nodes:
        pair = _residual_pair(node, ancestors)
        if pair is None:
            continue
        stream, branch = pair
        output = _strip_gate(branch, stream, ancestors)
        nodes = (descendants(stream) & ancestors(output)) | {output}
        if any(_is_heavy(gm, n) for n in nodes):
            candidates.append(_Candidate(stream, output, nodes, node))

    sites = []
    for group in _overlapping_groups(candidates):
        streams = tuple(dict.fromkeys(c.stream for c in group))
        outputs = tuple(c.output for c in group)
        nodes = _prune_to_skippable(set().union(*(c.nodes for c in group)), outputs, order)
        if not any(_is_heavy(gm, n) for n in nodes):
            continue  # everything expensive is shared with the rest of the graph
        ordered = tuple(sorted(nodes, key=order.__getitem__))
        inputs = tuple(dict.fromkeys(
            a for n in ordered for a in n.all_input_nodes if a not in nodes and a.op != "get_attr"
        ))
        kind = _classify(gm, ordered, streams, outputs, ancestors, descendants)
        sites.append(BranchSite(ordered, inputs, outputs, streams, kind, _module_path(gm, ordered),
                                tuple(c.residual for c in group)))
    sites.sort(key=lambda s: order[s.outputs[0]])
    return sites


# --------------------------------------------------------------------------------------------


class _Memo:
    def __init__(self, fn):
        self.fn, self.cache = fn, {}

    def __call__(self, node):
        if node not in self.cache:
            self.cache[node] = self.fn(node)
        return self.cache[node]


def _residual_pair(node: fx.Node, ancestors: _Memo) -> tuple[fx.Node, fx.Node] | None:
    is_add = (node.op == "call_function" and node.target in _ADD) or (node.op == "call_method" and node.target == "add")
    if not is_add or len(node.args) < 2:
        return None
    a, b = node.args[0], node.args[1]
    if not isinstance(a, fx.Node) or not isinstance(b, fx.Node):
        return None
    if a in ancestors(b):
        return a, b
    if b in ancestors(a):
        return b, a
    return None


def _strip_gate(branch: fx.Node, stream: fx.Node, ancestors: _Memo) -> fx.Node:
    """``gate * y`` → ``y`` when the gate is computed from the conditioning alone."""
    is_mul = ((branch.op == "call_function" and branch.target in _MUL)
              or (branch.op == "call_method" and branch.target == "mul"))
    if not is_mul or len(branch.args) < 2:
        return branch
    p, q = branch.args[0], branch.args[1]
    for gate, value in ((p, q), (q, p)):
        if isinstance(value, fx.Node) and stream in ancestors(value) | {value}:
            if not isinstance(gate, fx.Node) or stream not in ancestors(gate):
                return value
    return branch


def _overlapping_groups(candidates):
    groups: list[list] = []
    for cand in candidates:
        merged = [g for g in groups if any(cand.nodes & c.nodes for c in g)]
        for g in merged:
            groups.remove(g)
        groups.append([c for g in merged for c in g] + [cand])
    return groups


def _prune_to_skippable(nodes: set[fx.Node], outputs: tuple[fx.Node, ...], order: dict) -> set[fx.Node]:
    kept: set[fx.Node] = set()
    for node in sorted(nodes, key=order.__getitem__, reverse=True):  # users before producers
        if node in outputs or (node.users and all(u in kept for u in node.users)):
            if node.op not in ("placeholder", "get_attr", "output"):
                kept.add(node)
    return kept


def _module_of(gm: fx.GraphModule, node: fx.Node) -> torch.nn.Module | None:
    if node.op != "call_module":
        return None
    try:
        return gm.get_submodule(str(node.target))
    except AttributeError:
        return None


def _is_attention_module(module: torch.nn.Module | None) -> bool:
    name = type(module).__name__.lower() if module is not None else ""
    return "attention" in name or "attn" in name


def _is_heavy(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_function":
        return node.target in _HEAVY_FUNCTIONS
    if node.op == "call_method":
        return node.target in _HEAVY_METHODS
    if node.op == "call_module":
        module = _module_of(gm, node)
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
            return True
        return module is not None and any(p.dim() >= 2 for p in module.parameters())  # a leaf block
    return False


def _is_attention(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_function":
        return node.target in _ATTENTION_FUNCTIONS
    if node.op == "call_method":
        return node.target == "softmax"
    return node.op == "call_module" and _is_attention_module(_module_of(gm, node))


def _attention_context(node: fx.Node) -> fx.Node | None:
    """The key/value source of an attention op (second input), if it is a graph value."""
    if node.op == "call_function" and node.target is F.scaled_dot_product_attention:
        key = node.args[1] if len(node.args) > 1 else node.kwargs.get("key")
        return key if isinstance(key, fx.Node) else None
    if node.op == "call_module":
        ctx = node.kwargs.get("encoder_hidden_states", node.args[1] if len(node.args) > 1 else None)
        return ctx if isinstance(ctx, fx.Node) else None
    return None


def _classify(gm, nodes, streams, outputs, ancestors, descendants) -> str:
    attention = [n for n in nodes if _is_attention(gm, n)]
    if not attention:
        return "mlp"
    if len(outputs) > 1:
        return "joint_attn"
    related = set().union(*(ancestors(a) | descendants(a) | {a} for a in attention))
    if any(_is_heavy(gm, n) and n not in related for n in nodes):
        return "attn_mlp"  # attention and an MLP side by side (Flux single-stream blocks)
    for a in attention:
        context = _attention_context(a)
        if context is not None and not any(s in ancestors(context) | {context} for s in streams):
            return "cross_attn"
    return "attn"


def _module_path(gm: fx.GraphModule, nodes: tuple[fx.Node, ...]) -> str:
    """Common module prefix of the site's heavy nodes, from the tracer's module stack."""
    paths = []
    for node in nodes:
        if not _is_heavy(gm, node):
            continue
        if node.op == "call_module":
            paths.append(str(node.target).split("."))
            continue
        stack = node.meta.get("nn_module_stack") or {}
        path = list(stack.values())[-1][0] if stack else ""
        paths.append(path.split(".") if path else [])
    common: list[str] = []
    for parts in zip(*paths):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return ".".join(common)
