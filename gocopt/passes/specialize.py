"""Specialise a rewritten graph to one step shape: a straight-line graph, no decisions left.

``specialize_plan`` does not touch the graph it is given; it returns a new ``GraphModule`` (sharing
every submodule and parameter) with the calling convention

    forward(*original inputs, gocopt_cache, gocopt_coefficients) -> (output, cache_out[, observed])

where ``gocopt_cache`` is the flat tuple of the history slots the sites bring in (site by site,
slot by slot, each site's outputs in order; :class:`~gocopt.schedule.plan.StepPlan`), ``cache_out``
the same for the next step, ``gocopt_coefficients`` a 1-D tensor with this step's coefficients
(each combining reused site's, in site order) and ``observed`` every site's value (``plan.observe``).
The graph depends only on the plan's *shape*: every step with the same compute pattern runs it,
with its own coefficients. For every site of the graph:

* computed — the site's own nodes are inlined where its call was: with every site computed the
  graph runs exactly the original operations (bit-identical output);
* reused — its value is slot 0 itself (plain reuse), one ``torch.lerp`` (two slots whose
  coefficients sum to one, e.g. GOC) or ``Σ c_k · slot_k``; the gated residual add that consumes
  it, ``h + gate * value``, becomes one ``torch.addcmul``.

History slots move by reference (a fresh output becomes slot 0, the oldest slot is dropped): no
copies. Then dead code goes (the reused branches' shift/scale) and :func:`prune_dead_chunks`
computes only the conditioning rows that are still read.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import cast

import torch
from torch import fx

from gocopt.errors import PassError
from gocopt.passes.prune_conditioning import ChunkPolicy, prune_dead_chunks
from gocopt.schedule.plan import StepPlan
from gocopt.trace.tracer import eliminate_dead_code

CACHE_INPUT = "gocopt_cache"
COEFFICIENTS_INPUT = "gocopt_coefficients"
_MULS = (operator.mul, torch.mul)
_ADDS = (operator.add, torch.add)
Weight = float | torch.Tensor  # a host coefficient (fallback path) or a 0-dim tensor (graph input)


def site_of(node: fx.Node) -> int | None:
    """The site index of a call inserted by :func:`insert_cache_sites`, else ``None``."""
    return (node.meta.get("gocopt") or {}).get("site")


def combine(values: Sequence[torch.Tensor], weights: Sequence[Weight], *, affine: bool) -> torch.Tensor:
    """``Σ weights[k] · values[k]`` in as few passes over memory as the terms allow.

    Two values whose weights sum to one (GOC, TaylorSeer order 1, an affine fit) are one ``lerp``;
    otherwise a multiply and one fused multiply-add per further value. Weights are 0-dim tensors
    in step-plan graphs (data, so every step of a shape shares the graph) and host floats in blocks
    cached whole.
    """
    if len(values) == 2 and affine:
        return torch.lerp(values[0], values[1], weights[1])
    total = values[0] * weights[0]
    for value, weight in zip(values[1:], weights[1:]):
        total = (torch.addcmul(total, value, weight) if isinstance(weight, torch.Tensor)
                 else torch.add(total, value, alpha=weight))
    return total


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
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            env[node] = graph.node_copy(node)
    cache = graph.placeholder(CACHE_INPUT, default_value=())
    coefficients = graph.placeholder(COEFFICIENTS_INPUT, default_value=None)
    ordered = sorted(site_outputs)
    slots_in: dict[int, list[list[fx.Node]]] = {}  # site → slot → one node per output
    flat = 0
    for index in ordered:
        outputs = site_outputs[index]
        slots_in[index] = []
        for _ in range(plan.keeps_in(index)):
            slots_in[index].append([graph.call_function(operator.getitem, (cache, flat + j)) for j in range(outputs)])
            flat += outputs
    weight_at: dict[int, list[fx.Node]] = {}  # site → its coefficients, each a 0-dim tensor
    offset = 0
    for index in ordered:
        history = plan.history[index]
        if not plan.computes[index] and history.terms:
            weight_at[index] = [graph.call_function(operator.getitem, (coefficients, offset + k))
                                for k in range(history.terms)]
            offset += history.terms

    def reuse(site: int) -> list[fx.Node]:
        slots, history = slots_in[site], plan.history[site]
        if not slots:
            raise PassError(f"specialize_plan: site {site} is reused but brings no history into this step")
        if history.plain:
            return list(slots[0])
        return [graph.call_function(combine, (tuple(s[j] for s in slots), tuple(weight_at[site])),
                                    {"affine": history.affine}) for j in range(site_outputs[site])]

    def blank(value: list[fx.Node]) -> list[fx.Node]:  # an empty slot: zeros, one tensor per output
        return [graph.call_function(torch.zeros_like, (v,)) for v in value]

    site_values: dict[int, list[fx.Node]] = {}
    predictions: dict[fx.Node, int] = {}  # reused value → its site
    for node in gm.graph.nodes:
        site = site_of(node)
        if node.op == "placeholder":
            continue
        if node.op == "call_module" and site is not None and site in site_outputs:
            if plan.computes[site]:
                compute = cast(fx.GraphModule, gm.get_submodule(str(node.target)).compute)
                site_values[site] = _inline(graph, compute, [env[cast(fx.Node, a)] for a in node.args])
            else:
                site_values[site] = reuse(site)
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
            cache_out = tuple(v for s in ordered for slot in plan.slots_after(s, site_values[s], slots_in[s], blank)
                              for v in slot)
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


__all__ = ["CACHE_INPUT", "COEFFICIENTS_INPUT", "combine", "fuse_gated_residuals", "site_of", "specialize_plan"]
