"""Measured FLOPs (not formulas over configs): count the aten ops a call really runs.

A small ``TorchDispatchMode`` over PyTorch's own FLOP formulas (``torch.utils.flop_counter``),
without ``FlopCounterMode``'s module tracker, which trips over autograd Functions in models.
PyTorch's table knows the CUDA attention kernels but not the CPU flash kernel that
``scaled_dot_product_attention`` dispatches to here, so that one is added: 2·B·H·Tq·Tk·(Dqk + Dv).
Per-module totals come from forward hooks that read the running total at entry and exit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry, shape_wrapper


def _cpu_flash_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    b, h, tq, d = query_shape
    tk, dv = key_shape[-2], value_shape[-1]
    return 2 * b * h * tq * tk * (d + dv)


_FORMULAS: dict[Any, Callable[..., int]] = dict(flop_registry)
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
    _FORMULAS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = shape_wrapper(_cpu_flash_attention_flops)


class FlopCounter(TorchDispatchMode):
    """``with FlopCounter() as c: ...``; then ``c.total`` is the FLOPs of what ran inside."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = _FORMULAS.get(func._overloadpacket)
        if formula is not None:
            self.total += int(formula(*args, **kwargs, out_val=out))
        return out


@torch.no_grad()
def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Total FLOPs of one call ``fn(*args, **kwargs)``."""
    with FlopCounter() as counter:
        fn(*args, **kwargs)
    return counter.total


@torch.no_grad()
def flops_by_module(model: torch.nn.Module, paths: Iterable[str], **call: Any) -> dict[str, int]:
    """FLOPs spent inside each module of ``paths`` during one ``model(**call)``."""
    flops = {path: 0 for path in paths}
    counter = FlopCounter()
    handles = []
    for path in flops:
        module = model.get_submodule(path)
        entry: list[int] = []
        handles.append(module.register_forward_pre_hook(lambda m, a, entry=entry: entry.append(counter.total)))

        def exit_hook(m, a, out, path=path, entry=entry):
            flops[path] += counter.total - entry.pop()

        handles.append(module.register_forward_hook(exit_hook))
    try:
        with counter:
            model(**call)
    finally:
        for handle in handles:
            handle.remove()
    return flops
