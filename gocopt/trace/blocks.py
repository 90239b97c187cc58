"""Find a model's transformer blocks in its module tree, in the order forward runs them.

Used to name sites (which block a branch belongs to) and, when the whole model does not trace,
as the units to trace one by one. A block list is a ``ModuleList`` (or a ``Sequential`` of two or
more) of composite modules, all of one class, with weights — ``blocks``, ``transformer_blocks``,
``single_transformer_blocks``, ``layers``… are found without knowing their names. A module of a
block class held outside the lists (U-ViT's ``mid_block``) is a block too; branches that are in no
block at all are placed by the graph (:mod:`gocopt.trace.sites`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gocopt.errors import TraceError


def find_block_lists(model: nn.Module) -> dict[str, nn.Module]:
    """Outermost lists of repeated parameterised modules, by module path."""
    found: dict[str, nn.Module] = {}
    for path, module in model.named_modules():
        minimum = 1 if isinstance(module, nn.ModuleList) else 2
        if not isinstance(module, (nn.ModuleList, nn.Sequential)) or len(module) < minimum:
            continue
        if any(path.startswith(p + ".") for p in found):
            continue  # a list inside a block (an MLP's Sequential) is not a block list
        if len({type(m) for m in module}) != 1:
            continue  # blocks repeat one class; [Linear, Dropout] or [GELU, Dropout, Linear] do not
        block = module[0]
        composite = any(True for _ in block.children())  # a block has parts; a Linear does not
        if composite and any(p.dim() >= 2 for p in block.parameters()):
            found[path] = module
    return found


def find_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """Every transformer block by module path: the members of the block lists, and modules of the
    same classes held anywhere else (U-ViT's ``mid_block``, a block kept as a plain attribute)."""
    lists = find_block_lists(model)
    blocks = {f"{list_path}.{i}" if list_path else str(i): block
              for list_path, members in lists.items() for i, block in enumerate(members.children())}
    classes = {type(block) for block in blocks.values()}
    for path, module in model.named_modules():
        inside = any(path == b or path.startswith(b + ".") or b.startswith(path + ".") for b in blocks)
        if path and type(module) in classes and not inside:
            blocks[path] = module
    return blocks


def record_block_calls(model: nn.Module, call: dict[str, Any]) -> dict[str, tuple[tuple, dict]]:
    """Run ``model(**call)`` once; return each block's path → (args, kwargs) of its first call.

    The dict's order is the order forward called the blocks in.
    """
    blocks = find_blocks(model)
    if not blocks:
        raise TraceError(
            f"{type(model).__name__} has no transformer block list: searched for an nn.ModuleList or "
            "nn.Sequential of two or more modules of the same class with weights (as DiT's `blocks` or "
            "diffusers' `transformer_blocks`). gocopt caches residual branches inside such blocks."
        )
    calls: dict[str, tuple[tuple, dict]] = {}
    handles = []
    for path, block in blocks.items():

        def hook(module, args, kwargs, path=path):
            calls.setdefault(path, (args, kwargs))

        handles.append(block.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            model(**call)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def block_of(module_path: str, block_paths: list[str]) -> str | None:
    """The block that holds ``module_path`` (the longest block path that prefixes it)."""
    matches = [b for b in block_paths if module_path == b or module_path.startswith(b + ".")]
    return max(matches, key=len) if matches else None
