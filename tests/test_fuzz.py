"""Property-based tests where the input space is wide (issue #35).

* Random small DiTs (depth, width, heads, patch size, channels, classes, guidance's null class,
  learned variance, initialisation) × random budgets and step counts → ``gocopt.compile`` returns a
  schedule whose cost is within its budget, or raises a gocopt error; never another exception type,
  never an abort. Each compile runs in a worker process (``compile_worker.py``), so an abort is seen
  as a dead process, not as the death of the test run.
* Random damage to a committed schedule file (truncation, wrong types, non-finite and absurd numbers,
  masks of the wrong length, missing keys) → ``load_schedule`` raises a ScheduleError naming where
  the damage is, or returns a schedule that samples finite images on the model it was made for.

Example counts come from the Hypothesis profile: ``ci`` (the default, bounded for CI time) or
``--hypothesis-profile=long`` for a longer local run; ``--hypothesis-show-statistics`` (on by default
in pyproject.toml) prints how many examples each test ran.
"""

from __future__ import annotations

import copy
import json
import math
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, Phase, assume, given, note, settings
from hypothesis import strategies as st

import gocopt
from gocopt.errors import ScheduleError
from gocopt.sampling import DDIMSampler, initial_noise
from gocopt.schedule.fingerprint import check_fingerprint, model_fingerprint
from gocopt.schedule.io import from_document, load_schedule

TESTS = Path(__file__).parent
COMPILES = max(3, settings.default.max_examples // 10)  # ci: 10 compiles; long: 200
DAMAGES = max(20, settings.default.max_examples // 2)  # ci: 50 damaged files, each sampled if it loads; long: 1000
ANSWER_SECONDS = 180  # a tiny model's compile takes seconds: past this, it hangs


class CompileWorker:
    """One ``compile_worker.py`` process, asked one compile at a time; restarted after it dies."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None

    def ask(self, request: dict) -> dict:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, str(TESTS / "compile_worker.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, cwd=TESTS.parent, env={**os.environ, "PYTHONPATH": str(TESTS)})
        process = self._process
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        process.stdin.write(json.dumps({**request, "budget": repr(request["budget"])}) + "\n")
        process.stdin.flush()
        ready, _, _ = select.select([process.stdout], [], [], ANSWER_SECONDS)
        if not ready:
            process.kill()
            pytest.fail(f"compile hung for {ANSWER_SECONDS} s on {request}")
        line = process.stdout.readline()
        if not line:  # the interpreter died: an abort, a segfault, an out-of-memory kill
            status = process.wait(timeout=30)
            pytest.fail(f"the compile process died (status {status}) on {request}: {process.stderr.read()[-2000:]}")
        return json.loads(line)

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            self._process.wait(timeout=60)


@pytest.fixture(scope="module")
def worker():
    worker = CompileWorker()
    yield worker
    worker.close()


@st.composite
def dit_configs(draw) -> dict:
    heads = draw(st.sampled_from([1, 2, 4]))
    head_dim = draw(st.sampled_from([4, 8, 16]))
    patch = draw(st.sampled_from([1, 2, 4]))
    return {"depth": draw(st.integers(1, 3)), "hidden_size": heads * head_dim, "num_heads": heads,
            "patch_size": patch, "input_size": patch * draw(st.integers(1, 4)), "in_channels": draw(st.integers(1, 3)),
            "num_classes": draw(st.integers(1, 12)), "class_dropout_prob": draw(st.sampled_from([0.0, 0.1])),
            "learn_sigma": draw(st.booleans()), "mlp_ratio": draw(st.sampled_from([1.0, 4.0]))}


budgets = st.one_of(st.floats(min_value=0.0, max_value=1.0),
                    st.sampled_from([0.0, 1.0, -0.25, 1.5, math.nan, math.inf]))


@pytest.mark.slow
@given(config=dit_configs(), init=st.sampled_from(["zero", "random"]), budget=budgets, steps=st.integers(1, 6),
       max_graphs=st.sampled_from([1, 2, 6]))
@settings(max_examples=COMPILES, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=(Phase.explicit, Phase.reuse, Phase.generate))  # no shrinking: a compile a try is too slow
def test_compile_returns_a_schedule_within_budget_or_a_gocopt_error(worker, config, init, budget, steps, max_graphs):
    answer = worker.ask({"config": config, "init": init, "budget": budget, "steps": steps, "max_graphs": max_graphs})
    note(str(answer))
    if answer["outcome"] == "error":
        assert answer["gocopt"], f"{answer['type']} is not a gocopt error:\n{answer['traceback']}"
        feasible = steps >= 2 and 1 / steps <= budget <= 1 and config["class_dropout_prob"] > 0 and max_graphs >= 2
        assert not feasible, f"a schedule exists at budget {budget} with {steps} steps, but: {answer['message']}"
    else:
        assert answer["cost"] <= budget + 1e-9


# -- damaged schedule files ------------------------------------------------------------------------

COMMITTED = TESTS.parent / "schedules" / "reference_ddim20_b0.50.json"
DOCUMENT = json.loads(COMMITTED.read_text())
WRONG_VALUES = st.sampled_from([math.nan, math.inf, -math.inf, 1e30, -1e30, None, True, "0.5", [], {}, -1, 10**9])
SECTION_WORDS = {  # what a message may call the section a damage was made in
    "model": ("model", "sites", "fingerprint"), "mask": ("mask",), "sampler": ("sampler",),
    "predictor": ("predictor",), "budget": ("budget",), "cost": ("cost",), "format": ("format",),
    "format_version": ("format",),
}


def _leaves(document, prefix=()):
    if isinstance(document, dict):
        for key, value in document.items():
            yield from _leaves(value, prefix + (key,))
    elif isinstance(document, list) and document:
        for index, value in enumerate(document):
            yield from _leaves(value, prefix + (index,))
    else:
        yield prefix


def _containers(document, prefix=()):
    if isinstance(document, dict):
        yield prefix
        for key, value in document.items():
            yield from _containers(value, prefix + (key,))


LEAVES = [p for p in _leaves(DOCUMENT) if p[0] not in ("quality", "search", "calibration", "work")]
KEYED = [p for p in _containers(DOCUMENT) if not p or p[0] not in ("quality", "search", "calibration", "work")]


def _at(document, path):
    for key in path:
        document = document[key]
    return document


@st.composite
def damaged(draw) -> tuple[str, str, tuple]:
    """(file text, kind of damage, path it was made at)."""
    document = copy.deepcopy(DOCUMENT)
    kind = draw(st.sampled_from(["truncate", "value", "drop key", "mask row"]))
    if kind == "truncate":
        text = json.dumps(document, indent=2)
        return text[: draw(st.integers(0, len(text) - 1))], kind, ()
    if kind == "value":
        path = draw(st.sampled_from(LEAVES))
        _at(document, path[:-1])[path[-1]] = draw(WRONG_VALUES)
    elif kind == "drop key":
        parent = draw(st.sampled_from([p for p in KEYED if _at(document, p)]))
        key = draw(st.sampled_from(sorted(_at(document, parent))))
        del _at(document, parent)[key]
        path = parent + (key,)
    else:
        rows = document["mask"]["rows"]
        row = draw(st.integers(0, len(rows) - 1))
        rows[row] = rows[row][: draw(st.integers(0, len(rows[row]) - 1))] if draw(st.booleans()) else rows[row] + "1"
        path = ("mask", "rows", row)
    return json.dumps(document, indent=2), kind, path


@pytest.fixture(scope="module")
def committed_model(reference_model):
    """The committed schedule loaded on its model, and that model's own fingerprint."""
    compiled = gocopt.load(reference_model, COMMITTED)
    return compiled, model_fingerprint(reference_model, compiled.sites)


@pytest.mark.slow
@given(damage=damaged())
@settings(max_examples=DAMAGES, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_damaged_schedule_file_is_refused_by_field_or_samples_finite_images(committed_model, tmp_path_factory,
                                                                              damage):
    (compiled, fingerprint), (text, kind, path) = committed_model, damage
    note(f"{kind} at {path}")
    file = tmp_path_factory.mktemp("damaged") / "schedule.json"
    file.write_text(text)
    try:
        schedule = load_schedule(file)
        check_fingerprint(schedule.fingerprint or {}, fingerprint)
        compiled.set_schedule(schedule, log=False)
    except ScheduleError as e:
        message = str(e)
        assert str(file) in message or kind != "truncate", message
        if kind != "truncate":
            words = SECTION_WORDS.get(str(path[0]), (str(path[0]),))
            assert any(w in message for w in words), f"{kind} at {path}: the message names none of {words}: {message}"
        return
    finally:
        compiled.reset()
    assume(kind != "truncate")  # a truncation that still loads cut nothing that matters
    sampler = DDIMSampler(steps=schedule.steps, guidance_scale=4.0)
    with torch.no_grad():
        images = sampler.sample(compiled, torch.arange(2), initial_noise([0, 1], (1, 8, 8)), num_classes=10)
    assert bool(torch.isfinite(images).all()), f"{kind} at {path} loads and samples non-finite images"


def test_the_loader_names_the_damaged_field_for_every_wrong_value_in_the_predictor():
    """A deterministic slice of the property above, in the quick suite: each wrong value in a fitted
    coefficient is refused with the field's path."""
    for value in (math.nan, math.inf, 1e30, "0.5", None):
        document = copy.deepcopy(DOCUMENT)
        document["predictor"]["terms"][0][2][0][1] = value
        with pytest.raises(ScheduleError, match=r"field predictor"):
            from_document(document)
