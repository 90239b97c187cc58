"""GOC runtime: queue and correction numerics, exactness, step and context semantics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import sample
from gocopt.compiled import cache_model
from gocopt.errors import ScheduleError
from gocopt.runtime import CacheRuntime, GOCConfig
from gocopt.sampling import DDIMSampler, initial_noise
from gocopt.schedule import Schedule, all_compute, named_schedule
from gocopt.trace.flops import count_flops


def _value(x: float) -> tuple[torch.Tensor]:
    return (torch.tensor([x], dtype=torch.float64),)


def test_hand_computed_queue_and_correction():
    """Computed 1.0 then 3.0, then two corrected reuses at w = 1.2: 3 + 1.2·2 = 5.4, 5.4 + 1.2·2.4 = 8.28."""
    mask = np.array([[True], [True], [False], [False]])
    runtime = CacheRuntime(["s"], Schedule(mask, ("s",), (3, 2, 1, 0), GOCConfig.at_steps(1.2, {2, 3})))
    fresh = iter([1.0, 3.0])
    seen, queues = [], []
    for t in (3, 2, 1, 0):
        runtime.begin_call(t)
        seen.append(runtime.run_site(0, lambda: _value(next(fresh)), ())[0].item())
        queues.append([q[0].item() for q in runtime.state.queues[0]])
        runtime.end_call()
    assert seen == pytest.approx([1.0, 3.0, 5.4, 8.28])
    # after the last reuse nothing is queued any more: the memory is freed, not held to the end of the run
    assert queues == [pytest.approx(q) for q in ([1.0], [3.0, 1.0], [5.4, 3.0], [])]
    assert (runtime.state.computed, runtime.state.reused, runtime.state.corrected) == (2, 2, 2)


def test_correction_needs_two_queued_values_and_a_correction_step():
    mask = np.array([[True], [False], [False], [False]])
    runtime = CacheRuntime(["s"], Schedule(mask, ("s",), None, GOCConfig.at_steps(1.0, {1, 3})))
    out = []
    for _ in range(4):
        runtime.begin_call(None)
        out.append(runtime.run_site(0, lambda: _value(2.0), ())[0].item())
        runtime.end_call()
    # step 1: one queued value → plain reuse; step 2: not a correction step; step 3: 2 + (2 - 2) = 2
    assert out == [2.0, 2.0, 2.0, 2.0]
    assert runtime.state.corrected == 1


@pytest.fixture(scope="module")
def compiled_tiny(tiny_model):
    return cache_model(tiny_model)


SAMPLER = DDIMSampler(steps=10, guidance_scale=2.0)


def _interval(compiled, k: int, goc: GOCConfig, sampler: DDIMSampler = SAMPLER) -> Schedule:
    return named_schedule(f"interval:{k}", tuple(compiled.sites["site"]), steps=sampler.steps,
                          timesteps=sampler.timesteps, goc=goc)


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
    separate = sample(compiled_tiny, DDIMSampler(steps=10, guidance_scale=2.0, guidance="separate"), 6)
    torch.testing.assert_close(separate, batched, rtol=1e-5, atol=1e-5)
    assert set(compiled_tiny.runtime._states) >= {"cond", "uncond"}


def test_runs_reset_automatically_and_explicitly(compiled_tiny):
    compiled_tiny.set_schedule(_interval(compiled_tiny, 3, GOCConfig.at_steps(0.5, range(10))))
    first = sample(compiled_tiny, SAMPLER, 4)
    second = sample(compiled_tiny, SAMPLER, 4)  # auto: the previous run completed all steps
    assert torch.equal(first, second)
    x, _, y = compiled_tiny.original.example_inputs()
    compiled_tiny(x, torch.full_like(y, 999), y)  # one stray call at the first timestep: a new run...
    with pytest.raises(ScheduleError, match="after 1 of the schedule's 10 steps"):
        sample(compiled_tiny, SAMPLER, 4)  # ...so a full run now would be silently misaligned
    compiled_tiny.reset()
    assert torch.equal(sample(compiled_tiny, SAMPLER, 4), first)


def test_wrong_step_count_is_refused_with_both_numbers(compiled_tiny):
    compiled_tiny.set_schedule(_interval(compiled_tiny, 2, GOCConfig()))
    with pytest.raises(ScheduleError, match=r"made for 10 steps.*about 12 steps"):
        sample(compiled_tiny, DDIMSampler(steps=12), 2)
    compiled_tiny.reset()
    with pytest.raises(ScheduleError, match="expects timestep"):
        sample(compiled_tiny, DDIMSampler(steps=8), 2)
    runtime = CacheRuntime(["s"], Schedule(np.ones((2, 1), bool), ("s",)))
    for _ in range(2):
        runtime.begin_call(None)
        runtime.end_call()
    runtime.begin_call(None)  # a completed run without timesteps: a new run starts
    assert runtime.state.step == 0


def test_more_steps_than_the_schedule_is_refused():
    runtime = CacheRuntime(["s"], Schedule(np.ones((2, 1), bool), ("s",), (10, 5)))
    for t in (10, 5):
        runtime.begin_call(t)
        runtime.end_call()
    with pytest.raises(ScheduleError, match="more steps than the schedule: it was made for 2 steps, and this is call 3"):
        runtime.begin_call(1)


@pytest.mark.parametrize("build,message", [
    (lambda: Schedule(np.array([[True, False]]), ("a", "b")), "step 0 must compute every site"),
    (lambda: Schedule(np.ones((3, 2), bool), ("a",)), "2 site columns but 1 site ids"),
    (lambda: Schedule(np.ones((3, 1), bool), ("a",), (1, 2)), "3 rows but the sampler has 2 steps"),
    (lambda: Schedule(np.ones((3, 1), bool), ("a",), None, GOCConfig((0.1, 0.2))), "2 per-site weights"),
    (lambda: Schedule(np.full((2, 1), 2), ("a",)), "only booleans"),
])
def test_bad_schedules_are_refused(build, message):
    with pytest.raises(ScheduleError, match=message):
        build()


def test_schedule_for_other_sites_is_refused(compiled_tiny):
    schedule = Schedule(np.ones((10, 4), bool), ("blocks.0.attn", "blocks.0.mlp", "blocks.1.attn", "blocks.9.mlp"))
    with pytest.raises(ScheduleError, match="blocks.9.mlp"):
        compiled_tiny.set_schedule(schedule)


def test_named_schedules_and_their_costs(compiled_tiny):
    ids, flops, blocks = tuple(compiled_tiny.sites["site"]), compiled_tiny.site_flops, list(compiled_tiny.sites["block"])
    assert named_schedule("none", ids, steps=20).cost(flops) == 1.0
    assert named_schedule("interval:2", ids, steps=20).cost(flops) == 0.5
    assert named_schedule("interval:3", ids, steps=21).cost(flops) == pytest.approx(1 / 3)
    for budget in (0.25, 0.5, 0.75):
        l2c = named_schedule(f"l2c:{budget}", ids, steps=20, site_flops=flops, site_blocks=blocks)
        assert budget - max(flops) / (20 * sum(flops)) < l2c.cost(flops) <= budget
        reuse = l2c.reuse_fraction_per_step()
        assert reuse[1:10].mean() > reuse[10:].mean()  # concentrated in the early, noisy steps
    with pytest.raises(ScheduleError, match="unknown schedule"):
        named_schedule("fora", ids, steps=20)


def test_reused_sites_really_skip_their_flops(reference_model):
    compiled = cache_model(reference_model)
    sampler = DDIMSampler(steps=20, guidance_scale=4.0)
    uncached = count_flops(sample, reference_model, sampler, 4)
    schedule = named_schedule("interval:2", tuple(compiled.sites["site"]), steps=20, timesteps=sampler.timesteps)
    compiled.set_schedule(schedule)
    assert schedule.cost(compiled.site_flops) == 0.5
    assert count_flops(sample, compiled, sampler, 4) <= 0.52 * uncached
