"""Offline quality metrics: none needs downloaded weights.

Two families: against real digits (feature-FID, IS, class accuracy, from a small shipped
classifier) and against the uncached model with the same seeds (PSNR, SSIM, relative L2,
FD-to-uncached). The paired family is what ranks cache schedules; FID against real data is too
noisy at this scale for that and is kept as a divergence alarm.
"""

from gocopt.metrics.classifier import DigitsClassifier, load_classifier
from gocopt.metrics.fidelity import psnr, relative_l2, ssim
from gocopt.metrics.frechet import frechet_distance
from gocopt.metrics.quality import QualityEvaluator

__all__ = [
    "DigitsClassifier",
    "QualityEvaluator",
    "frechet_distance",
    "load_classifier",
    "psnr",
    "relative_l2",
    "ssim",
]
