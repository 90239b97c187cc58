"""The schedule file: round trip, refusals with clear messages, fuzzing, atomic writes."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import sample
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gocopt.api import load
from gocopt.compiled import cache_model
from gocopt.driver import for_model
from gocopt.errors import ScheduleError
from gocopt.models import dit, model_by_name
from gocopt.models.reference import randomize_adaln
from gocopt.sampling import DDIMSampler
from gocopt.schedule import GOCConfig, named_schedule
from gocopt.schedule.io import from_document, load_schedule, save_schedule, to_document
from gocopt.schedule.predictors import Fitted

SAMPLER = DDIMSampler(steps=10, guidance_scale=2.0)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_model):
    compiled = cache_model(tiny_model)
    schedule = named_schedule("interval:2", tuple(compiled.sites["site"]), steps=10, timesteps=SAMPLER.timesteps,
                              predictor=GOCConfig.at_steps(0.7, range(2, 10)))
    schedule = for_model(schedule.replace(budget=0.5, provenance={"quality": {"psnr_vs_uncached": 40.0}}), compiled,
                         SAMPLER)
    path = tmp_path_factory.mktemp("schedules") / "tiny.json"
    save_schedule(schedule, path)
    return path, schedule


def _edited(tmp_path: Path, saved_path: Path, edit) -> Path:
    document = json.loads(saved_path.read_text())
    edit(document)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(document))
    return path


def test_round_trip_keeps_everything(saved):
    path, schedule = saved
    loaded = load_schedule(path)
    assert (loaded.mask == schedule.mask).all() and loaded.site_ids == schedule.site_ids
    assert loaded.predictor == schedule.predictor and loaded.timesteps == schedule.timesteps
    assert loaded.fingerprint == schedule.fingerprint and loaded.guidance == "batched" and loaded.budget == 0.5
    assert loaded.provenance["quality"] == {"psnr_vs_uncached": 40.0}


def test_version_one_files_still_load_as_goc_schedules(saved, tmp_path):
    """Format 1 kept GOC's parameters (and the inflection points) in a ``goc`` section."""
    path, schedule = saved

    def as_version_one(document):
        predictor = document.pop("predictor")
        del predictor["kind"]
        document.update(format_version=1, goc={**predictor, "inflection_points": document.pop("inflection_points")})

    loaded = load_schedule(_edited(tmp_path, path, as_version_one))
    assert loaded.predictor == schedule.predictor and (loaded.mask == schedule.mask).all()


def test_a_fitted_predictor_round_trips_coefficient_by_coefficient(saved, tmp_path):
    path, schedule = saved
    reused = [(s, i) for s in range(schedule.steps) for i in range(schedule.num_sites) if not schedule.mask[s, i]]
    fitted = Fitted(2, {(s, i): ((1, 1.25 + 0.01 * i), (3, -0.25 - 0.01 * i)) if s >= 3 else ((1, 1.0),)
                        for s, i in reused}, {"ridge": 0.001})
    again = load_schedule(save_schedule(schedule.replace(predictor=fitted), tmp_path / "fitted.json"))
    assert again.predictor == fitted and again.predictor.fit == {"ridge": 0.001}


def test_file_is_diffable_one_mask_string_per_step(saved):
    path, _ = saved
    text = path.read_text()
    document = json.loads(text)
    assert document["mask"]["rows"][:2] == ["1111", "0000"]
    assert text == json.dumps(document, indent=2, sort_keys=True) + "\n"  # stable order and formatting


@pytest.mark.slow
def test_loaded_in_a_fresh_process_gives_bit_identical_samples(saved, tmp_path, tiny_model):
    path, _ = saved
    compiled = load(tiny_model, path, sampler=SAMPLER)
    here = sample(compiled, SAMPLER, 4)
    script = (
        "import torch, sys\n"
        "sys.path.insert(0, 'tests')\n"
        "from conftest import sample\n"
        "from gocopt import load\n"
        "from gocopt.models import model_by_name\n"
        "from gocopt.sampling import DDIMSampler\n"
        "sampler = DDIMSampler(steps=10, guidance_scale=2.0)\n"
        f"compiled = load(model_by_name('DiT-Tiny', seed=0), {str(path)!r}, sampler=sampler)\n"
        f"torch.save(sample(compiled, sampler, 4), {str(tmp_path / 'out.pt')!r})\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parent.parent)
    assert torch.equal(torch.load(tmp_path / "out.pt"), here)


@pytest.mark.parametrize("override,field", [
    ({"depth": 3}, "parameters_sha256"),
    ({"hidden_size": 64}, "hidden_size"),
    ({"num_classes": 5}, "num_classes"),
])
def test_another_model_is_refused(saved, override, field):
    torch.manual_seed(0)
    other = dit("DiT-Tiny", **override)
    randomize_adaln(other)
    with pytest.raises(ScheduleError, match=field):
        load(other.eval(), saved[0])


def test_other_weights_are_refused_unless_accepted(saved):
    other = model_by_name("DiT-Tiny", seed=1)
    with pytest.raises(ScheduleError, match="weights_sha256"):
        load(other, saved[0])
    assert load(other, saved[0], check_weights=False).schedule is not None


@pytest.mark.parametrize("sampler,message", [
    (DDIMSampler(steps=12, guidance_scale=2.0), "made for 10 steps, the sampler runs 12"),
    (DDIMSampler(steps=10, guidance_scale=2.0, guidance="separate"), "'batched' guidance, the sampler uses 'separate'"),
    # issue #33: a schedule made for the clipped pixel sampler, on a latent model's unclipped one
    (DDIMSampler(steps=10, guidance_scale=2.0, clip_denoised=False),
     r"sampler.clip_denoised: schedule was made for a sampler with clip_denoised=True, the sampler has "
     "clip_denoised=False"),
])
def test_another_sampler_is_refused(saved, tiny_model, sampler, message):
    with pytest.raises(ScheduleError, match=message):
        load(tiny_model, saved[0], sampler=sampler)


def test_guidance_mode_is_enforced_at_run_time_too(saved, tiny_model):
    compiled = load(tiny_model, saved[0])
    with pytest.raises(ScheduleError, match="made for guidance='batched'"):
        sample(compiled, DDIMSampler(steps=10, guidance_scale=2.0, guidance="separate"), 2)


@pytest.mark.parametrize("edit,message", [
    (lambda d: d["sampler"].update(timesteps=[t + 1 for t in d["sampler"]["timesteps"]]), r"sampler.timesteps\[0\]"),
    (lambda d: d.update(format_version=3), "newer than this gocopt reads"),
    (lambda d: d["sampler"].update(steps="10"), "field sampler.steps"),
    (lambda d: d["mask"]["rows"].__setitem__(3, "101"), "mask row 3 has 3 characters"),
    (lambda d: d["mask"]["rows"].pop(), "9 rows but sampler.steps is 10"),
    (lambda d: d.update(budget=0.3), "above the recorded budget"),
    (lambda d: d["mask"]["rows"].__setitem__(1, "1111"), "does not match the mask's cost"),
    (lambda d: d.update(format="something-else"), "not a gocopt schedule"),
    (lambda d: d["predictor"].update(w=[0.5]), "1 per-site weights"),
    (lambda d: d["predictor"].update(kind="taylor"), "field predictor"),
    (lambda d: d.pop("predictor"), "'predictor' is a required property"),
    (lambda d: d.update(predictor={"kind": "fitted", "history": 2, "terms": [[1, 0, [[1, 1.0]]]]}),
     "fitted for another mask"),
])
def test_bad_files_are_refused_naming_the_field(saved, tmp_path, tiny_model, edit, message):
    path = _edited(tmp_path, saved[0], edit)
    with pytest.raises(ScheduleError, match=message):
        load(tiny_model, path, sampler=SAMPLER)


def test_truncated_and_missing_files(saved, tmp_path):
    truncated = tmp_path / "truncated.json"
    truncated.write_text(saved[0].read_text()[:200])
    with pytest.raises(ScheduleError, match="not valid JSON"):
        load_schedule(truncated)
    with pytest.raises(ScheduleError, match="cannot read"):
        load_schedule(tmp_path / "missing.json")


def test_save_is_atomic(saved, tmp_path, monkeypatch):
    path = tmp_path / "s.json"
    save_schedule(saved[1], path)
    before = path.read_text()

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        save_schedule(saved[1].replace(name="other"), path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]  # no temp file left behind


def test_unsaveable_schedule_is_refused(tmp_path, tiny_model):
    compiled = cache_model(tiny_model)
    bare = named_schedule("interval:2", tuple(compiled.sites["site"]), steps=10)
    with pytest.raises(ScheduleError, match="made for a model and a sampler"):
        save_schedule(bare, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def test_show_summarises_and_plots(saved, tmp_path, capsys):
    from gocopt.cli import main

    assert main(["show", str(saved[0]), "--plot", str(tmp_path / "h.png")]) == 0
    out = capsys.readouterr().out
    assert "cost 0.5000" in out and "ideal speedup 2.00x" in out and "0.00 1.00 0.00" in out
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"


# -- fuzzing: whatever the bytes, the loader raises ScheduleError or returns a valid schedule ----

_json = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True) | st.text(max_size=5),
                     lambda inner: (st.lists(inner, max_size=3)
                                    | st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                     max_leaves=8)


def _paths(document, prefix=()):
    yield prefix
    if isinstance(document, dict):
        for k, v in document.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(document, list):
        for i, v in enumerate(document):
            yield from _paths(v, prefix + (i,))


def _check_loader(document) -> None:
    try:
        from_document(document)
    except ScheduleError:
        pass


def _mutation_test(saved_document):
    paths = list(_paths(saved_document))

    @given(st.sampled_from(paths), _json)
    def mutate(path, value):
        document = copy.deepcopy(saved_document)
        if not path:
            document = value
        else:
            target = document
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        _check_loader(document)

    return mutate


def test_fuzz_mutated_documents_raise_only_schedule_errors(saved):
    """3 × the profile's examples: 300 in CI, 6000 with --hypothesis-profile=long."""
    mutate = _mutation_test(to_document(saved[1]))
    settings(max_examples=3 * settings.default.max_examples, suppress_health_check=list(HealthCheck))(mutate)()


@given(_json)
def test_fuzz_random_documents_raise_only_schedule_errors(document):
    _check_loader(document)
