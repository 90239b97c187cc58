"""GOC runtime: queue and correction numerics, exactness, step and context semantics."""

from __future__ import annotations

import contextlib
from unittest import mock

import numpy as np
import pytest
import torch
from conftest import OneSiteModel, sample, site_run

from gocopt.compiled import cache_model
from gocopt.errors import ScheduleError
from gocopt.runtime import CacheRuntime
from gocopt.sampling import DDIMSampler, initial_noise
from gocopt.sampling.run import sampling_run
from gocopt.schedule import GOCConfig, Schedule, all_compute, named_schedule
from gocopt.trace.flops import count_flops


@pytest.fixture
def one_site():
    return cache_model(OneSiteModel(), None, (torch.zeros(1, 1, dtype=torch.float64), torch.tensor([3])))


def test_hand_computed_queue_and_correction(one_site):
    """Computed 1.0 then 3.0, then two corrected reuses at w = 1.2: 3 + 1.2·2 = 5.4, 5.4 + 1.2·2.4 = 8.28."""
    mask = np.array([[True], [True], [False], [False]])
    one_site.set_schedule(Schedule(mask, ("blocks.0.attn",), (3, 2, 1, 0), GOCConfig.at_steps(1.2, {2, 3})))
    for announced in (False, True):
        with sampling_run((3, 2, 1, 0)) if announced else contextlib.nullcontext():
            used, kept = site_run(one_site, [1.0, 3.0, 0.0, 0.0], (3, 2, 1, 0))
        assert used == pytest.approx([1.0, 3.0, 5.4, 8.28])
        # kept: two fixed slots, newest first (the first compute leaves zeros in the second); once the
        # run is over nothing is kept
        assert kept == [pytest.approx(k) for k in ([1.0, 0.0], [3.0, 1.0], [5.4, 3.0], [])]
        state = one_site.runtime.state
        assert (state.computed, state.reused, state.corrected) == (2, 2, 2)


def test_correction_needs_two_queued_values_and_a_correction_step(one_site):
    mask = np.array([[True], [False], [False], [False]])
    one_site.set_schedule(Schedule(mask, ("blocks.0.attn",), None, GOCConfig.at_steps(1.0, {1, 3})))
    used, kept = site_run(one_site, [2.0, 0.0, 0.0, 0.0], (3, 2, 1, 0))
    # step 1: one value so far → plain reuse; step 2: not a correction step; step 3: 2 + (2 - 2) = 2
    assert used == [2.0, 2.0, 2.0, 2.0]
    # step 3's correction reads the values used at steps 2 and 1 — both step 0's, by plain reuse — so
    # g = 0 exactly: the plan runs it as plain reuse and keeps one slot; the run's end frees it
    assert one_site.runtime.last_run.corrected == 0
    assert [len(k) for k in kept] == [1, 1, 1, 0]
    assert one_site.runtime.memory_bytes() == 0


@pytest.fixture(scope="module")
def compiled_tiny(tiny_model):
    return cache_model(tiny_model)


SAMPLER = DDIMSampler(steps=10, guidance_scale=2.0)


def _interval(compiled, k: int, goc: GOCConfig, sampler: DDIMSampler = SAMPLER) -> Schedule:
    return named_schedule(f"interval:{k}", tuple(compiled.sites["site"]), steps=sampler.steps,
                          timesteps=sampler.timesteps, predictor=goc)


def test_all_compute_schedule_reproduces_the_uncached_model_bit_for_bit(tiny_model, compiled_tiny):
    compiled_tiny.set_schedule(all_compute(compiled_tiny.sites["site"], SAMPLER.steps, SAMPLER.timesteps))
    assert torch.equal(sample(compiled_tiny, SAMPLER, 6), sample(tiny_model, SAMPLER, 6))


def test_w_zero_reproduces_plain_reuse_bit_for_bit(compiled_tiny):
    compiled_tiny.set_schedule(_interval(compiled_tiny, 2, GOCConfig()))
    plain = sample(compiled_tiny, SAMPLER, 6)
    compiled_tiny.set_schedule(_interval(compiled_tiny, 2, GOCConfig.at_steps(0.0, range(10))))
    assert torch.equal(sample(compiled_tiny, SAMPLER, 6), plain)
    compiled_tiny.set_schedule(_interval(compiled_tiny, 2, GOCConfig.at_steps(0.8, range(10))))
    assert not torch.equal(sample(compiled_tiny, SAMPLER, 6), plain)


def test_a_sample_in_a_batch_equals_the_same_sample_alone(compiled_tiny):
    compiled_tiny.set_schedule(_interval(compiled_tiny, 2, GOCConfig.at_steps(0.8, range(10))))
    batch = sample(compiled_tiny, SAMPLER, 8)
    for i in (0, 5):
        alone = SAMPLER.sample(compiled_tiny, torch.tensor([i % 10]), initial_noise([i], (1, 8, 8)), num_classes=10)
        torch.testing.assert_close(alone[0], batch[i], rtol=1e-5, atol=1e-5)


def test_separate_cond_uncond_calls_equal_batched_guidance_with_goc(compiled_tiny):
    compiled_tiny.set_schedule(_interval(compiled_tiny, 2, GOCConfig.at_steps(0.8, range(10))))
    batched = sample(compiled_tiny, SAMPLER, 6)
    contexts = []
    hook = compiled_tiny.register_forward_pre_hook(lambda m, a: contexts.append(m.runtime.context_name))
    try:
        separate = sample(compiled_tiny, DDIMSampler(steps=10, guidance_scale=2.0, guidance="separate"), 6)
    finally:
        hook.remove()
    # equal only if each context kept its own GOC queue: mixed queues would correct across halves
    torch.testing.assert_close(separate, batched, rtol=1e-5, atol=1e-5)
    assert sorted(set(contexts)) == ["cond", "uncond"] and len(contexts) == 20


def test_runs_reset_automatically_and_explicitly(compiled_tiny):
    compiled_tiny.set_schedule(_interval(compiled_tiny, 3, GOCConfig.at_steps(0.5, range(10))))
    first = sample(compiled_tiny, SAMPLER, 4)
    second = sample(compiled_tiny, SAMPLER, 4)  # a new announced run
    assert torch.equal(first, second)
    x, _, y = compiled_tiny.original.example_inputs()
    compiled_tiny(x, torch.full_like(y, 999), y)  # one stray call outside any run...
    assert torch.equal(sample(compiled_tiny, SAMPLER, 4), first)  # ...never leaks into the next announced run
    compiled_tiny(x, torch.full_like(y, 999), y)
    compiled_tiny.reset()
    assert compiled_tiny.runtime.state.step == 0


def _unannounced(compiled, sampler: DDIMSampler, n: int):
    """Sample without announcing the run: the model sees only the timestep tensors."""
    with mock.patch("gocopt.sampling.ddim.sampling_run", lambda timesteps: contextlib.nullcontext()):
        return sample(compiled, sampler, n)


def test_wrong_step_count_is_refused_with_both_numbers(compiled_tiny):
    compiled_tiny.set_schedule(_interval(compiled_tiny, 2, GOCConfig()))
    with pytest.raises(ScheduleError, match=r"sampler runs 12 steps but the schedule was made for 10 steps"):
        sample(compiled_tiny, DDIMSampler(steps=12), 2)  # announced: refused before the first call runs
    with pytest.raises(ScheduleError, match=r"made for 10 steps.*about 12 steps"):
        _unannounced(compiled_tiny, DDIMSampler(steps=12), 2)  # checked on the device, read at the last step
    compiled_tiny.reset()


def test_unannounced_mismatch_poisons_outputs_until_the_check(compiled_tiny):
    """A sampler with fewer steps ends its run before the schedule's last step reads the flag:
    its samples are NaN, never silently wrong; the next run raises."""
    compiled_tiny.set_schedule(_interval(compiled_tiny, 2, GOCConfig()))
    compiled_tiny.reset()
    assert torch.isnan(_unannounced(compiled_tiny, DDIMSampler(steps=8), 2)).all()
    with pytest.raises(ScheduleError, match="expects timestep"):
        _unannounced(compiled_tiny, DDIMSampler(steps=8), 2)
    compiled_tiny.reset()
    assert torch.equal(_unannounced(compiled_tiny, SAMPLER, 3), sample(compiled_tiny, SAMPLER, 3))


def test_more_steps_than_the_schedule_is_refused():
    runtime = CacheRuntime(["s"], Schedule(np.ones((2, 1), bool), ("s",), (10, 5)))
    for t in (10, 5):
        runtime.end_call(runtime.begin_call(t), None)
    with sampling_run((10, 5)):
        for _ in range(2):
            runtime.end_call(runtime.begin_call(None), None)
        with pytest.raises(ScheduleError,
                           match="more steps than the schedule: it was made for 2 steps, and this is call 3"):
            runtime.begin_call(None)


def test_schedule_for_other_sites_is_refused(compiled_tiny):
    schedule = Schedule(np.ones((10, 4), bool), ("blocks.0.attn", "blocks.0.mlp", "blocks.1.attn", "blocks.9.mlp"))
    with pytest.raises(ScheduleError, match="blocks.9.mlp"):
        compiled_tiny.set_schedule(schedule)


def test_reused_sites_really_skip_their_flops(reference_model):
    compiled = cache_model(reference_model)
    sampler = DDIMSampler(steps=20, guidance_scale=4.0)
    uncached = count_flops(sample, reference_model, sampler, 4)
    schedule = named_schedule("interval:2", tuple(compiled.sites["site"]), steps=20, timesteps=sampler.timesteps)
    compiled.set_schedule(schedule)
    assert schedule.cost(compiled.site_flops) == 0.5
    assert count_flops(sample, compiled, sampler, 4) <= 0.52 * uncached


def test_a_refused_host_timestep_leaves_the_run_free_for_the_right_call():
    """A Python-number timestep is checked on the host before the call runs; after the refusal the
    same step can be called with the right timestep (not refused as a concurrent call)."""
    runtime = CacheRuntime(["s"], Schedule(np.ones((2, 1), bool), ("s",), (10, 5)))
    with pytest.raises(ScheduleError, match="expects timestep 10 but the model got 7"):
        runtime.begin_call(7)
    runtime.end_call(runtime.begin_call(10), None)
    assert runtime.state.step == 1
