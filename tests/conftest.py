"""Shared fixtures: tiny random DiTs for structure tests, the shipped reference models for numbers."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings

# ``make test`` runs one pytest-xdist worker per core: each takes one thread, since two workers of two
# threads on two cores oversubscribe them, which slows torch several-fold. A subprocess a test starts
# imports this file with the worker's environment, so it computes with the same thread count.
# Benchmarks run by a test take their thread count from GOCOPT_BENCH_THREADS (benchmarks/threads.py).
ON_A_WORKER = bool(os.environ.get("PYTEST_XDIST_WORKER"))
if ON_A_WORKER:
    os.environ.setdefault("GOCOPT_BENCH_THREADS", "1")
torch.set_num_threads(1 if ON_A_WORKER else 2)

# Property-based tests: ``ci`` (the default) runs a fixed, repeatable set of examples, sized for CI's
# time; ``pytest --hypothesis-profile=long`` runs twenty times as many, drawn afresh each run.
settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True)
settings.register_profile("long", max_examples=2000, deadline=None)
settings.load_profile("ci")


@pytest.fixture(scope="session")
def tiny_model():
    from gocopt.models import model_by_name

    return model_by_name("DiT-Tiny", seed=0)


@pytest.fixture(scope="session")
def reference_model():
    from gocopt.models import reference

    return reference()


@pytest.fixture(scope="session")
def latent_model():
    from gocopt.models import latent_reference

    return latent_reference()


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


class _IdentityBlock(torch.nn.Module):
    """``x + attn(x)`` with ``attn`` the identity map: the site's value is the block's input."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = torch.nn.Linear(1, 1, bias=False, dtype=torch.float64)
        torch.nn.init.ones_(self.attn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attn(x)


class OneSiteModel(torch.nn.Module):
    """One cache site whose computed value is exactly the input ``x``; at a reused step with
    ``x = 0`` the output is exactly the value the runtime made for the site."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList([_IdentityBlock()])

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.blocks[0](x)


@torch.no_grad()
def site_run(compiled, inputs, timesteps) -> tuple[list[float], list[list[float]]]:
    """Call ``compiled`` once per step; the site value used and the values kept after each step."""
    used, kept = [], []
    for x, t in zip(inputs, timesteps):
        out = compiled(torch.tensor([[x]], dtype=torch.float64), torch.tensor([t]))
        used.append(float(out) - x)
        kept.append([float(v) for v in compiled.runtime.state.kept.get("", ())])
    return used, kept


class ScriptedSampler:
    """A :class:`~gocopt.sampling.Sampler` that feeds the model ``inputs[step]`` at each step, so the
    site values of :class:`OneSiteModel` are exactly the inputs (hand-computable calibrations)."""

    guidance = "none"

    def __init__(self, inputs, timesteps) -> None:
        self.inputs, self.timesteps, self.steps = list(inputs), tuple(timesteps), len(inputs)

    def describe(self) -> dict:
        return {"name": "scripted", "steps": self.steps, "timesteps": list(self.timesteps), "guidance": self.guidance}

    @torch.no_grad()
    def sample(self, model, labels, noise, *, num_classes=None, progress=False):
        from gocopt.sampling import sampling_run

        with sampling_run(self.timesteps):
            for x, t in zip(self.inputs, self.timesteps):
                out = model(torch.tensor([[x]], dtype=torch.float64), torch.tensor([t]))
        return out
