"""The small modules the passes insert; each forwards its decision to the shared runtime.

None of them holds tensors of its own: the runtime keeps all per-run state, so resetting a run
or switching a context is one call, and deleting the runtime frees every cached tensor.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.utils import _pytree as pytree

from gocopt.errors import TraceError
from gocopt.runtime.runtime import CacheRuntime
from gocopt.trace.tracer import bind_call, has_tensor


class CacheSite(nn.Module):
    """Site ``index``: ``compute`` holds the branch's nodes, run only when the schedule says so."""

    def __init__(self, index: int, site_id: str, compute: fx.GraphModule, runtime: CacheRuntime) -> None:
        super().__init__()
        self.index = index
        self.site_id = site_id
        self.compute = compute
        self.runtime = runtime

    def forward(self, *inputs: Any) -> tuple[torch.Tensor, ...]:
        return self.runtime.run_site(self.index, self.compute, inputs)

    def extra_repr(self) -> str:
        return f"index={self.index}, site={self.site_id!r}"


class ConditioningChunks(nn.Module):
    """``linear(x).chunk(n, dim)`` that skips the chunks only reused sites would read.

    ``consumers[k]`` is the set of sites chunk ``k`` reaches and nothing else (``None``: it is
    needed regardless, e.g. a gate). When every chunk is wanted this is the original computation,
    bit for bit; otherwise the wanted chunks come from row slices of the weight (views, no copies)
    and the others are zeros that only reused sites receive and ignore.
    """

    def __init__(self, linear: nn.Linear, chunks: int, dim: int, consumers, runtime: CacheRuntime) -> None:
        super().__init__()
        self.linear = linear
        self.chunks = chunks
        self.dim = dim
        self.consumers = tuple(None if c is None else tuple(sorted(c)) for c in consumers)
        self._groups = tuple(dict.fromkeys(c for c in self.consumers if c is not None))
        self.runtime = runtime

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        decided = {c: self.runtime.computes(c) for c in self._groups}  # shift and scale share one site
        wanted = [c is None or decided[c] for c in self.consumers]
        if all(wanted) or self.dim not in (-1, x.dim() - 1):  # a chunk of rows of the weight needs the last dim
            return self.linear(x).chunk(self.chunks, self.dim)
        size = self.linear.out_features // self.chunks
        weight, bias = self.linear.weight, self.linear.bias
        return tuple(
            F.linear(x, weight[k * size : (k + 1) * size], None if bias is None else bias[k * size : (k + 1) * size])
            if want else x.new_zeros(*x.shape[:-1], size)
            for k, want in enumerate(wanted)
        )

    def extra_repr(self) -> str:
        pruned = [k for k, c in enumerate(self.consumers) if c is not None]
        return f"chunks={self.chunks}, prunable={pruned}"


class _Delegating(nn.Module):
    """Attribute reads that the wrapper lacks go to the wrapped original block.

    diffusers reads attributes of its blocks from outside (``transformer_blocks[0].norm1.emb``),
    so a wrapper in the block list must look like the block it replaces.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["_original"], name)


class TracedBlock(_Delegating):
    """A block replaced by its traced, rewritten graph (when the whole model did not trace)."""

    def __init__(self, path: str, graph: fx.GraphModule, original: nn.Module, example: dict[str, Any]) -> None:
        super().__init__()
        self.__dict__["_original"] = original
        self.path = path
        self.graph = graph
        self._tensor_args = [name for name, value in example.items() if has_tensor(value)]
        self._constants = {name: value for name, value in example.items() if not has_tensor(value)}

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        call = bind_call(self.__dict__["_original"], args, kwargs)
        check_constants(self.path, call, self._constants)
        return self.graph(*[call[name] for name in self._tensor_args])


class BlockCacheSite(_Delegating):
    """A block that did not trace, cached whole: reuse adds its last residual delta(s).

    Each tensor output is paired with the first tensor input of the same shape (the stream it
    updates); the site's value is ``output - input`` for each pair.
    """

    def __init__(self, index: int, site_id: str, original: nn.Module, runtime: CacheRuntime) -> None:
        super().__init__()
        self.__dict__["_original"] = original
        self.block = original
        self.index = index
        self.site_id = site_id
        self.runtime = runtime

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        inputs = [v for v in pytree.tree_leaves((args, kwargs)) if isinstance(v, torch.Tensor)]
        computed: dict[str, Any] = {}

        def compute() -> tuple[torch.Tensor, ...]:
            out = computed["out"] = self.block(*args, **kwargs)
            leaves, self._out_spec = pytree.tree_flatten(out)
            self._leaf_template = [None if isinstance(v, torch.Tensor) else v for v in leaves]
            return tuple(v - self._stream_for(v, inputs) for v in leaves if isinstance(v, torch.Tensor))

        deltas = iter(self.runtime.run_site(self.index, compute, ()))
        if "out" in computed:
            return computed["out"]  # computed: the block's own output, bit for bit
        leaves = [v if v is not None else (d := next(deltas)) + self._stream_for(d, inputs)
                  for v in self._leaf_template]
        return pytree.tree_unflatten(leaves, self._out_spec)

    def _stream_for(self, output: torch.Tensor, inputs: list[torch.Tensor]) -> torch.Tensor:
        for tensor in inputs:
            if tensor.shape == output.shape:
                return tensor
        raise TraceError(f"{self.site_id}: block output of shape {tuple(output.shape)} has no input of the same shape "
                         "to be its residual stream; this block cannot be cached whole")


def check_constants(where: str, call: dict[str, Any], constants: dict[str, Any]) -> None:
    """Refuse a call whose non-tensor arguments differ from the ones the graph was traced with."""
    for name, expected in constants.items():
        found = call.get(name)
        try:
            same = bool(found == expected) if not (found is None or expected is None) else found is expected
        except Exception:  # noqa: BLE001 - objects without a usable ==
            same = found is expected
        if not same:
            raise TraceError(
                f"{where or 'model'} was traced with {name}={expected!r} but is called with {name}={found!r}; "
                "compile again with example inputs that use this value"
            )
