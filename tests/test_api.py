"""The library's one face (issue #37): configuration objects, one result type, no argument ignored,
gocopt 0.1's keyword arguments still working with a warning that says what to write instead."""

from __future__ import annotations

import doctest
import inspect
import warnings
from dataclasses import replace

import numpy as np
import optuna
import pytest
from quick import QUICK

import gocopt
from gocopt.compiled import CachedModel
from gocopt.errors import ArgumentError, ScheduleError
from gocopt.legacy import LegacyArguments

TINY = replace(QUICK, trials=2, search_samples=4, heldout_samples=4)


# -- the signature ---------------------------------------------------------------------------------


def test_compile_takes_at_most_eight_parameters_and_says_what_it_returns():
    signature = inspect.signature(gocopt.compile)
    assert len(signature.parameters) <= 8, list(signature.parameters)
    assert signature.return_annotation not in ("Any", inspect.Signature.empty)
    assert set(signature.return_annotation.replace(" ", "").split("|")) == {"CachedModel", "CompiledBudgets"}


def test_the_cli_reads_its_defaults_from_the_objects():
    from gocopt.cli import build_parser

    args = build_parser().parse_args(["compile"])
    assert args.heartbeat == gocopt.StudyConfig().heartbeat and args.max_graphs == gocopt.Effort().max_graphs


# -- the objects refuse bad values where they are made ---------------------------------------------


@pytest.mark.parametrize("make,message", [
    (lambda: gocopt.Effort(max_samples=0), "max_samples=0"),
    (lambda: gocopt.Effort(max_samples=float("inf")), "max_samples=inf"),
    (lambda: gocopt.Effort(max_graphs=1), "max_graphs=1"),
    (lambda: gocopt.Effort(seed=-1), "Effort.seed=-1"),
    (lambda: gocopt.Effort(seed=True), "Effort.seed=True"),
    (lambda: gocopt.StudyConfig(name=""), "StudyConfig.name=''"),
    (lambda: gocopt.StudyConfig(heartbeat=0), "StudyConfig.heartbeat=0"),
    (lambda: gocopt.StudyConfig(optuna_sampler="tpe"), "StudyConfig.optuna_sampler='tpe'"),
])
def test_a_bad_field_is_refused_naming_it(make, message):
    with pytest.raises(ScheduleError, match=message.replace("(", r"\(")):
        make()


@pytest.mark.parametrize("field,value,message", [
    ("decode", "vae", "DiTSpec.decode='vae': give a callable"),
    ("evaluator", object(), "DiTSpec.evaluator: object has no features"),
])
def test_a_spec_that_cannot_do_its_job_is_refused_where_it_is_made(field, value, message):
    with pytest.raises(gocopt.GocoptError, match=message):
        gocopt.DiTSpec(**{field: value})


def test_configuration_objects_read_well():
    assert repr(gocopt.StudyConfig(storage="sqlite:///s.db", name="dit")).startswith(
        "StudyConfig(storage='sqlite:///s.db', name='dit', heartbeat=10")
    assert repr(gocopt.DiTSpec(num_classes=10, decode=abs)) == (
        "DiTSpec(num_classes=10, latent_shape=None, decode=<builtin_function_or_method>)")
    assert "max_samples=None, max_graphs=6, seed=0" in repr(gocopt.Effort())


# -- one result type -------------------------------------------------------------------------------


def test_one_budget_gives_a_compiled_model_and_a_list_gives_one_per_budget(tiny_model, tmp_path):
    sampler = gocopt.default_sampler(6)
    one = gocopt.compile(tiny_model, 0.5, sampler=sampler, effort=TINY, progress=False)
    assert isinstance(one, CachedModel)
    several = gocopt.compile(tiny_model, [0.4, 0.7], sampler=sampler, effort=TINY, progress=False)
    assert isinstance(several, gocopt.CompiledBudgets) and several.budgets == (0.4, 0.7)
    paths = several.save(tmp_path, "tiny_ddim6")
    assert [p.name for p in paths] == ["tiny_ddim6_b0.40.json", "tiny_ddim6_b0.70.json"]
    assert gocopt.load(tiny_model, paths[1], sampler=sampler).schedule.mask.tolist() == \
        several.at(0.7).schedule.mask.tolist()


class _CountingSampler(optuna.samplers.RandomSampler):
    proposed = 0

    def sample_independent(self, *args, **kwargs):
        type(self).proposed += 1
        return super().sample_independent(*args, **kwargs)


def test_a_study_passed_in_uses_its_optuna_sampler(tiny_model, tmp_path):
    """The Optuna sampler is the caller's to choose: the planned trials come first (their parameters
    fixed: the surrogate's best, or without one the seed candidates), and the caller's sampler
    proposes every trial after them."""
    from gocopt.search import SEED_CANDIDATES

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = gocopt.StudyConfig(storage=storage, name="s", optuna_sampler=_CountingSampler(seed=0))
    trials = len(SEED_CANDIDATES) + 1
    gocopt.compile(tiny_model, 0.5, sampler=gocopt.default_sampler(6), study=study, progress=False,
                   effort=TINY.with_overrides(trials=trials, surrogate_trials=0))
    assert len(optuna.load_study(study_name="s-b0.5", storage=storage).trials) == trials
    assert _CountingSampler.proposed > 0


def test_joining_needs_a_study_others_can_see(tiny_model):
    with pytest.raises(ArgumentError, match="keeps the study in this process's memory"):
        gocopt.join_study(tiny_model, 0.5, study=gocopt.StudyConfig())


# -- no argument silently ignored ------------------------------------------------------------------


def test_steps_beside_a_sampler_is_refused(tiny_model):
    with pytest.raises(ArgumentError, match="steps=8 and sampler= both given"):
        gocopt.compile(tiny_model, 0.5, steps=8, sampler=gocopt.default_sampler(6))


def test_an_argument_that_never_existed_is_a_type_error(tiny_model):
    with pytest.raises(TypeError, match="unexpected keyword argument 'budgets'"):
        gocopt.compile(tiny_model, budgets=[0.5])
    with pytest.raises(TypeError, match="unexpected keyword argument 'trials'"):
        gocopt.load(tiny_model, "never_read.json", trials=3)


# -- gocopt 0.1's forms, one release more ----------------------------------------------------------


def test_the_old_keyword_arguments_fold_into_the_objects_with_one_warning_naming_each():
    old = {"steps": 6, "trials": 2, "search_samples": 4, "heldout_samples": 4, "max_samples": 80, "seed": 3,
           "max_graphs": None, "storage": "sqlite:///x.db", "study_name": "s", "heartbeat": None,
           "num_classes": 10, "latent_shape": [1, 8, 8]}
    args = LegacyArguments("compile", old, pipeline=False)
    effort = args.effort(QUICK)
    assert effort == replace(QUICK, trials=2, search_samples=4, heldout_samples=4, max_samples=80, seed=3,
                             max_graphs=None)  # an old argument replaces the object's field, as in 0.1
    assert args.study(None) == gocopt.StudyConfig(storage="sqlite:///x.db", name="s", heartbeat=None)
    assert args.spec(None) == gocopt.DiTSpec(num_classes=10, latent_shape=(1, 8, 8))
    assert args.sampler(None).steps == 6
    with pytest.warns(DeprecationWarning) as caught:
        args.warn()
    assert len(caught) == 1
    text = str(caught[0].message)
    for new in ("effort=Effort(trials=..., search_samples=...", "study=StudyConfig(storage=..., name=...",
                "spec=DiTSpec(num_classes=..., latent_shape=...)", "sampler=gocopt.default_sampler(6)"):
        assert new in text, text


def test_an_old_form_compile_gives_the_new_form_schedule(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    with pytest.warns(DeprecationWarning, match="effort=Effort\\(trials=..., search_samples=..., heldout_samples"):
        old = gocopt.compile(tiny_model, 0.5, steps=6, trials=2, search_samples=4, heldout_samples=4, effort=QUICK,
                             progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        new = gocopt.compile(tiny_model, 0.5, sampler=gocopt.default_sampler(6), effort=TINY, progress=False)
    old.save(tmp_path / "old.json")
    new.save(tmp_path / "new.json")
    assert (tmp_path / "old.json").read_text() == (tmp_path / "new.json").read_text()


def test_an_old_form_join_still_joins(tiny_model, tmp_path):
    study = gocopt.StudyConfig(storage=f"sqlite:///{tmp_path / 'study.db'}", name="s", heartbeat=None)
    sampler = gocopt.default_sampler(6)
    gocopt.compile(tiny_model, 0.5, sampler=sampler, effort=TINY, study=study, progress=False)
    with pytest.warns(DeprecationWarning, match="gocopt.join_study\\(model, budget, study=...\\)"):
        assert gocopt.compile(tiny_model, 0.5, sampler=sampler, effort=replace(TINY, trials=3), join=True,
                              storage=study.storage, study_name="s", heartbeat=None, progress=False) is None
    trials = optuna.load_study(study_name="s-b0.5", storage=study.storage).trials
    assert len([t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]) == 3


def test_compile_graphs_has_its_own_name_and_the_old_one_warns(tiny_model):
    compiled = gocopt.cache_model(tiny_model, None)
    with pytest.warns(DeprecationWarning, match="compile_graphs\\(\\)"):
        assert compiled.compile(disable=True) is compiled
    assert compiled.compile_graphs(disable=True) is compiled


# -- every public example runs ---------------------------------------------------------------------


def test_the_public_docstring_examples_run():
    import gocopt.api

    result = doctest.testmod(gocopt.api, extraglobs={"gocopt": gocopt}, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 6, result


# -- what the search scores ------------------------------------------------------------------------


def test_a_decoder_in_the_spec_scores_the_search_and_the_held_out_check_on_decoded_images(tiny_model):
    """``DiTSpec(decode=...)``: every trial and the held-out check compare decoded images. A decoder
    that halves the samples quarters every squared error, so the same schedule scores 6.02 dB more."""
    import torch

    from gocopt.driver import HeldOut
    from gocopt.sampling import initial_noise

    sampler = gocopt.default_sampler(6)
    halve = lambda x: x / 2  # noqa: E731
    compiled = gocopt.compile(tiny_model, 0.5, sampler=sampler, spec=gocopt.DiTSpec(decode=halve), effort=TINY,
                              progress=False)
    provenance = compiled.schedule.provenance
    assert provenance["quality"]["scored_on"] == "decoded images"
    assert provenance["search"]["objective"].endswith("on decoded images")
    labels, noise = torch.arange(4), initial_noise(range(4), (1, 8, 8))
    reuse = gocopt.named_schedule("interval:2", tuple(compiled.sites["site"]), steps=6,
                                  timesteps=tuple(sampler.timesteps))  # plain reuse: far from the uncached samples
    plain = HeldOut(compiled, sampler, labels, noise, num_classes=10).score(reuse)
    decoded = HeldOut(compiled, sampler, labels, noise, num_classes=10, decode=halve).score(reuse)
    assert plain["psnr_vs_uncached"] < 60
    assert decoded["psnr_vs_uncached"] - plain["psnr_vs_uncached"] == pytest.approx(20 * np.log10(2), abs=1e-4)
