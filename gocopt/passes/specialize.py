"""Specialise a rewritten graph to one step plan: a straight-line graph, no decisions left.

``specialize_plan`` does not touch the graph it is given; it returns a new ``GraphModule`` (sharing
every submodule and parameter) with the calling convention

    forward(*original inputs, gocopt_cache) -> (output, cache_out)            # or
    forward(*original inputs, gocopt_cache) -> (output, cache_out, observed)  # plan.observe

where ``gocopt_cache`` is the flat tuple of kept values the plan reads (``plan.keep_in``, each
site's outputs in order) and ``cache_out`` the tuple it hands to the next step (``plan.keep_out``).
For every site of the graph:

* computed — the site's own nodes are inlined where its call was: with every site computed the
  graph runs exactly the original operations (bit-identical output);
* reused — its value is the plan's prediction from kept values: the kept value itself (plain
  reuse) or one ``torch.lerp`` (two terms whose coefficients sum to one, e.g. GOC), and the gated
  residual add that consumes it, ``h + gate * value``, becomes one ``torch.addcmul``.

Then dead code goes (the reused branches' shift/scale) and :func:`prune_dead_chunks` computes
only the conditioning rows that are still read.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import cast

import torch
from torch import fx

from gocopt.errors import PassError
from gocopt.passes.prune_conditioning import ChunkPolicy, prune_dead_chunks
from gocopt.schedule.plan import Reuse, StepPlan
from gocopt.trace.tracer import eliminate_dead_code

CACHE_INPUT = "gocopt_cache"
_MULS = (operator.mul, torch.mul)
_ADDS = (operator.add, torch.add)


def site_of(node: fx.Node) -> int | None:
    """The site index of a call inserted by :func:`insert_cache_sites`, else ``None``."""
    return (node.meta.get("gocopt") or {}).get("site")


def predict(coefficients: Sequence[float], values: Sequence[torch.Tensor]) -> torch.Tensor:
    """``Σ c_k · values[k]`` in as few passes over memory as the terms allow.

    Plain reuse is the value itself (no op); two terms whose coefficients sum to one (GOC,
    TaylorSeer order 1) are one ``lerp``. Called from step-plan graphs and, eagerly, by blocks
    cached whole.
    """
    if len(values) == 1 and coefficients[0] == 1.0:
        return values[0]
    if len(values) == 2 and abs(sum(coefficients) - 1.0) < 1e-12:
        return torch.lerp(values[0], values[1], coefficients[1])
    total = values[0] * coefficients[0]
    for value, c in zip(values[1:], coefficients[1:]):
        total = torch.add(total, value, alpha=c)
    return total


def _predict(graph: fx.Graph, reuse: Reuse, values: list[fx.Node]) -> fx.Node:
    coefficients = tuple(c for _, c in reuse.terms)
    if reuse.is_plain:
        return values[0]
    return graph.call_function(predict, (coefficients, tuple(values)))


def fuse_gated_residuals(graph: fx.Graph, values: Mapping[fx.Node, int]) -> int:
    """``h + gate * v`` → ``torch.addcmul(h, gate, v)`` for each reused value ``v``; mutates ``graph``.

    ``values`` maps each reused value to its site; the new node is tagged with it
    (``meta["gocopt_reuse"]``). Three activation-sized tensors touched instead of five (the
    product is never written).
    """
    fused = 0
    for value, site in values.items():
        for mul in list(value.users):
            if mul.op != "call_function" or mul.target not in _MULS or mul.kwargs or len(mul.args) != 2:
                continue
            gate = mul.args[1] if mul.args[0] is value else mul.args[0]
            if not isinstance(gate, fx.Node) or gate is value or len(mul.users) != 1:
                continue
            add = next(iter(mul.users))
            if add.op != "call_function" or add.target not in _ADDS or add.kwargs or len(add.args) != 2:
                continue
            stream = add.args[1] if add.args[0] is mul else add.args[0]
            if not isinstance(stream, fx.Node) or stream is mul:
                continue
            with graph.inserting_before(add):
                addcmul = graph.call_function(torch.addcmul, (stream, gate, value))
            addcmul.meta = {**add.meta, "gocopt_reuse": site}
            add.replace_all_uses_with(addcmul)
            graph.erase_node(add)
            graph.erase_node(mul)
            fused += 1
    return fused


def specialize_plan(gm: fx.GraphModule, plan: StepPlan, site_outputs: Mapping[int, int], *,
                    chunk_policy: ChunkPolicy = "runs") -> fx.GraphModule:
    """A new GraphModule that runs ``plan`` on ``gm``'s sites (``site_outputs``: index → outputs)."""
    keep_in = [e for e in plan.keep_in if e[0] in site_outputs]
    keep_out = [e for e in plan.keep_out if e[0] in site_outputs]
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    originals = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for node in originals:
        env[node] = graph.node_copy(node)
    cache = graph.placeholder(CACHE_INPUT, default_value=())
    offsets, flat = {}, 0
    for entry in keep_in:
        offsets[entry] = flat
        flat += site_outputs[entry[0]]
    kept: dict[tuple[int, int, int], fx.Node] = {}

    def kept_value(site: int, age: int, j: int) -> fx.Node:
        if (site, age) not in offsets:
            raise PassError(f"specialize_plan: site {site} reads its value from {age} steps back, which the plan "
                            "does not keep")
        if (site, age, j) not in kept:
            kept[site, age, j] = graph.call_function(operator.getitem, (cache, offsets[site, age] + j))
        return kept[site, age, j]

    site_values: dict[int, list[fx.Node]] = {}
    predictions: dict[fx.Node, int] = {}  # reused value → its site
    for node in gm.graph.nodes:
        site = site_of(node)
        if node.op == "placeholder":
            continue
        if node.op == "call_module" and site is not None and site in site_outputs:
            action = plan.actions[site]
            if action is None:
                compute = cast(fx.GraphModule, gm.get_submodule(str(node.target)).compute)
                site_values[site] = _inline(graph, compute, [env[cast(fx.Node, a)] for a in node.args])
            else:
                site_values[site] = [
                    _predict(graph, action, [kept_value(site, age, j) for age, _ in action.terms])
                    for j in range(site_outputs[site])
                ]
                for value in site_values[site]:
                    value.meta["gocopt_reuse"] = site
                    predictions[value] = site
            continue
        source = node.args[0] if node.op == "call_function" and node.target is operator.getitem else None
        owner = site_of(source) if isinstance(source, fx.Node) else None
        if owner is not None and owner in site_values:
            env[node] = site_values[owner][cast(int, node.args[1])]
            continue
        if node.op == "output":
            cache_out = tuple(site_values[s][j] if age == 1 else kept_value(s, age - 1, j)
                              for s, age in keep_out for j in range(site_outputs[s]))
            result = [fx.map_arg(node.args[0], lambda a: env[a]), cache_out]
            if plan.observe:
                result.append(tuple(v for s in sorted(site_values) for v in site_values[s]))
            graph.output(tuple(result))
            continue
        env[node] = graph.node_copy(node, lambda a: env[a])
    missing = set(site_outputs) - set(site_values)
    if missing:
        raise PassError(f"specialize_plan: sites {sorted(missing)} have no call in this graph")
    fuse_gated_residuals(graph, predictions)
    eliminate_dead_code(graph)
    graph.lint()
    out = fx.GraphModule(gm, graph, class_name="StepPlanGraph")
    prune_dead_chunks(out, chunk_policy)
    if hasattr(gm, "output_type"):  # diffusers' ModelOutput class, rebuilt by the caller
        out.output_type = gm.output_type
    return out


def _inline(graph: fx.Graph, compute: fx.GraphModule, args: list[fx.Node]) -> list[fx.Node]:
    """Copy ``compute``'s nodes into ``graph`` with its placeholders bound to ``args``."""
    env: dict[fx.Node, fx.Node] = {}
    placeholders = iter(args)
    for node in compute.graph.nodes:
        if node.op == "placeholder":
            env[node] = next(placeholders)
        elif node.op == "output":
            return [env[o] for o in node.args[0]]
        else:
            env[node] = graph.node_copy(node, lambda a: env[a])
    raise PassError("specialize_plan: a site graph has no output")


__all__ = ["CACHE_INPUT", "fuse_gated_residuals", "predict", "site_of", "specialize_plan"]
