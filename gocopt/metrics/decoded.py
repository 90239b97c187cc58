"""Scoring a latent model's samples where its users look at them: in decoded pixels.

A latent DiT's samples are latents; two latents a little apart can decode to images far apart
(or the reverse), so PSNR on latents ranks schedules by something nobody sees. This evaluator
decodes first: the paired metrics (PSNR, SSIM, rel. L2) on the decoded 32×32 pixels, the
classifier metrics (FD, FID, IS, accuracy) on the decoded pixels taken back to the classifier's 8×8.
The latent PSNR is kept beside them, as ``latent_psnr_vs_uncached``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from gocopt.data import load_digits_images
from gocopt.metrics.classifier import DigitsClassifier
from gocopt.metrics.fidelity import paired_fidelity, psnr
from gocopt.metrics.quality import QualityEvaluator
from gocopt.models.autoencoder import downsample_to_digits
from gocopt.models.latent import latent_autoencoder


class DecodedQualityEvaluator(QualityEvaluator):
    """:class:`QualityEvaluator` for latents: ``decode`` maps ``(N, C, h, w)`` latents to ``(N, 1, H, W)``
    pixels in [-1, 1] (e.g. :func:`gocopt.models.latent_autoencoder`'s ``decode``)."""

    def __init__(self, decode: Callable[[torch.Tensor], torch.Tensor], classifier: DigitsClassifier | None = None,
                 device: torch.device | str = "cpu", batch_size: int = 500) -> None:
        super().__init__(classifier, device)
        self.decode, self.batch_size = decode, batch_size

    @torch.no_grad()
    def images(self, latents: torch.Tensor) -> torch.Tensor:
        """Decoded pixels of ``latents``, on the CPU, in batches."""
        return torch.cat([self.decode(latents[i : i + self.batch_size].to(self.device)).float().cpu()
                          for i in range(0, len(latents), self.batch_size)])

    @functools.cached_property
    def real_features(self) -> np.ndarray:
        """Features of the real 8×8 digits, as the pixel evaluator has them (not decoded: they are pixels)."""
        real, _ = load_digits_images()
        return super().features(real)

    def features(self, images: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
        """Classifier features of latents, through their decoded pixels taken back to 8×8 digits."""
        return super().features(downsample_to_digits(self.images(images)), batch_size)

    def score(self, samples: torch.Tensor, labels: torch.Tensor,
              reference: torch.Tensor | None = None) -> dict[str, float]:
        result = super().score(samples, labels, reference)
        if reference is not None:  # the parent paired the latents; pair the pixels instead
            result.update(paired_fidelity(self.images(samples), self.images(reference)),
                          latent_psnr_vs_uncached=float(psnr(samples.detach().cpu().float(),
                                                             reference.detach().cpu().float()).mean()))
        return result


def evaluator_for(model_name: str, device: torch.device | str = "cpu") -> QualityEvaluator | None:
    """The digits classifier's evaluator for a shipped model (through the decoder for ``"latent"``);
    None for anything else (random-weight DiT configs have no data to be judged against)."""
    if model_name in ("reference", "patch1"):  # both in the digits' own pixel space
        return QualityEvaluator(device=device)
    if model_name == "latent":
        return DecodedQualityEvaluator(latent_autoencoder(device).decode, device=device)
    return None


__all__ = ["DecodedQualityEvaluator", "evaluator_for"]
