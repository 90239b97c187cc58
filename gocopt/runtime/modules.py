"""The small modules the passes insert, and the per-block programs of a model traced block by block.

None of them holds per-run tensors: the runtime keeps all per-run state, so resetting a run or
switching a context is one call, and deleting the runtime frees every cached value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import fx, nn
from torch.utils import _pytree as pytree

from gocopt.errors import TraceError
from gocopt.passes.specialize import combine
from gocopt.runtime.runtime import CacheRuntime
from gocopt.trace.tracer import CallBinder, has_tensor

Program = Callable[..., tuple]  # (*tensor inputs, kept slots, coefficients) -> (output, kept slots[, observed])


class CacheSite(nn.Module):
    """Site ``index`` of a rewritten graph: ``compute`` holds the branch's nodes.

    In the rewritten graph itself the site computes (it is the original computation); step plans
    inline ``compute`` or replace the call by a prediction (:func:`~gocopt.passes.specialize_plan`).
    """

    def __init__(self, index: int, site_id: str, compute: fx.GraphModule) -> None:
        super().__init__()
        self.index = index
        self.site_id = site_id
        self.compute = compute

    def forward(self, *inputs: Any) -> tuple[torch.Tensor, ...]:
        return self.compute(*inputs)

    def extra_repr(self) -> str:
        return f"index={self.index}, site={self.site_id!r}"


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
    """A block replaced by its traced, rewritten graph (when the whole model did not trace).

    ``programs[k]`` runs step plan ``k`` on this block's sites; the runtime says which plan the
    current call runs and holds the block's kept values under its path.
    """

    def __init__(self, path: str, graph: fx.GraphModule, original: nn.Module, example: dict[str, Any],
                 runtime: CacheRuntime) -> None:
        super().__init__()
        self.__dict__["_original"] = original
        self.path = path
        self.graph = graph
        self.runtime = runtime
        self.programs: Sequence[Program] = ()
        self._binder = CallBinder(original)
        self._tensor_args = [name for name, value in example.items() if has_tensor(value)]
        self._constants = {name: value for name, value in example.items() if not has_tensor(value)}

    @torch.compiler.disable(recursive=False)  # the plan lookup stays in Python; each program compiles whole
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        inputs, kept, coefficients, program = self._begin(args, kwargs)
        return self._end(*program(*inputs, kept, coefficients))

    @torch.compiler.disable
    def _begin(self, args: tuple, kwargs: dict) -> tuple[list, tuple, torch.Tensor | None, Program]:
        call = self.runtime.current_call()
        bound = self._binder.bind(args, kwargs)
        check_constants(self.path, bound, self._constants)
        inputs = [bound[name] for name in self._tensor_args]
        kept, coefficients = self.runtime.graph_inputs(call, self.path)
        return inputs, kept, coefficients, self.programs[call.plan]

    @torch.compiler.disable
    def _end(self, out: Any, kept: tuple, *observed: tuple) -> Any:
        call = self.runtime.current_call()
        call.kept[self.path] = kept
        if observed:
            call.observations.append((self.path, observed[0]))
        return out


class BlockCacheSite(_Delegating):
    """A block that did not trace, cached whole: reuse adds a prediction of its residual delta(s).

    Each tensor output is paired with the first tensor input of the same shape (the stream it
    updates); the site's value is ``output - input`` for each pair. Runs the current step plan's
    action for its site in Python (this is the fallback path, not the fast one).
    """

    def __init__(self, index: int, site_id: str, original: nn.Module, runtime: CacheRuntime) -> None:
        super().__init__()
        self.__dict__["_original"] = original
        self.block = original
        self.index = index
        self.site_id = site_id
        self.runtime = runtime
        self._outputs = 0  # tensor outputs per value, known from the first computed call

    @torch.compiler.disable  # Python decides here: the fallback path is never compiled
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        runtime, call = self.runtime, self.runtime.current_call()
        plan, site = runtime.plan.plans[call.plan], self.index
        history, n = plan.history[site], self._outputs
        inputs = [v for v in pytree.tree_leaves((args, kwargs)) if isinstance(v, torch.Tensor)]
        kept_in = call.state.kept.get(self.site_id, ())
        slots = [kept_in[k * n:(k + 1) * n] for k in range(plan.keeps_in(site))] if n else []
        if plan.computes[site]:
            out = self.block(*args, **kwargs)
            leaves, self._out_spec = pytree.tree_flatten(out)
            self._leaf_template = [None if isinstance(v, torch.Tensor) else v for v in leaves]
            value = tuple(v - self._stream_for(v, inputs) for v in leaves if isinstance(v, torch.Tensor))
            self._outputs = len(value)
        else:
            weights = runtime.plan.coefficients[call.step][site]
            value = slots[0] if history.plain else tuple(
                combine([s[j] for s in slots], weights, affine=history.affine) for j in range(n))
            deltas = iter(value)
            leaves = [v if v is not None else (d := next(deltas)) + self._stream_for(d, inputs)
                      for v in self._leaf_template]
            out = pytree.tree_unflatten(leaves, self._out_spec)
        if history.slots:
            call.kept[self.site_id] = tuple(t for slot in plan.slots_after(site, value, slots, _zeros) for t in slot)
        if plan.observe:
            call.observations.append((self.site_id, value))
        return out

    def _stream_for(self, output: torch.Tensor, inputs: list[torch.Tensor]) -> torch.Tensor:
        for tensor in inputs:
            if tensor.shape == output.shape:
                return tensor
        raise TraceError(f"{self.site_id}: block output of shape {tuple(output.shape)} has no input of the same shape "
                         "to be its residual stream; this block cannot be cached whole")


def _zeros(value: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.zeros_like(v) for v in value)


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
