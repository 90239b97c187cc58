"""gocopt inside real diffusers pipelines (tiny random components, offline) and the weights bridge."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from quick import QUICK

import gocopt
from examples.diffusers.tiny import pipeline
from gocopt.errors import ScheduleError
from gocopt.integrations.diffusers import install
from gocopt.schedule import all_compute

pytest.importorskip("diffusers")
pytest.importorskip("transformers")  # the PixArt / SD3 / Flux pipeline modules import it
STEPS = 5
FAMILIES = ["dit", "pixart", "pixart_sigma", "sd3", "flux"]


def _run(pipe, inputs, kwargs, steps: int = STEPS, **extra) -> torch.Tensor:
    from gocopt.integrations.diffusers import PipelineSampler, merge_inputs

    output_type = PipelineSampler(pipe, inputs, steps).output_type
    generators = [torch.Generator().manual_seed(100 + i) for i in range(len(inputs))]
    with torch.no_grad():
        out = pipe(**merge_inputs(inputs), **kwargs, **extra, generator=generators, num_inference_steps=steps,
                   output_type=output_type, return_dict=False)[0]
    return torch.as_tensor(out)


@pytest.fixture(scope="module", params=FAMILIES)
def compiled_pipeline(request):
    """A tiny pipeline compiled at budget 0.5, with its plain output on two inputs before compiling."""
    pipe, inputs, kwargs = pipeline(request.param)
    pipe.set_progress_bar_config(disable=True)
    original = pipe.transformer
    plain = _run(pipe, inputs[:2], kwargs)
    gocopt.compile_pipeline(pipe, 0.5, inputs=inputs, steps=STEPS, call_kwargs=kwargs, progress=False,
                            effort=replace(QUICK, trials=3, search_samples=4, heldout_samples=4))
    return request.param, pipe, inputs, kwargs, original, plain


def test_compile_installs_a_schedule_within_budget_that_records_the_pipeline(compiled_pipeline):
    name, pipe, _, _, original, _ = compiled_pipeline
    compiled = pipe.transformer
    schedule = compiled.schedule
    assert compiled.original is original
    assert schedule.cost(compiled.site_flops) <= 0.5 + 1e-9 and (~schedule.mask).any()
    assert schedule.steps == STEPS and schedule.sampler["scheduler"] == type(pipe.scheduler).__name__
    assert schedule.guidance == ("separate" if name == "flux" else "batched")  # Flux: cache_context calls
    assert len(schedule.timesteps) == STEPS


def test_all_compute_schedule_is_bit_exact_in_the_pipeline(compiled_pipeline):
    _, pipe, inputs, kwargs, _, plain = compiled_pipeline
    compiled = pipe.transformer
    searched = compiled.schedule
    exact = all_compute(searched.site_ids, searched.steps, searched.timesteps, guidance=searched.guidance,
                        sampler=searched.sampler)
    compiled.set_schedule(exact)
    try:
        assert torch.equal(_run(pipe, inputs[:2], kwargs), plain)
    finally:
        compiled.set_schedule(searched)


def test_each_call_is_a_fresh_run_and_a_loaded_schedule_reproduces_it(compiled_pipeline, tmp_path):
    _, pipe, inputs, kwargs, original, plain = compiled_pipeline
    first = _run(pipe, inputs[:2], kwargs)
    assert not torch.equal(first, plain)  # the cache really changed something
    assert torch.equal(_run(pipe, inputs[:2], kwargs), first)  # state reset between calls
    path = tmp_path / "schedule.json"
    pipe.transformer.save(path)
    gocopt.remove(pipe)
    assert pipe.transformer is original and "set_timesteps" not in pipe.scheduler.__dict__  # no guard left
    assert torch.equal(_run(pipe, inputs[:2], kwargs), plain)  # removing gocopt restores the original exactly
    assert gocopt.load_pipeline(pipe, path, inputs=inputs[:1]) is pipe
    assert torch.equal(_run(pipe, inputs[:2], kwargs), first)  # a fresh load gives the same first call


def test_transformer_calls_read_nothing_back_and_compile_whole(compiled_pipeline):
    """The scheduler guard checks the timesteps once per pipeline call, so the transformer calls need no
    device→host read; torch.compile of the step plans (no recompiles) gives the eager pipeline's output."""
    import torch._dynamo

    from gocopt.trace.traffic import SyncCounter

    _, pipe, inputs, kwargs, _, _ = compiled_pipeline
    compiled, counters = pipe.transformer, []

    def enter(module, args):
        counters.append(SyncCounter().__enter__())

    def leave(module, args, out):
        counters[-1].__exit__(None, None, None)

    hooks = [compiled.register_forward_pre_hook(enter), compiled.register_forward_hook(leave)]
    try:
        eager = _run(pipe, inputs[:2], kwargs)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(counters) == STEPS * (2 if compiled.schedule.guidance == "separate" else 1)
    assert sum(c.syncs for c in counters) == 0
    torch._dynamo.reset()
    try:
        with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
            compiled.compile_graphs(backend="aot_eager")
            torch.testing.assert_close(_run(pipe, inputs[:2], kwargs), eager, rtol=0, atol=1e-4)
    finally:
        compiled.compile_graphs(disable=True)  # back to eager step plans for the other tests
        torch._dynamo.reset()


def test_other_step_counts_and_schedulers_are_refused(compiled_pipeline, tmp_path):
    _, pipe, inputs, kwargs, _, _ = compiled_pipeline
    calls = []
    hook = pipe.transformer.register_forward_pre_hook(lambda *a: calls.append(1))
    with pytest.raises(ScheduleError, match=f"made for {STEPS} steps.*called with {STEPS + 2}"):
        _run(pipe, inputs[:1], kwargs, steps=STEPS + 2)
    hook.remove()
    assert not calls  # refused before the first transformer call
    path = tmp_path / "schedule.json"
    pipe.transformer.save(path)
    compiled = pipe.transformer
    other = type("OtherScheduler", (type(pipe.scheduler),), {}).from_config(pipe.scheduler.config)
    saved, pipe.scheduler = pipe.scheduler, other
    try:
        with pytest.raises(ScheduleError, match="OtherScheduler"):
            gocopt.load_pipeline(pipe, path, inputs=inputs[:1])
    finally:
        gocopt.remove(pipe)
        pipe.scheduler = saved
        install(pipe, compiled)


def test_interrupted_run_and_step_callbacks(tmp_path):
    """SD3: callback_on_step_end sees every step as without gocopt; after an interrupted call the next
    call starts a fresh run."""
    pipe, inputs, kwargs = pipeline("sd3")
    pipe.set_progress_bar_config(disable=True)
    gocopt.compile_pipeline(pipe, 0.5, inputs=inputs, steps=STEPS, call_kwargs=kwargs, progress=False,
                            effort=replace(QUICK, trials=2, search_samples=4, heldout_samples=4))
    reference = _run(pipe, inputs[:1], kwargs)
    seen = []

    def stop_at_two(p, step, t, callback_kwargs):
        seen.append(step)
        if step == 1:
            p._interrupt = True
        return callback_kwargs

    _run(pipe, inputs[:1], kwargs, callback_on_step_end=stop_at_two)
    assert seen == [0, 1]
    assert torch.equal(_run(pipe, inputs[:1], kwargs), reference)


def test_reference_weights_run_in_a_real_dit_pipeline():
    """The bridge: diffusers' DiTTransformer2DModel equals the reference DiT bit for bit, and
    DiTPipeline with it samples what gocopt's DDIM samples (max abs difference ≤ 1e-4)."""
    from gocopt.integrations.dit_weights import to_diffusers
    from gocopt.integrations.reference_pipeline import reference_pipeline
    from gocopt.models import reference
    from gocopt.sampling import DDIMSampler, initial_noise

    model = reference()
    transformer = to_diffusers(model)
    x, t, y = model.example_inputs(4)
    with torch.no_grad():
        assert torch.equal(transformer(x, timestep=t, class_labels=y).sample, model(x, t, y))
        null = torch.full_like(y, model.num_classes)
        assert torch.equal(transformer(x, timestep=t, class_labels=torch.full_like(y, 1000)).sample, model(x, t, null))
    pipe = reference_pipeline(model)
    pipe.set_progress_bar_config(disable=True)
    labels = torch.arange(6)
    generators = [torch.Generator().manual_seed(i) for i in range(6)]
    with torch.no_grad():
        images = pipe(class_labels=labels.tolist(), generator=generators, num_inference_steps=20,
                      output_type="pt").images
    ours = DDIMSampler(steps=20, guidance_scale=4.0).sample(model, labels, initial_noise(range(6), (1, 8, 8)),
                                                            num_classes=10)
    assert (images * 2 - 1 - ours.clamp(-1, 1)).abs().max() <= 1e-4


def test_more_than_one_transformer_call_per_step_is_refused():
    """SD3 skip-layer guidance calls the transformer a second time at some steps, with skip_layers set: the
    traced graph has skip_layers=None baked in, so the call is refused by name instead of silently misaligning."""
    from gocopt.errors import GocoptError

    pipe, inputs, kwargs = pipeline("sd3")
    pipe.set_progress_bar_config(disable=True)
    with pytest.raises(GocoptError, match="skip_layers"):
        gocopt.compile_pipeline(pipe, 0.5, inputs=inputs, steps=10, call_kwargs={**kwargs, "skip_guidance_layers": [0]},
                                effort=gocopt.Effort(trials=1, search_samples=2, heldout_samples=2), progress=False)
    assert not isinstance(pipe.transformer, gocopt.CachedModel)  # nothing installed


@pytest.mark.parametrize("argument", ["sampler", "example_inputs", "num_classes", "latent_shape", "evaluator"])
def test_a_model_option_given_with_a_pipeline_is_refused_by_name(argument, tmp_path):
    """Before issue #37 these were dropped without a word: a pipeline compiled with its own scheduler
    while the caller believed their sampler was used."""
    pipe, inputs, kwargs = pipeline("dit")
    with pytest.raises(gocopt.ArgumentError, match=f"{argument} do\\(es\\) not apply to a diffusers pipeline"):
        gocopt.compile(pipe, 0.5, steps=STEPS, inputs=inputs, call_kwargs=kwargs, **{argument: object()})
    if argument != "evaluator":  # load takes no evaluator at all
        with pytest.raises(gocopt.ArgumentError, match=argument):
            gocopt.load(pipe, tmp_path / "never_read.json", inputs=inputs[:1], **{argument: object()})


@pytest.mark.parametrize("argument", ["inputs", "call_kwargs"])
def test_a_pipeline_option_given_with_a_model_is_refused_by_name(argument, tiny_model, tmp_path):
    value = [{"class_labels": 1}] if argument == "inputs" else {"guidance_scale": 4.0}
    with pytest.raises(gocopt.ArgumentError, match=f"{argument} apply only to a diffusers pipeline"):
        gocopt.compile(tiny_model, 0.5, **{argument: value})
    with pytest.raises(gocopt.ArgumentError, match=argument):
        gocopt.load(tiny_model, tmp_path / "never_read.json", **{argument: value})


def test_the_old_pipeline_form_still_compiles_and_loads_with_a_warning(tmp_path):
    """gocopt 0.1's ``compile(pipe, ...)`` / ``load(pipe, ...)``: the pipeline back, as before, and a
    DeprecationWarning naming the entry point to use instead."""
    pipe, inputs, kwargs = pipeline("dit")
    pipe.set_progress_bar_config(disable=True)
    with pytest.warns(DeprecationWarning, match=r"gocopt.compile_pipeline\(pipe, budget, inputs=..., steps=..."):
        assert gocopt.compile(pipe, 0.5, steps=STEPS, inputs=inputs, call_kwargs=kwargs, trials=2, search_samples=2,
                              heldout_samples=2, effort=QUICK, progress=False) is pipe
    pipe.transformer.save(tmp_path / "s.json")
    gocopt.remove(pipe)
    with pytest.warns(DeprecationWarning, match=r"gocopt.load_pipeline\(pipe, path"):
        assert gocopt.load(pipe, tmp_path / "s.json", inputs=inputs[:1]) is pipe
    assert isinstance(pipe.transformer, gocopt.CachedModel)
