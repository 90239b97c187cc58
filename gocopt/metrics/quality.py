"""One object that scores a batch of generated digits, against real data and the uncached run."""

from __future__ import annotations

import functools

import numpy as np
import torch

from gocopt.data import load_digits_images
from gocopt.metrics.classifier import DigitsClassifier, load_classifier
from gocopt.metrics.fidelity import paired_fidelity
from gocopt.metrics.frechet import frechet_distance


def inception_score(probs: np.ndarray) -> float:
    """``exp(E_x KL(p(y|x) || p(y)))`` over all samples in one split."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    marginal = p.mean(0, keepdims=True)
    return float(np.exp((p * (np.log(p) - np.log(marginal))).sum(1).mean()))


class QualityEvaluator:
    """Scores samples with the shipped classifier; real-digit features computed once, when needed.

    ``score(samples, labels)`` gives ``fid``, ``is`` and ``class_accuracy``; with
    ``reference=`` (the uncached samples for the same seeds) it adds the paired metrics
    ``psnr_vs_uncached``, ``ssim_vs_uncached``, ``rel_l2_vs_uncached`` and ``fd_vs_uncached``.
    """

    def __init__(self, classifier: DigitsClassifier | None = None, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.classifier = classifier if classifier is not None else load_classifier(self.device)

    @functools.cached_property
    def real_features(self) -> np.ndarray:
        """Features of all real digits (computed once, on first use)."""
        real, _ = load_digits_images()
        return self.features(real)

    def images(self, samples: torch.Tensor) -> torch.Tensor:
        """The pixels a sample is judged by, on the CPU: the sample itself (a latent evaluator decodes)."""
        return samples.detach().cpu().float()

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
        chunks = [self.classifier.features(images[i : i + batch_size].to(self.device).float())
                  for i in range(0, len(images), batch_size)]
        return torch.cat(chunks).cpu().double().numpy()

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> np.ndarray:
        logits = self.classifier.head(torch.from_numpy(self.features(images)).float().to(self.device))
        return logits.softmax(-1).cpu().double().numpy()

    def score(self, samples: torch.Tensor, labels: torch.Tensor,
              reference: torch.Tensor | None = None) -> dict[str, float]:
        samples = samples.detach().cpu().float()
        feats = self.features(samples)
        probs = self.probabilities(samples)
        result = {
            "fid": frechet_distance(feats, self.real_features),
            "is": inception_score(probs),
            "class_accuracy": float((probs.argmax(1) == labels.cpu().numpy()).mean()),
        }
        if reference is not None:
            reference = reference.detach().cpu().float()
            result.update(paired_fidelity(samples, reference),
                          fd_vs_uncached=frechet_distance(feats, self.features(reference)))
        return result
