"""The second shipped model: a latent DiT, its autoencoder, and scoring it on decoded pixels."""

from __future__ import annotations

import argparse

import pytest
import torch

from gocopt.data import load_digits_images
from gocopt.metrics.decoded import DecodedQualityEvaluator, evaluator_for
from gocopt.metrics.fidelity import psnr
from gocopt.models import CLIPS_DENOISED, latent_autoencoder, model_by_name
from gocopt.models.autoencoder import downsample_to_digits, upsample_digits
from gocopt.sampling import DDIMSampler, initial_noise


@pytest.fixture(scope="module")
def autoencoder():
    return latent_autoencoder()


def test_the_latent_model_ships_and_loads_strictly_offline(latent_model):
    assert not latent_model.training and model_by_name("latent").config == latent_model.config
    cfg = latent_model.config
    assert (cfg.in_channels, cfg.input_size, cfg.depth, cfg.hidden_size) == (4, 8, 8, 192)
    x, t, y = latent_model.example_inputs(batch_size=2)
    assert latent_model(x, t, y).shape == x.shape
    assert CLIPS_DENOISED == {"reference": True, "latent": False, "patch1": True}  # latents: no known range to clip


def test_missing_weights_name_the_file_and_the_script(monkeypatch, tmp_path):
    from gocopt.models import latent

    monkeypatch.setattr(latent, "LATENT_DIT_WEIGHTS", tmp_path / "latent_dit.safetensors")
    with pytest.raises(FileNotFoundError, match=r"latent_dit\.safetensors.*examples/train_latent\.py"):
        latent.latent_reference()


def test_the_shipped_autoencoder_reproduces_the_digits(autoencoder):
    """Its round trip is near exact, so what separates the latent DiT's samples from the data is the DiT."""
    images, _ = load_digits_images()
    pixels = upsample_digits(images[:256])
    with torch.no_grad():
        latents = autoencoder.encode(pixels)
        decoded = autoencoder.decode(latents)
    assert latents.shape == (256, 4, 8, 8) and 0.8 < float(latents.std()) < 1.2
    assert float((decoded - pixels).pow(2).mean()) < 1e-3


def test_downsampling_inverts_the_upsampling_of_digits_exactly():
    images, _ = load_digits_images()
    torch.testing.assert_close(downsample_to_digits(upsample_digits(images[:64])), images[:64], atol=1e-5, rtol=0)
    blurred = torch.nn.functional.interpolate(upsample_digits(images[:64]), size=(8, 8), mode="area")
    assert float((blurred - images[:64]).abs().mean()) > 0.05  # what a plain resize would have fed the classifier


def test_the_decoded_evaluator_scores_pixels_not_latents(latent_model, autoencoder):
    """PSNR is paired on the decoded pixels (the latent PSNR kept beside it); FD on their digits."""
    evaluator = evaluator_for("latent")
    assert isinstance(evaluator, DecodedQualityEvaluator)
    labels = torch.arange(40) % 10
    noise = initial_noise(range(40), (4, 8, 8))
    with torch.no_grad():
        fine = DDIMSampler(steps=10, guidance_scale=4.0, clip_denoised=False).sample(latent_model, labels, noise,
                                                                                     num_classes=10)
        coarse = DDIMSampler(steps=5, guidance_scale=4.0, clip_denoised=False).sample(latent_model, labels, noise,
                                                                                      num_classes=10)
        pixels, coarse_pixels = autoencoder.decode(fine), autoencoder.decode(coarse)
    scores = evaluator.score(coarse, labels, reference=fine)
    assert scores["psnr_vs_uncached"] == pytest.approx(float(psnr(coarse_pixels, pixels).mean()))
    assert scores["latent_psnr_vs_uncached"] == pytest.approx(float(psnr(coarse, fine).mean()))
    assert scores["psnr_vs_uncached"] != pytest.approx(scores["latent_psnr_vs_uncached"], abs=0.1)
    assert scores["fd_vs_uncached"] > 0 and 0 <= scores["class_accuracy"] <= 1
    same = evaluator.score(fine, labels, reference=fine)
    assert same["fd_vs_uncached"] == pytest.approx(0.0, abs=1e-4) and same["psnr_vs_uncached"] == 100.0
    assert evaluator.images(fine).shape == (40, 1, 32, 32)


def test_the_cli_samples_the_latent_model_without_clipping():
    from gocopt.cli import _sampler, check_arguments

    args = argparse.Namespace(model="latent", steps=20, guidance_scale=4.0, guidance="batched")
    check_arguments(args)
    assert _sampler(args).clip_denoised is False
    assert _sampler(argparse.Namespace(**{**vars(args), "model": "reference"})).clip_denoised is True
    assert evaluator_for("DiT-Tiny") is None


def test_the_quality_table_refuses_a_model_it_cannot_score():
    from benchmarks.quality_table import TrainedModel

    with pytest.raises(ValueError, match="not a trained model"):
        TrainedModel.named("DiT-Tiny")
