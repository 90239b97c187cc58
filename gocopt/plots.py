"""Pictures people would rather look at than read: sample grids (more plots join later)."""

from __future__ import annotations

import math
from pathlib import Path

import torch


def save_image_grid(images: torch.Tensor, path: str | Path, labels: torch.Tensor | None = None, columns: int = 10) -> None:
    """Images ``(N, C, H, W)`` in [-1, 1] → one PNG grid (first channel, ink dark), labelled by class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.8, rows * 0.9), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i, 0].float().cpu().numpy(), cmap="gray_r", vmin=-1, vmax=1)
            if labels is not None:
                ax.set_title(str(int(labels[i])), fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
