"""Offline quality metrics: classifier, Fréchet distance, IS, paired fidelity."""

from __future__ import annotations

import numpy as np
import torch
from conftest import sample

from gocopt.data import load_digits_images, train_test_split_indices
from gocopt.metrics import frechet_distance, load_classifier, psnr, relative_l2, ssim
from gocopt.metrics.fidelity import PSNR_CAP_DB
from gocopt.metrics.quality import inception_score
from gocopt.models.reference import REFERENCE_GUIDANCE_SCALE
from gocopt.sampling import DDIMSampler


def test_classifier_is_accurate_on_held_out_digits():
    images, labels = load_digits_images()
    _, test = train_test_split_indices(len(images))
    with torch.no_grad():
        accuracy = (load_classifier()(images[test]).argmax(1) == labels[test]).float().mean().item()
    assert accuracy >= 0.95


def test_frechet_distance_of_gaussians_matches_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20000, 3))
    b = rng.normal(loc=[1.0, 0.0, 0.0], scale=2.0, size=(20000, 3))
    # |mu|^2 + tr(I + 4I - 2*2I) = 1 + 3 * (1 + 4 - 4)
    assert abs(frechet_distance(a, b) - 4.0) < 0.15
    assert abs(frechet_distance(a, a)) < 1e-6


def test_fid_between_real_halves_is_small_and_grows_with_noise(evaluator):
    images, _ = load_digits_images()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    half_a, half_b = images[order[: len(order) // 2]], images[order[len(order) // 2 :]]
    feats_a = evaluator.features(half_a)
    base = frechet_distance(feats_a, evaluator.features(half_b))
    noisy = [frechet_distance(feats_a, evaluator.features((half_b + s * torch.randn_like(half_b)).clamp(-1, 1)))
             for s in (0.2, 0.5, 1.0)]
    assert base < 5
    assert base < noisy[0] < noisy[1] < noisy[2]


def test_inception_score_bounds():
    confident = np.eye(10)[np.arange(100) % 10]
    assert abs(inception_score(confident) - 10) < 1e-3
    assert abs(inception_score(np.full((100, 10), 0.1)) - 1) < 1e-6


def test_paired_fidelity_metrics():
    a = torch.rand(4, 1, 8, 8) * 2 - 1
    assert torch.all(psnr(a, a) == PSNR_CAP_DB)
    assert torch.allclose(ssim(a, a), torch.ones(4, dtype=torch.float64))
    assert torch.all(relative_l2(a, a) == 0)
    shifted = a + 0.02
    assert torch.allclose(psnr(shifted, a), torch.full((4,), 10 * np.log10(4 / 0.02**2), dtype=torch.float64),
                          atol=1e-3)
    assert torch.all(ssim(a + 0.3 * torch.randn_like(a), a) < 0.95)


def test_reference_model_draws_digits_of_the_requested_class(reference_model, evaluator):
    sampler = DDIMSampler(steps=20, guidance_scale=REFERENCE_GUIDANCE_SCALE)
    images = sample(reference_model, sampler, 100, seed=123)
    scores = evaluator.score(images, torch.arange(100) % 10)
    assert scores["class_accuracy"] >= 0.85  # ≥ 0.90 at n = 1000 (README); n = 100 has ±3% noise
    assert np.isfinite(scores["fid"]) and scores["is"] > 5
