"""Compiled execution: step plans, zero host syncs per call, torch.compile without recompiles, cheap reuse."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch._dynamo
from conftest import sample

import gocopt
from benchmarks.reuse_traffic import reuse_traffic
from gocopt.compiled import cache_model
from gocopt.errors import GocoptError
from gocopt.models import model_by_name
from gocopt.sampling import DDIMSampler, initial_noise
from gocopt.schedule import GOCConfig, named_schedule
from gocopt.trace.traffic import SyncCounter

COMMITTED = "schedules/reference_ddim20_b0.50.json"
SAMPLER = DDIMSampler(steps=20, guidance_scale=4.0)


class _Counted:
    """Wraps a model: counts device→host reads made *inside* its calls only."""

    def __init__(self, model) -> None:
        self.model, self.calls, self.syncs = model, 0, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        with SyncCounter() as counter:
            out = self.model(*args, **kwargs)
        self.syncs += counter.syncs
        return out

    def cache_context(self, name: str):
        return self.model.cache_context(name)


@pytest.fixture(scope="module")
def loaded(reference_model):
    return gocopt.load(reference_model, COMMITTED)


@contextlib.contextmanager
def _no_recompiles():
    """The default recompile limit, and hitting it fails instead of falling back to eager."""
    torch._dynamo.reset()
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        yield
    torch._dynamo.reset()


def _graph_counter():
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    return backend, graphs


def test_a_loaded_schedule_reads_nothing_back_to_the_host(loaded):
    counted = _Counted(loaded)
    labels, noise = torch.arange(4), initial_noise(range(4), (1, 8, 8))
    SAMPLER.sample(counted, labels, noise, num_classes=10)
    assert counted.calls == 20 and counted.syncs == 0


def test_separate_contexts_read_nothing_back_either(reference_model):
    compiled = cache_model(reference_model)
    separate = DDIMSampler(steps=10, guidance_scale=4.0, guidance="separate")
    schedule = named_schedule("interval:2", tuple(compiled.sites["site"]), steps=10, timesteps=separate.timesteps,
                              predictor=GOCConfig.at_steps(0.8, range(2, 10)))
    compiled.set_schedule(schedule.replace(guidance="separate"), log=False)
    counted = _Counted(compiled)
    separate.sample(counted, torch.arange(2), initial_noise(range(2), (1, 8, 8)), num_classes=10)
    assert counted.calls == 20 and counted.syncs == 0


def test_unannounced_runs_read_one_flag_per_run(loaded):
    """A caller that announces nothing: timesteps checked on the device, the flag read once per run."""
    counted = _Counted(loaded)
    x, labels = initial_noise(range(2), (1, 8, 8)).repeat(2, 1, 1, 1), torch.tensor([0, 1, 10, 10])
    loaded.reset()
    with torch.no_grad():
        for t in SAMPLER.timesteps * 2:
            counted(x, torch.full((4,), t), labels)
    assert counted.calls == 40 and counted.syncs == 2


def test_plain_torch_compile_equals_eager_one_graph_per_plan(loaded):
    labels, noise = torch.arange(4), initial_noise(range(4), (1, 8, 8))
    eager = SAMPLER.sample(loaded, labels, noise, num_classes=10)
    backend, graphs = _graph_counter()
    with _no_recompiles():
        compiled = torch.compile(loaded, backend=backend)
        for _ in range(2):  # a second run reuses every graph
            out = SAMPLER.sample(compiled, labels, noise, num_classes=10)
            torch.testing.assert_close(out, eager, rtol=0, atol=1e-4)
    assert len(graphs) == len(loaded.runtime.plan.plans)  # whole plans, no graph breaks inside them


def test_compile_method_runs_every_plan_fullgraph_with_aot_autograd(reference_model):
    compiled = gocopt.load(reference_model, COMMITTED)
    labels, noise = torch.arange(4), initial_noise(range(4), (1, 8, 8))
    eager = SAMPLER.sample(compiled, labels, noise, num_classes=10)
    with _no_recompiles():
        compiled.compile_graphs(backend="aot_eager")
        out = SAMPLER.sample(compiled, labels, noise, num_classes=10)
        again = SAMPLER.sample(compiled, labels, noise, num_classes=10)
    torch.testing.assert_close(out, eager, rtol=0, atol=1e-4)
    assert torch.equal(out, again)


def test_inductor_compiles_the_tiny_model_and_matches_eager(tiny_model):
    compiled = cache_model(tiny_model)
    sampler = DDIMSampler(steps=6, guidance_scale=2.0)
    compiled.set_schedule(named_schedule("interval:2", tuple(compiled.sites["site"]), steps=6,
                                         timesteps=sampler.timesteps, predictor=GOCConfig.at_steps(0.8, range(2, 6))))
    eager = sample(compiled, sampler, 3)
    with _no_recompiles():
        compiled.compile_graphs()  # inductor, fullgraph, static shapes
        out = sample(compiled, sampler, 3)
    torch.testing.assert_close(out, eager, rtol=1e-4, atol=1e-4)


def test_cuda_graphs_on_cpu_are_refused_with_the_fix(loaded):
    with pytest.raises(GocoptError, match="CUDA graphs.*model is on cpu.*mode=None on CPU"):
        loaded.compile_graphs(mode="reduce-overhead")


def test_reuse_touches_at_most_three_and_six_activations_per_site():
    """DiT-S/2 at 256 tokens: plain reuse is one addcmul (3), GOC one lerp more (6); today's bar 3.2 / 6."""
    compiled = cache_model(model_by_name("DiT-S/2"))
    plain = reuse_traffic(compiled, GOCConfig())
    goc = reuse_traffic(compiled, GOCConfig.at_steps(0.85, range(2, 20)))
    assert plain["reused_sites"] == goc["reused_sites"] == len(compiled.sites)
    assert plain["per_reused_site"] <= 3.2
    assert goc["per_reused_site"] <= 6.0
