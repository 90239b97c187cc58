"""Any DiT as users have it: the original DiT class, blocks outside lists, half precision."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import torch
from foreign_models import OriginalDiT, UViT, UViTWithOddParts
from quick import QUICK
from torch import nn

import gocopt
from gocopt.compiled import cache_model
from gocopt.driver import for_model
from gocopt.errors import GocoptError, ScheduleError
from gocopt.models import model_by_name
from gocopt.models.convention import dit_spec
from gocopt.sampling import DDIMSampler, initial_noise
from gocopt.schedule import GOCConfig, all_compute, named_schedule

SAMPLER = DDIMSampler(steps=6, guidance_scale=2.0)
GOC = GOCConfig.at_steps(0.8, range(2, 6))


def _sample(model, n: int = 3, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    noise = initial_noise(range(n), (1, 8, 8)).to(dtype)
    return SAMPLER.sample(model, torch.arange(n) % 10, noise, num_classes=10)


def _interval(compiled, goc: GOCConfig = GOC):
    return named_schedule("interval:2", tuple(compiled.sites["site"]), steps=6, timesteps=SAMPLER.timesteps,
                          predictor=goc)


def test_the_original_dit_class_compiles_and_loads_with_no_extra_arguments(tmp_path):
    model = OriginalDiT().eval()
    assert not hasattr(model, "num_classes") and not hasattr(model, "input_size")
    assert dit_spec(model).num_classes == 10 and dit_spec(model).latent_shape == (1, 8, 8)
    compiled = gocopt.compile(model, budget=0.5, sampler=gocopt.default_sampler(6), progress=False,
                              effort=replace(QUICK, trials=2, search_samples=4, heldout_samples=4))
    assert compiled.schedule.cost(compiled.site_flops) <= 0.5 and len(compiled.sites) == 4
    path = tmp_path / "original.json"
    compiled.save(path)
    loaded = gocopt.load(OriginalDiT().eval(), path)  # traced on the sampler's first call, as compile was
    assert torch.equal(_sample(loaded), _sample(compiled))


def test_what_cannot_be_read_off_the_model_is_asked_for_by_name():
    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = OriginalDiT()

        def forward(self, x, t, y):
            return self.inner(x, t, y)

    with pytest.raises(GocoptError, match=r"pass spec=DiTSpec\(num_classes=.*spec=DiTSpec\(latent_shape=\(C, H, W\)"):
        gocopt.compile(Wrapped(), budget=0.5, sampler=gocopt.default_sampler(6))
    assert dit_spec(Wrapped(), gocopt.DiTSpec(num_classes=10, latent_shape=(1, 8, 8))).latent_shape == (1, 8, 8)


def _example():
    return torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([999, 999]), \
        torch.tensor([1, 10])


def test_uvit_middle_block_held_as_an_attribute_gets_its_sites():
    model = UViT().eval()
    compiled = cache_model(model, None, _example())
    sites = compiled.sites
    assert sites.attrs["mode"] == "whole" and not sites.attrs["notes"]
    assert sites.groupby("block").size().tolist() == [2] * 5  # in_blocks, mid_block, out_blocks: attn + mlp each
    assert list(sites["site"][4:6]) == ["mid_block.attn", "mid_block.mlp"]
    assert 0.9 < sites.attrs["coverage"] < 1.0  # the long skips' linears are block work no site holds
    compiled.set_schedule(all_compute(tuple(sites["site"]), 6, SAMPLER.timesteps))
    assert torch.equal(_sample(compiled), _sample(model))
    compiled.set_schedule(_interval(compiled))
    assert not torch.equal(_sample(compiled), _sample(model))


def test_branches_in_no_block_list_are_placed_by_the_graph():
    model = UViTWithOddParts().eval()
    compiled = cache_model(model, None, _example())
    sites = compiled.sites
    assert "mid_block.ff" in set(sites["site"]) and "final_ff" in set(sites["site"])
    assert list(sites["block"]) == sorted(sites["block"])  # blocks numbered in the order the graph runs them
    assert any("in the forward of the model itself" in note for note in sites.attrs["notes"])
    compiled.set_schedule(all_compute(tuple(sites["site"]), 6, SAMPLER.timesteps))
    assert torch.equal(_sample(compiled), _sample(model))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models_trace_run_and_keep_their_dtype(dtype):
    model = model_by_name("DiT-Tiny", seed=0).to(dtype)
    compiled = cache_model(model)
    compiled.set_schedule(all_compute(tuple(compiled.sites["site"]), 6, SAMPLER.timesteps))
    assert torch.equal(_sample(compiled, dtype=dtype), _sample(model, dtype=dtype))
    compiled.set_schedule(_interval(compiled))
    x, t, y = model.example_inputs(2)
    compiled.reset()
    for step in range(3):
        out = compiled(x, torch.full_like(t, SAMPLER.timesteps[step]), y)
        assert out.dtype == dtype and torch.isfinite(out).all()
        assert all(v.dtype == dtype for v in compiled.runtime.state.kept[""])  # GOC stays in the values' dtype
    compiled.reset()


def test_autocast_runs_through_the_step_plans():
    model = model_by_name("DiT-Tiny", seed=0)
    compiled = cache_model(model)
    compiled.set_schedule(all_compute(tuple(compiled.sites["site"]), 6, SAMPLER.timesteps))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(_sample(compiled), _sample(model))
        compiled.set_schedule(_interval(compiled))
        assert torch.isfinite(_sample(compiled)).all()


def test_a_float32_schedule_loads_on_a_half_precision_copy_of_its_weights_only(tmp_path, caplog):
    model = model_by_name("DiT-Tiny", seed=0)
    compiled = cache_model(model)
    path = tmp_path / "tiny.json"
    gocopt.save_schedule(for_model(_interval(compiled), compiled, SAMPLER), path)
    with caplog.at_level(logging.WARNING, logger="gocopt"):
        half = gocopt.load(model_by_name("DiT-Tiny", seed=0).to(torch.bfloat16), path)
    assert not caplog.records  # the bfloat16 hash was recorded and matches
    assert half.schedule.fingerprint["dtype"] == "float32"
    with pytest.raises(ScheduleError, match="different weights.*compared as bfloat16"):
        gocopt.load(model_by_name("DiT-Tiny", seed=1).to(torch.bfloat16), path)


@pytest.mark.parametrize("name,per_block", [("hunyuan", 3), ("cogvideox", 2), ("latte", None)])
def test_more_diffusers_transformers_trace_whole_and_cache(name, per_block):
    pytest.importorskip("diffusers")
    from foreign_models import tiny_diffusers

    model, call = tiny_diffusers(name)
    compiled = cache_model(model, None, call)
    sites = compiled.sites
    assert sites.attrs["mode"] == "whole" and sites.attrs["coverage"] > 0.8
    if per_block is not None:
        assert set(sites.groupby("block").size()) == {per_block}
    timesteps = (900.0, 600.0, 300.0, 0.0)

    def run(runner) -> list[torch.Tensor]:
        with torch.no_grad():
            return [runner(**{**call, "timestep": torch.full_like(call["timestep"], t)})[0] for t in timesteps]

    ids = tuple(sites["site"])
    compiled.set_schedule(all_compute(ids, 4, timesteps))
    assert all(torch.equal(a, b) for a, b in zip(run(compiled), run(model)))
    schedule = named_schedule("interval:2", ids, steps=4, timesteps=timesteps, predictor=GOCConfig.at_steps(0.5, {3}))
    compiled.set_schedule(schedule)
    assert schedule.cost(compiled.site_flops) <= 0.5
    cached = run(compiled)
    assert torch.equal(cached[0], run(model)[0]) and not torch.equal(cached[1], run(model)[1])


def test_a_bfloat16_model_compiles_at_its_budget():
    from benchmarks.gpu_speed import random_dit

    model = random_dit("DiT-Tiny", torch.bfloat16, torch.device("cpu"))  # adaLN random: the gates are not zero
    pixel_space = DDIMSampler(steps=6, guidance_scale=4.0)  # 8×8 images: x0 clipped, as the caller knows
    compiled = gocopt.compile(model, 0.5, sampler=pixel_space, progress=False,
                              effort=replace(QUICK, trials=2, search_samples=4, heldout_samples=4))
    schedule = compiled.schedule
    held = schedule.provenance["quality"]["heldout"]
    assert schedule.cost(compiled.site_flops) <= 0.5 and schedule.fingerprint["dtype"] == "bfloat16"
    assert 20 < held["psnr_vs_uncached"] < 100  # really cached, still close to the uncached bf16 model
