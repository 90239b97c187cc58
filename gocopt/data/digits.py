"""scikit-learn's 8×8 handwritten digits (1,797 images, shipped with the package), as tensors.

The reference DiT and the metrics classifier are both trained on these; pixels are scaled from
0…16 to [-1, 1], the range the diffusion model works in.
"""

from __future__ import annotations

import numpy as np
import torch

DIGITS_CLASSES = 10


def load_digits_images() -> tuple[torch.Tensor, torch.Tensor]:
    """All digits: images ``(1797, 1, 8, 8)`` in [-1, 1] (float32) and labels ``(1797,)``."""
    from sklearn.datasets import load_digits  # imported here: only training and metrics need it

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 8.0 - 1.0).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    return images, labels


def train_test_split_indices(n: int, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random split, the same for every script that trains or evaluates on digits."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    return np.sort(order[n_test:]), np.sort(order[:n_test])
