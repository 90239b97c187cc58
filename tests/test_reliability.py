"""Nothing a user passes makes gocopt abort, hang or lie (issue #35): degenerate models, arguments and
files, each with what gocopt does about it (docs/reliability.md lists the same cases)."""

from __future__ import annotations

import ctypes
import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from compile_worker import tiny_effort
from conftest import sample

import gocopt
from gocopt.calibrate import detect_inflections
from gocopt.errors import CalibrationError, GocoptError, NumericalError, ScheduleError, TraceError
from gocopt.models import dit, model_by_name
from gocopt.models.dit import DiTBlock
from gocopt.numerics import least_squares, nonnegative_least_squares
from gocopt.sampling import DDIMSampler
from gocopt.schedule.fit import ridge_solve
from gocopt.search.path import EdgeTable
from gocopt.search.surrogate import fit_step_weights

TESTS = Path(__file__).parent
WORKER = TESTS / "compile_worker.py"


def compile_in_subprocess(*requests: dict, timeout: float = 300) -> tuple[int, list[dict], str]:
    """Each request compiled by ``compile_worker.py`` in one fresh interpreter: its exit status, its
    answers, the tail of its stderr (an abort shows as a signal's negative status and no answer)."""
    lines = "".join(json.dumps(r) + "\n" for r in requests)
    done = subprocess.run([sys.executable, str(WORKER)], input=lines, capture_output=True, text=True,
                          timeout=timeout, cwd=TESTS.parent, env={**os.environ, "PYTHONPATH": str(TESTS)})
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr[-2000:]


# -- 1. native solvers behind guards --------------------------------------------------------------


def test_guarded_solves_settle_what_the_native_solvers_cannot():
    assert nonnegative_least_squares(np.zeros((0, 3)), np.zeros(0), what="t").tolist() == [0.0, 0.0, 0.0]
    assert least_squares(np.zeros((0, 2)), np.zeros(0), what="t").tolist() == [0.0, 0.0]
    assert least_squares(np.zeros((3, 0)), np.zeros(3), what="t").shape == (0,)
    rank_one = np.array([[1.0, 1.0], [1.0, 1.0]])
    assert least_squares(rank_one, np.array([2.0, 2.0]), what="t") == pytest.approx([1.0, 1.0])  # least norm
    assert nonnegative_least_squares(rank_one, np.array([2.0, 2.0]), what="t").sum() == pytest.approx(2.0)
    with pytest.raises(NumericalError, match=r"step weights: the matrix holds nan at \(1, 0\)"):
        nonnegative_least_squares(np.array([[1.0], [np.nan]]), np.ones(2), what="step weights")
    with pytest.raises(NumericalError, match="right-hand side holds inf"):
        least_squares(np.eye(2), np.array([1.0, np.inf]), what="t")
    assert ridge_solve(np.zeros((2, 2)), np.zeros(2), 1e-3).tolist() == [0.0, 0.0]  # a site that never moves


def test_a_span_table_with_no_error_fits_zero_step_weights_without_calling_nnls():
    """The abort of issue #35: every span error 0 left ``nnls`` zero rows."""
    edges = EdgeTable(5, 2, {(0, 2): 0.0, (1, 3): 0.0, (2, 4): 0.0})
    gram = np.ones((2, 5, 5))
    assert edges.changes_nothing
    assert fit_step_weights(edges, gram, 2).tolist() == [0.0] * 5


# -- 2. degenerate models -------------------------------------------------------------------------


@pytest.mark.slow
def test_compile_on_a_zero_output_dit_exits_normally_with_a_valid_schedule():
    """The original DiT's initialisation: the final layer and adaLN start at zero, so the output
    ignores the input and no cache decision changes a sample. Once an abort in ``nnls``."""
    status, answers, stderr = compile_in_subprocess(
        {"name": "DiT-S/2", "config": {"input_size": 8}, "init": "zero", "budget": 0.5, "steps": 10})
    assert status == 0, f"the compile process died ({status}): {stderr}"
    (answer,) = answers
    assert answer["outcome"] == "schedule", answer
    assert answer["cost"] <= answer["budget"] == 0.5
    assert "no reuse span changed the samples" in answer["note"]


class _NaNBelow(torch.nn.Module):
    """A timestep embedding that turns NaN below timestep 500 (``sqrt`` of a negative number)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.inner(t) * torch.sqrt(t.float() - 500)[:, None]


def test_a_model_that_turns_nan_is_named_at_its_first_step_and_site(tiny_model):
    model = model_by_name("DiT-Tiny", seed=0)
    model.t_embedder = _NaNBelow(model.t_embedder)
    sampler = DDIMSampler(steps=10, guidance_scale=4.0)
    first = next(i for i, t in enumerate(sampler.timesteps) if t < 500)
    with pytest.raises(CalibrationError, match=rf"site 'blocks.0.attn' is not finite at step {first} \(timestep "
                                               rf"{sampler.timesteps[first]}\)"):
        gocopt.compile(model, 0.5, sampler=sampler, effort=tiny_effort(), progress=False)


class _NoBlocks(torch.nn.Module):
    """A denoiser called as a DiT is, with no transformer block (and so no residual branch) at all."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x, t, y):
        return self.conv(x)


def test_a_model_without_a_block_list_is_refused_by_name():
    with pytest.raises(TraceError, match="_NoBlocks has no transformer block list"):
        gocopt.compile(_NoBlocks(), 0.5, sampler=gocopt.default_sampler(4), effort=tiny_effort(), progress=False,
                       spec=gocopt.DiTSpec(latent_shape=(1, 8, 8), num_classes=10))


class _GuardedBlock(DiTBlock):
    """A block that validates its input as real model code does: no graph of it can be traced."""

    def forward(self, x, c):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a tensor, got {type(x).__name__}")
        return super().forward(x, c)


def test_a_model_whose_every_site_falls_back_to_a_whole_block_compiles():
    model = model_by_name("DiT-Tiny", seed=0)
    for block in model.blocks:
        block.__class__ = _GuardedBlock
    compiled = gocopt.compile(model, 0.5, sampler=DDIMSampler(steps=6, guidance_scale=4.0), effort=tiny_effort(),
                              progress=False)
    assert set(compiled.sites["granularity"]) == {"block"} and len(compiled.sites) == len(model.blocks)
    assert compiled.schedule.cost(compiled.site_flops) <= 0.5
    assert not compiled.schedule.mask.all()  # it does skip work


# -- 3. degenerate arguments -----------------------------------------------------------------------


@pytest.mark.parametrize("budget,message", [
    (0.0, r"budget=0.0: a budget is the fraction of site FLOPs to compute, in \(0, 1\]"),
    (float("nan"), r"budget=nan"),
    (-0.5, r"budget=-0.5"),
    (1.5, r"budget=1.5"),
    (0.05, r"below 0.1000, the cost of step 0 alone"),  # 10 steps: one site-step of every site is 0.1
    ("0.5", r"budget='0.5': give a fraction"),
    ([], r"budget=\[\]"),
])
def test_impossible_budgets_are_refused_before_any_work(tiny_model, budget, message):
    with pytest.raises(ScheduleError, match=message):
        gocopt.compile(tiny_model, budget, sampler=gocopt.default_sampler(10), effort=tiny_effort(), progress=False)


@pytest.mark.parametrize("kwargs,message", [
    ({"steps": 1}, r"DDIMSampler\(steps=1\): DDIM needs a whole number of at least 2 steps"),
    ({"steps": 2.5}, r"DDIMSampler\(steps=2.5\)"),
    ({"steps": 2000}, r"exceeds the diffusion's 1000 timesteps"),
    ({"max_samples": 5}, r"max_samples=5 cannot pay for this compile.*use max_samples >= \d+"),
    ({"max_samples": float("nan")}, r"max_samples=nan: the compile's cap is a positive number"),
    ({"max_samples": -1}, r"max_samples=-1"),
    ({"heldout_samples": 0}, r"Effort.heldout_samples=0: must be at least 1"),
    ({"max_graphs": 1}, r"max_graphs=1: a schedule needs at least 2 step graphs"),
])
def test_impossible_arguments_are_refused_naming_the_argument(tiny_model, kwargs, message):
    fields = dict(kwargs)
    steps = fields.pop("steps", 10)
    with pytest.raises(ScheduleError, match=message):  # where the object is made, or before any work
        gocopt.compile(tiny_model, 0.5, sampler=gocopt.default_sampler(steps), effort=gocopt.Effort(**fields),
                       progress=False)


def test_guidance_on_a_model_without_a_null_class_is_refused_with_the_fix():
    """Found by the compile fuzzer: a DiT built with class_dropout_prob=0 has no null-class row, and
    guided sampling failed with an IndexError inside the first run."""
    model = dit("DiT-Tiny", class_dropout_prob=0.0).eval()
    with pytest.raises(GocoptError, match=r"has no null class .* guidance='none'"):
        gocopt.compile(model, 0.5, sampler=gocopt.default_sampler(4), effort=tiny_effort(), progress=False)
    unguided = gocopt.compile(model, 0.5, sampler=DDIMSampler(steps=4, guidance="none"), effort=tiny_effort(),
                              progress=False)
    assert unguided.schedule.cost(unguided.site_flops) <= 0.5


def test_budget_one_computes_everything_and_two_steps_still_compile(tiny_model):
    everything = gocopt.compile(tiny_model, 1.0, sampler=gocopt.default_sampler(4), effort=tiny_effort(),
                                progress=False)
    assert everything.schedule.mask.all()
    two = gocopt.compile(tiny_model, 0.5, sampler=gocopt.default_sampler(2), effort=tiny_effort(), progress=False)
    assert two.schedule.mask.tolist() == [[True] * len(two.sites), [False] * len(two.sites)]


def test_inflections_of_a_run_too_short_to_turn_are_none():
    """Two steps have no direction cosine: once a pandas 'truth value of a Series is ambiguous'."""
    stats = pd.DataFrame({"step": [0, 0, 1, 1], "site": [0, 1, 0, 1], "direction_cos": [math.nan] * 4})
    assert detect_inflections(stats) == []


class _RepeatingDDIM(DDIMSampler):
    """A sampler that calls the model twice at some timesteps, as Heun-type samplers do."""

    @property
    def _all_timesteps(self) -> list[int]:
        return [999, 999, 500, 500, 0, 0][: self.steps]


def test_a_sampler_whose_timesteps_repeat_gets_a_valid_schedule(tiny_model, tmp_path):
    """Steps are counted, not looked up by timestep, so repeated timesteps are no ambiguity."""
    sampler = _RepeatingDDIM(steps=6, guidance_scale=4.0)
    compiled = gocopt.compile(tiny_model, 0.5, sampler=sampler, effort=tiny_effort(), progress=False)
    assert compiled.schedule.timesteps == (999.0, 999.0, 500.0, 500.0, 0.0, 0.0)
    compiled.save(tmp_path / "s.json")
    loaded = gocopt.load(tiny_model, tmp_path / "s.json", sampler=sampler)
    with torch.no_grad():
        assert torch.equal(sample(loaded, sampler, 2), sample(compiled, sampler, 2))


# -- 4. schedule files with numbers no forecast has ------------------------------------------------

COMMITTED = TESTS.parent / "schedules" / "reference_ddim20_b0.50.json"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_coefficient_is_refused_naming_the_field(tmp_path, value):
    document = json.loads(COMMITTED.read_text())
    document["predictor"]["terms"][3][2][0][1] = value
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(document))  # json writes NaN / Infinity, and reads them back
    with pytest.raises(ScheduleError, match=r"field predictor.terms\[3\]\[2\]\[0\]\[1\]: .* is not a finite number"):
        gocopt.schedule.io.load_schedule(path)


@pytest.mark.parametrize("edit,message", [
    (lambda d: d["predictor"]["terms"][0][2][0].__setitem__(1, 1e30),
     r"field predictor: fitted predictor at step \d+, site \d+: coefficient 1e\+30 is out of range"),
    (lambda d: d.update(predictor={"kind": "goc", "w": 2e3, "correction_steps": [2, 3]}),
     r"field predictor: GOC weight w: coefficient 2000.0 is out of range"),
    (lambda d: d["sampler"].update(guidance_scale=math.nan), r"field sampler.guidance_scale: nan"),
])
def test_an_absurd_coefficient_is_refused_naming_the_field(tmp_path, edit, message):
    document = json.loads(COMMITTED.read_text())
    edit(document)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ScheduleError, match=message):
        gocopt.schedule.io.load_schedule(path)


# -- 5. concurrent runs: one arithmetic in every thread --------------------------------------------


def _openmp_max_threads() -> ctypes.CDLL | None:
    """torch's own OpenMP runtime's ``omp_get_max_threads`` (other packages load libgomps of their own,
    scikit-learn's among them, whose settings torch never touches), or None."""
    for line in Path("/proc/self/maps").read_text().splitlines() if Path("/proc/self/maps").exists() else []:
        path = line.split()[-1]
        if "libgomp" in path and f"{os.sep}torch{os.sep}lib{os.sep}" in path:
            return ctypes.CDLL(path).omp_get_max_threads
    return None


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: one intra-op thread is all a thread can have")
def test_a_worker_thread_calls_the_model_with_the_process_intra_op_threads(tiny_model):
    """Python threads started after ``torch.set_num_threads(n)`` keep OpenMP's default thread count
    though torch reports ``n``, until torch first enters a parallel region there: a kernel run before
    that splits differently, and concurrent runs once differed from the same runs alone by 4.9e-6
    (issue #35). The invariant a loaded model keeps: its first layer runs at the process's count."""
    omp_max_threads = _openmp_max_threads()
    if omp_max_threads is None:
        pytest.skip("this torch build does not use GNU OpenMP")
    compiled = gocopt.compile(tiny_model, 0.5, sampler=gocopt.default_sampler(4), effort=tiny_effort(),
                              progress=False)
    seen: dict[str, int] = {}

    def first_layer(module, args) -> None:  # the model's first layer: no torch kernel has run in the call yet
        seen.setdefault("first layer", omp_max_threads())

    def in_a_thread() -> None:
        seen["before"] = omp_max_threads()
        hook = tiny_model.x_embedder.proj.register_forward_pre_hook(first_layer)
        try:
            with torch.no_grad():
                sample(compiled, DDIMSampler(steps=4, guidance_scale=4.0), 1)
        finally:
            hook.remove()

    probe = threading.Thread(target=lambda: seen.update(default=omp_max_threads()))
    probe.start()
    probe.join()
    wanted = 1 if seen["default"] != 1 else 2  # what a new thread does not get by itself
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(wanted)
        thread = threading.Thread(target=in_a_thread)
        thread.start()
        thread.join()
    finally:
        torch.set_num_threads(before)
    assert seen["before"] != wanted  # what the runtime is there to correct
    assert seen["first layer"] == wanted


# -- 6. no silent catch-all ------------------------------------------------------------------------


def test_every_broad_except_reraises_or_says_why():
    """An ``except Exception`` (or ``BaseException``, or bare) in gocopt/ either raises again or is
    justified in a comment on its line (``# noqa: BLE001 - <why>``)."""
    import ast

    unjustified = []
    for path in sorted((TESTS.parent / "gocopt").rglob("*.py")):
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.ExceptHandler):
                continue
            names = [] if node.type is None else [getattr(t, "id", None) for t in (
                node.type.elts if isinstance(node.type, ast.Tuple) else [node.type])]
            if node.type is not None and not {"Exception", "BaseException"} & set(names):
                continue
            reraises = any(isinstance(n, ast.Raise) for n in ast.walk(ast.Module(body=node.body, type_ignores=[])))
            line = lines[node.lineno - 1]
            justified = "noqa: BLE001 - " in line and len(line.split("noqa: BLE001 - ", 1)[1].strip()) > 5
            if not (reraises or justified):
                unjustified.append(f"{path.relative_to(TESTS.parent)}:{node.lineno}: {line.strip()}")
    assert not unjustified, "broad excepts that neither re-raise nor say why:\n" + "\n".join(unjustified)
