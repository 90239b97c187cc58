"""Measured FLOPs (not formulas over configs): run the code under ``FlopCounterMode``.

PyTorch's counter knows the CUDA attention kernels but not the CPU flash kernel that
``scaled_dot_product_attention`` dispatches to here, so that one is added: 2·B·H·Tq·Tk·(Dqk + Dv).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode


def _cpu_flash_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    b, h, tq, d = query_shape
    tk, dv = key_shape[-2], value_shape[-1]
    return 2 * b * h * tq * tk * (d + dv)


_CUSTOM = {}
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
    _CUSTOM[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_flash_attention_flops


def flop_counter() -> FlopCounterMode:
    """A silent ``FlopCounterMode`` that also counts CPU attention."""
    return FlopCounterMode(display=False, custom_mapping=_CUSTOM)


@torch.no_grad()
def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Total FLOPs of one call ``fn(*args, **kwargs)``."""
    with flop_counter() as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


@torch.no_grad()
def flops_by_module(module: torch.nn.Module, *args: Any, **kwargs: Any) -> dict[str, int]:
    """FLOPs per module path of one forward, keyed like ``"blocks.3"`` (root prefix stripped)."""
    with flop_counter() as counter:
        module(*args, **kwargs)
    root = type(module).__name__
    out = {}
    for name, ops in counter.get_flop_counts().items():
        if name == "Global":
            continue
        key = name[len(root) + 1 :] if name.startswith(root + ".") else ("" if name == root else name)
        out[key] = int(sum(ops.values()))
    return out
