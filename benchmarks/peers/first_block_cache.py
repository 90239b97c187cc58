"""FirstBlockCache / TeaCache-style dynamic cache on a gocopt DiT, decided per sample.

The rule of diffusers' ``FirstBlockCacheConfig`` (and ParaAttention's first-block cache): every
step runs the first block; if its residual moved, relative to the residual of the last step that
ran everything, by less than ``threshold`` (mean absolute change over mean absolute value), the
other blocks are skipped and their last residual is added instead. The probe block's cost is paid
at every step.

diffusers decides once per call, for the whole batch. To make a sample independent of its
batch-mates (and comparable with static schedules), the decision here is per sample: the rows of
one sample (cond and uncond with batched guidance) decide together. When every sample of the
batch skips, the blocks are not run at all — at batch size 1 that is the real speedup; when only
some skip, the blocks run for the batch and the skipping samples take the reused value, which
gives each sample exactly what it would get alone.
"""

from __future__ import annotations

import torch
from torch import nn

from gocopt.models.dit import DiT


class FirstBlockCache(nn.Module):
    """``model`` (a gocopt DiT) with a first-block dynamic cache; call it like the model.

    Args:
        model: the DiT (not modified).
        threshold: skip the remaining blocks while the probe's relative change is below this.
        rows_per_sample: model rows that belong to one sample (2 with batched guidance).
    """

    def __init__(self, model: DiT, threshold: float, rows_per_sample: int = 2) -> None:
        super().__init__()
        self.model = model
        self.threshold = threshold
        self.rows_per_sample = rows_per_sample
        self.reset()

    def reset(self) -> None:
        """Start a new run: forget the cached residuals and the per-sample counts."""
        self._head: torch.Tensor | None = None  # first-block residual of the last full step, per row
        self._tail: torch.Tensor | None = None  # residual of the remaining blocks, per row
        self.full_steps: torch.Tensor | None = None  # per sample: steps that ran every block
        self.steps = 0

    def cost(self) -> float:
        """Mean fraction of block FLOPs computed per sample so far (the probe block included)."""
        probe = 1 / len(self.model.blocks)
        full = self.full_steps.double() / self.steps
        return float((full + (1 - full) * probe).mean())

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        m = self.model
        h = m.x_embedder(x) + m.pos_embed
        c = m.t_embedder(t) + m.y_embedder(y)
        head_out = m.blocks[0](h, c)
        head = head_out - h
        compute = self._should_compute(head)  # (rows,) bool
        if compute.any():
            out = head_out
            for block in m.blocks[1:]:
                out = block(out, c)
            tail = out - head_out
            if not compute.all():
                keep = compute[:, None, None]
                tail = torch.where(keep, tail, self._tail)
                head = torch.where(keep, head, self._head)
            self._head, self._tail = head, tail
        out = head_out + self._tail
        self._count(compute)
        return m.unpatchify(m.final_layer(out, c))

    def _should_compute(self, head: torch.Tensor) -> torch.Tensor:
        rows = head.shape[0]
        if self._head is None:
            return torch.ones(rows, dtype=torch.bool, device=head.device)
        k = self.rows_per_sample
        change = (head - self._head).abs().reshape(k, rows // k, -1).sum(dim=(0, 2))  # rows i, i+n, … = one sample
        scale = self._head.abs().reshape(k, rows // k, -1).sum(dim=(0, 2))
        per_sample = change / scale.clamp_min(1e-12) > self.threshold
        return per_sample.repeat(k)

    def _count(self, compute: torch.Tensor) -> None:
        per_sample = compute[: compute.shape[0] // self.rows_per_sample].long()
        self.full_steps = per_sample if self.full_steps is None else self.full_steps + per_sample
        self.steps += 1
