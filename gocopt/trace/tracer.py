"""torch.fx tracing that gocopt owns: the user's module is read, never edited.

:func:`trace_module` returns a new ``GraphModule`` whose submodules and parameters are the
original objects (shared, not copied), so a rewritten model costs no extra weight memory.

Real DiT code does not trace with plain ``symbolic_trace``: diffusers blocks call ``len()`` on
attention outputs, branch on ``hidden_states.dtype``, unpack tuples of rotary embeddings. So the
tracer here runs the example call alongside the trace: every proxy carries the concrete value it
stands for, and Python control flow on a proxy (``bool``, ``len``, iteration, ``int``) follows
that value, exactly as eager execution would. Where the decision could differ on another input
(a tensor's value or size, not its dtype or device), a guard node is left in the graph that
raises :class:`GuardError` when a later call takes the other branch, never a silent wrong result.
Non-tensor arguments of the example call (``None``, flags, kwargs dicts) are baked in as
constants; the caller checks later calls against them.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import fx
from torch.utils import _pytree as pytree

from gocopt.errors import TraceError

LeafPredicate = Callable[[torch.nn.Module], bool]


class GuardError(TraceError):
    """A traced graph met an input that takes a different Python branch than its example."""


def _guard(value: Any, expected: Any, description: str) -> None:
    if value != expected:
        raise GuardError(
            f"traced graph specialised {description} to {expected!r} on the example input, but this call "
            f"gives {value!r}; re-trace (gocopt.compile / find_sites) with an input like this one"
        )


fx.node._side_effectful_functions.add(_guard)  # guards have no users but must never be removed
_STATIC_ATTRIBUTES = {"dtype", "device", "ndim", "is_cuda", "layout", "requires_grad"}


class ValueProxy(fx.Proxy):
    """An fx proxy that also knows the concrete value of the example call at this node."""

    @property
    def value(self) -> Any:
        return self.tracer.values[self.node]  # type: ignore[attr-defined]  # a ValueTracer's proxy

    def _guarded(self, fn: Callable[[Any], Any], what: str) -> Any:
        result = fn(self.value)
        if not _is_static(self.node):
            self.tracer.create_proxy("call_function", _guard, (self, self.value, f"{what} of {self.node.name}"), {})
        return result

    def __bool__(self) -> bool:
        return self._guarded(bool, "truth value")

    def __int__(self) -> int:
        return self._guarded(int, "integer value")

    def __index__(self) -> int:
        return self._guarded(operator.index, "index value")

    def __float__(self) -> float:
        return self._guarded(float, "float value")

    def __len__(self) -> int:
        if isinstance(self.value, torch.Tensor):
            return int(self.size(0))
        return len(self.value)  # a tuple or list output: its length is fixed by the op

    def __iter__(self):
        return iter([self[i] for i in range(len(self))])  # type: ignore[index]  # fx adds __getitem__

    def keys(self):
        return self.value.keys()

    def __getattr__(self, k: str) -> Any:
        if k in _STATIC_ATTRIBUTES:  # fixed for a traced model; CachedModel checks dtype/device
            return getattr(self.value, k)
        return ValueAttribute(self, k)


class ValueAttribute(ValueProxy, fx.proxy.Attribute):
    """``proxy.shape`` and friends: a lazily created ``getattr`` node that also has a value."""


def _is_static(node: fx.Node) -> bool:
    """True if ``node`` does not depend on any input of the graph (nothing to guard)."""
    stack, seen = [node], set()
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "placeholder":
            return False
        stack.extend(n.all_input_nodes)
    return True


class ValueTracer(fx.Tracer):
    """Traces while evaluating the example call; ``leaf`` keeps chosen modules opaque."""

    def __init__(self, example: dict[str, Any], leaf: LeafPredicate | None = None) -> None:
        super().__init__()
        self._leaf = leaf
        self._example = dict(example)
        for name, value in example.items():  # fx makes one placeholder per leaf of a constant
            if not has_tensor(value):
                for i, leaf in enumerate(pytree.tree_leaves(value)):
                    self._example[f"{name}_{i + 1}"] = leaf
        self._evaluating = 0  # > 0 while running concrete code: the tracer's patches stand aside
        self.values: dict[fx.Node, Any] = {}
        self.output_dict_types: list[type] = []  # dict-like dataclasses (diffusers' ModelOutput) fx flattened

    def create_arg(self, a: Any) -> Any:
        if isinstance(a, dict) and type(a) is not dict and dataclasses.is_dataclass(a):
            self.output_dict_types.append(type(a))
        return super().create_arg(a)

    def is_leaf_module(self, m: torch.nn.Module, module_qualified_name: str) -> bool:
        return super().is_leaf_module(m, module_qualified_name) or (self._leaf is not None and self._leaf(m))

    def proxy(self, node: fx.Node) -> ValueProxy:
        return ValueProxy(node, self)

    def call_module(self, m, forward, args, kwargs):
        if self._evaluating:
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        if self._evaluating:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, proxy_factory_fn=None):
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        self._value(proxy.node)
        return proxy

    def _value(self, node: fx.Node) -> Any:
        if node not in self.values:  # also nodes made without a proxy (tensor constants)
            self._evaluating += 1
            try:
                self.values[node] = self._evaluate(node)
            finally:
                self._evaluating -= 1
        return self.values[node]

    @torch.no_grad()
    def _evaluate(self, node: fx.Node) -> Any:
        args = fx.node.map_arg(node.args, self._value)
        kwargs = fx.node.map_arg(node.kwargs, self._value)
        if node.op == "placeholder":
            return self._example.get(str(node.target).lstrip("*"))
        if node.op == "get_attr":
            return functools.reduce(getattr, str(node.target).split("."), self.root)
        if node.op == "call_function":
            assert callable(node.target)
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], str(node.target))(*args[1:], **kwargs)
        if node.op == "call_module":
            return self.root.get_submodule(str(node.target))(*args, **kwargs)
        return None


class CallBinder:
    """Maps calls of ``module`` to ``forward``'s parameter names; the signature is read once.

    Model calls are on the hot path: a positional call with every parameter given is a ``zip``.
    """

    def __init__(self, module: torch.nn.Module) -> None:
        self.owner = type(module).__name__
        self.signature = inspect.signature(module.forward)
        for param in self.signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TraceError(f"{self.owner}.forward takes *{param.name}; gocopt binds arguments by name")
        self.names = tuple(self.signature.parameters)

    def bind(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        if not kwargs and len(args) == len(self.names):
            return dict(zip(self.names, args))
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TraceError(f"cannot bind the inputs to {self.owner}.forward: {e}") from e
        bound.apply_defaults()
        return dict(bound.arguments)


def bind_call(module: torch.nn.Module, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Map a call's arguments to ``forward``'s parameter names (defaults filled in)."""
    return CallBinder(module).bind(args, kwargs)


def has_tensor(value: Any) -> bool:
    return any(isinstance(v, torch.Tensor) for v in pytree.tree_leaves(value))


def trace_module(module: torch.nn.Module, example_call: dict[str, Any],
                 leaf: LeafPredicate | None = None) -> fx.GraphModule:
    """Trace ``module`` on one example call (from :func:`bind_call`).

    Arguments that hold tensors become placeholders; the others are constants of the graph.
    Raises whatever tracing raises; callers turn that into a fallback or a ``TraceError``.
    """
    example = {k: pytree.tree_map(lambda v: v.clone() if isinstance(v, torch.Tensor) else v, v)
               for k, v in example_call.items()}
    concrete_args = {name: value for name, value in example.items() if not has_tensor(value)}
    tracer = ValueTracer(example, leaf)
    graph = tracer.trace(module, concrete_args=concrete_args or None)
    _bake_constants(graph, tracer.values, concrete_args)
    eliminate_dead_code(graph)
    for node in graph.nodes:  # static shapes for later passes (a chunk's dim, an activation's size)
        value = tracer.values.get(node)
        if isinstance(value, torch.Tensor):
            node.meta["shape"] = tuple(value.shape)
    gm = fx.GraphModule(tracer.root, graph, class_name=f"Traced{type(module).__name__}")
    output = next(n for n in reversed(graph.nodes) if n.op == "output").args[0]
    if isinstance(output, dict) and tracer.output_dict_types:  # the module returned a ModelOutput: rebuild it
        gm.output_type = tracer.output_dict_types[-1]  # type: ignore[assignment]  # an attribute of gocopt's
    return gm


def eliminate_dead_code(graph: fx.Graph) -> None:
    """Drop values nobody reads (the unused half of a split attention output, say).

    Conservative where fx's own DCE is not at this level: in-place methods (``add_``), ops
    called with ``inplace=True`` or ``out=``, modules and side-effectful functions stay.
    """
    for node in reversed(list(graph.nodes)):
        if node.users or node.op not in ("call_function", "call_method", "get_attr"):
            continue
        in_place = node.op == "call_method" and str(node.target).endswith("_") and not str(node.target).endswith("__")
        if in_place or node.kwargs.get("inplace") or "out" in node.kwargs or node.is_impure():
            continue
        graph.erase_node(node)


def _bake_constants(graph: fx.Graph, values: dict[fx.Node, Any], constants: dict[str, Any]) -> None:
    """Replace fx's per-leaf placeholders of constant arguments by the constants themselves.

    The traced graph then takes only the tensor arguments, with the plain calling convention;
    fx's own specialisation asserts on those constants go too: the caller compares constants
    before every call (``CachedModel``), with a message that says which argument differs.
    """
    prefixes = tuple(f"{name}_" for name in constants)
    for node in list(graph.nodes):
        if node.op == "placeholder" and str(node.target).startswith(prefixes):
            value = values[node]
            for user in list(node.users):
                if user.target in (fx._symbolic_trace._assert_is_none, torch._assert):
                    graph.erase_node(user)
                elif user.target is operator.eq and all(u.target is torch._assert for u in user.users):
                    for u in list(user.users):
                        graph.erase_node(u)
                    graph.erase_node(user)
                else:
                    def baked(a: Any, node: fx.Node = node, value: Any = value) -> Any:
                        return value if a is node else a

                    user.args = pytree.tree_map(baked, user.args)
                    user.kwargs = pytree.tree_map(baked, user.kwargs)
            graph.erase_node(node)
    graph._codegen = fx.graph.CodeGen()  # plain signature: forward(self, <tensor args>)
    graph.lint()
