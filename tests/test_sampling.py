"""DDIM at DiT's respacing, guidance modes, determinism by seed."""

from __future__ import annotations

import pytest
import torch
from conftest import sample

from gocopt.sampling import DDIMSampler, GaussianDiffusion, initial_noise


def test_timesteps_follow_the_dit_respacing():
    steps = DDIMSampler(steps=20).timesteps
    assert steps[:3] == [999, 946, 894] and steps[-2:] == [53, 0] and len(steps) == 20
    assert steps[17] == 105  # the seed paper's inflection step 17 sits at timestep 105
    assert DDIMSampler(steps=2).timesteps == [999, 0]


def test_noise_schedule_is_dits_linear_betas():
    ab = GaussianDiffusion().alphas_cumprod
    assert ab.shape == (1000,)
    assert ab[0].item() == pytest.approx(1 - 1e-4)
    assert ab[-1].item() == pytest.approx(4.04e-5, rel=0.02)


def test_bad_sampler_settings_are_refused():
    with pytest.raises(ValueError, match="at least 2 steps"):
        DDIMSampler(steps=1)
    with pytest.raises(ValueError, match="guidance"):
        DDIMSampler(guidance="both")


def test_same_seeds_give_identical_samples_and_other_seeds_do_not(tiny_model):
    sampler = DDIMSampler(steps=5)
    a = sample(tiny_model, sampler, 4, seed=0)
    b = sample(tiny_model, sampler, 4, seed=0)
    c = sample(tiny_model, sampler, 4, seed=10)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_noise_of_a_sample_does_not_depend_on_its_batch():
    assert torch.equal(initial_noise([5, 6, 7], (1, 4, 4))[1], initial_noise([6], (1, 4, 4))[0])


def test_separate_guidance_calls_equal_batched_guidance(tiny_model):
    batched = sample(tiny_model, DDIMSampler(steps=5, guidance="batched"), 6)
    separate = sample(tiny_model, DDIMSampler(steps=5, guidance="separate"), 6)
    torch.testing.assert_close(separate, batched, rtol=1e-5, atol=1e-6)


def test_sampler_calls_the_model_once_per_step_with_batched_guidance(tiny_model):
    calls = []

    def counting(x, t, y):
        calls.append(int(t[0]))
        return tiny_model(x, t, y)

    sampler = DDIMSampler(steps=7)
    sampler.sample(counting, torch.arange(3), initial_noise(range(3), (1, 8, 8)), num_classes=10)
    assert calls == sampler.timesteps


def test_gocopt_ddim_and_the_pipeline_adapter_are_both_samplers():
    from gocopt.integrations.diffusers import PipelineSampler
    from gocopt.sampling import DDIMSampler, Sampler

    assert isinstance(DDIMSampler(steps=4), Sampler)
    pytest.importorskip("diffusers")
    from examples.diffusers.tiny import pipeline

    pipe, inputs, _ = pipeline("dit")
    assert isinstance(PipelineSampler(pipe, inputs, 4), Sampler)
