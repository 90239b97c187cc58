"""Measured memory traffic and host synchronisations: count what the aten ops really touch.

On a GPU at small batch a DiT step is bound by launches and memory, not FLOPs, so the cost of a
reuse path is the bytes it moves, and the worst thing a call can do is read a device value back
to the host. Two small ``TorchDispatchMode`` counters make both visible on CPU:

* :class:`TrafficCounter` — bytes read and written by every non-view op, counting only tensors at
  least as large as an activation (``min_numel``), so a step's bulk traffic is not drowned in
  conditioning vectors;
* :class:`SyncCounter` — ``aten._local_scalar_dense`` calls (``.item()``, ``float(t)``, ``bool(t)``),
  which on a GPU are device→host synchronisations.
"""

from __future__ import annotations

import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode


class TrafficCounter(TorchDispatchMode):
    """``with TrafficCounter(n) as c: ...``; then ``c.bytes`` moved by tensors of ≥ ``n`` elements."""

    def __init__(self, min_numel: int = 0) -> None:
        super().__init__()
        self.min_numel = min_numel
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not func.is_view:  # a view moves no memory
            for tensor in pytree.tree_leaves((args, kwargs, out)):
                if isinstance(tensor, torch.Tensor) and tensor.numel() >= self.min_numel:
                    self.bytes += tensor.numel() * tensor.element_size()
        return out


class SyncCounter(TorchDispatchMode):
    """``with SyncCounter() as c: ...``; then ``c.syncs`` device→host scalar reads happened inside."""

    def __init__(self) -> None:
        super().__init__()
        self.syncs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.syncs += func is torch.ops.aten._local_scalar_dense.default
        return func(*args, **(kwargs or {}))


__all__ = ["SyncCounter", "TrafficCounter"]
