"""A small CNN digits classifier whose penultimate features stand in for Inception's."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_model

CLASSIFIER_WEIGHTS = Path(__file__).parent / "weights" / "digits_classifier.safetensors"


class DigitsClassifier(nn.Module):
    """``(N, 1, 8, 8)`` images in [-1, 1] → logits ``(N, 10)``; ``features`` gives the 64-d layer."""

    feature_dim = 64

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),  # 4×4
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(128, self.feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def load_classifier(device: torch.device | str = "cpu") -> DigitsClassifier:
    """The shipped classifier (trained by ``examples/train_classifier.py``), in eval mode."""
    if not CLASSIFIER_WEIGHTS.exists():
        raise FileNotFoundError(
            f"classifier weights missing at {CLASSIFIER_WEIGHTS}; re-create them with "
            "`python examples/train_classifier.py`"
        )
    model = DigitsClassifier()
    load_model(model, str(CLASSIFIER_WEIGHTS), strict=True)
    return model.eval().to(device)
