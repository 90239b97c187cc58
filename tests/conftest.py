"""Shared fixtures: tiny random DiTs for structure tests, the shipped reference model for numbers."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_model():
    from gocopt.models import model_by_name

    return model_by_name("DiT-Tiny", seed=0)


@pytest.fixture(scope="session")
def reference_model():
    from gocopt.models import reference

    return reference()


@pytest.fixture(scope="session")
def evaluator():
    from gocopt.metrics import QualityEvaluator

    return QualityEvaluator()


def sample(model, sampler, n: int, seed: int = 0, num_classes: int = 10):
    """``n`` samples with per-sample seeds ``seed..seed+n`` and labels ``i % num_classes``."""
    from gocopt.sampling import initial_noise

    shape = (model.in_channels, model.input_size, model.input_size)
    labels = torch.arange(n) % num_classes
    return sampler.sample(model, labels, initial_noise(range(seed, seed + n), shape), num_classes=num_classes)
