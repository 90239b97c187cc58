"""Skip the conditioning rows that only reused sites would have read.

adaLN DiTs compute, in every block, ``linear(silu(c)).chunk(6)``: shift, scale and gate of the
attention and of the MLP. Shift and scale are read only inside the branch (the site); the gates
multiply the branch's output outside it. In a step plan where a site is reused its branch is gone,
so after dead-code elimination its shift and scale chunks have no readers — yet the linear would
still read its whole ``6D × D`` weight: memory-bound, and on CPU the largest cost left in a step
that reuses every site (105 of 139 ms per call of DiT-XL/2 at batch 2).

``prune_dead_chunks`` finds ``Linear → chunk(n) → getitem`` where some chunks have no reader and
computes only the rows that are read, from views of the weight (no copies). How is decided per
plan, by the device it runs on:

* ``"runs"`` — one GEMM per contiguous run of live chunks: the fewest weight bytes read, for
  memory-bound devices (CPU);
* ``"span"`` — one GEMM over the rows from the first live chunk to the last: one launch, for
  launch-bound devices (GPU at small batch).

A linear whose every chunk is read is left exactly as it is, so an all-compute plan stays
bit-identical to the original model.
"""

from __future__ import annotations

import operator
from typing import Literal

import torch.nn.functional as F
from torch import fx, nn

ChunkPolicy = Literal["runs", "span"]


def _chunk_call(node: fx.Node) -> tuple[fx.Node, int, int] | None:
    """``(source, chunks, dim)`` of a ``x.chunk(n, dim)`` / ``torch.chunk(x, n, dim)`` node."""
    is_method = node.op == "call_method" and node.target == "chunk"
    is_function = node.op == "call_function" and getattr(node.target, "__name__", "") == "chunk"
    if not (is_method or is_function) or not node.args or not isinstance(node.args[0], fx.Node):
        return None
    chunks = node.args[1] if len(node.args) > 1 else node.kwargs.get("chunks")
    dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
    if not isinstance(chunks, int) or not isinstance(dim, int):
        return None
    return node.args[0], chunks, dim


def _live_runs(live: list[int], policy: ChunkPolicy) -> list[tuple[int, int]]:
    """Inclusive ``(first, last)`` chunk ranges to compute."""
    if policy == "span":
        return [(live[0], live[-1])]
    runs = [[live[0], live[0]]]
    for k in live[1:]:
        if k == runs[-1][1] + 1:
            runs[-1][1] = k
        else:
            runs.append([k, k])
    return [(a, b) for a, b in runs]


def prune_dead_chunks(gm: fx.GraphModule, policy: ChunkPolicy = "runs") -> int:
    """Compute only the read chunks of each ``Linear → chunk``; mutates ``gm``, returns how many.

    Run after dead-code elimination (the readers of a reused site's chunks must be gone).
    """
    if policy not in ("runs", "span"):
        raise ValueError(f"policy must be 'runs' or 'span', got {policy!r}")
    graph, count = gm.graph, 0
    for node in list(graph.nodes):
        parsed = _chunk_call(node)
        if parsed is None:
            continue
        source, chunks, dim = parsed
        if source.op != "call_module" or len(source.users) != 1 or len(source.args) != 1 or source.kwargs:
            continue
        linear = gm.get_submodule(str(source.target))
        ndim = len(source.meta.get("shape", ()))
        if not isinstance(linear, nn.Linear) or linear.out_features % chunks or dim not in (-1, ndim - 1):
            continue
        getters = list(node.users)
        if any(g.target is not operator.getitem or not isinstance(g.args[1], int) for g in getters):
            continue
        live = sorted({g.args[1] % chunks for g in getters})
        if len(live) == chunks:
            continue  # every chunk is read: the original linear, untouched
        size = linear.out_features // chunks
        pieces: dict[int, fx.Node] = {}
        with graph.inserting_before(node):
            weight = graph.get_attr(f"{source.target}.weight")
            bias = graph.get_attr(f"{source.target}.bias") if linear.bias is not None else None
            for first, last in _live_runs(live, policy):
                rows = slice(first * size, (last + 1) * size)
                w = graph.call_function(operator.getitem, (weight, rows))
                b = graph.call_function(operator.getitem, (bias, rows)) if bias is not None else None
                out = graph.call_function(F.linear, (source.args[0], w, b))
                out.meta = dict(source.meta)
                if first == last:
                    pieces[first] = out
                    continue
                split = graph.call_method("chunk", (out, last - first + 1, -1))
                for k in range(first, last + 1):
                    pieces[k] = graph.call_function(operator.getitem, (split, k - first))
        for getter in getters:
            getter.replace_all_uses_with(pieces[getter.args[1] % chunks])
            graph.erase_node(getter)
        graph.erase_node(node)
        graph.erase_node(source)
        count += 1
    if count:
        for node in list(graph.nodes):  # the span policy can leave unread pieces
            if node.op == "call_function" and node.target is operator.getitem and not node.users:
                graph.erase_node(node)
        graph.lint()
        gm.recompile()
    return count


__all__ = ["ChunkPolicy", "prune_dead_chunks"]
