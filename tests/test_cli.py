"""The command line, end to end, on small inputs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from gocopt.cli import main
from gocopt.schedule.named import interval_mask, paper_goc


def test_eval_prints_one_json_object_with_quality_and_cost(capsys):
    assert main(["eval", "--n", "30", "--steps", "6", "--json", "--schedule", "interval:2",
                 "--correction", "goc", "--goc-w", "0.5"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("fid", "is", "class_accuracy", "psnr_vs_uncached", "ssim_vs_uncached", "fd_vs_uncached", "seconds"):
        assert math.isfinite(result[key]), key
    assert result["cost"] == 0.5 and result["schedule"] == "interval:2"
    assert 10 < result["psnr_vs_uncached"] < 100


def test_uncached_eval_reports_the_model_alone(capsys):
    assert main(["eval", "--n", "20", "--steps", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["cost"] == 1.0 and "psnr_vs_uncached" not in result


def test_sample_writes_a_grid(tmp_path):
    out = tmp_path / "grid.png"
    assert main(["sample", "--n", "10", "--steps", "4", "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_sites_lists_the_graphs_sites(capsys):
    assert main(["sites", "--model", "DiT-Tiny"]) == 0
    out = capsys.readouterr().out
    assert "blocks.1.mlp" in out and "4 sites, traced whole" in out


def test_bad_schedule_is_a_clear_error_not_a_traceback(capsys):
    assert main(["eval", "--n", "4", "--steps", "4", "--schedule", "fora:2"]) == 2
    assert "unknown schedule 'fora:2'" in capsys.readouterr().err


def test_paper_settings_correct_the_seed_papers_steps_on_its_schedule():
    """One definition of the paper's settings (gocopt.schedule.named.paper_goc): on the interval-2
    schedule of 20 steps the corrected reused steps are GOC.md's {3, 5, …, 15, 19}."""
    goc = paper_goc(20)
    reused = {s for s, computed in enumerate(interval_mask(20, 1, 2)[:, 0]) if not computed}
    assert sorted(reused & goc.correction_steps) == [3, 5, 7, 9, 11, 13, 15, 19] and goc.w == 1.2


BAD_INVOCATIONS = [
    (["compile", "--steps", "1"], ["--steps 1", "at least 2"]),
    (["compile", "--model", "DiT-Q/9"], ["--model DiT-Q/9", "unknown model", "DiT-XL/2"]),
    (["compile", "--budget", "1.5"], ["budget 1.5", "(0, 1]"]),
    (["compile", "--budgets", "0.5,half"], ["--budgets 0.5,half", "comma-separated numbers"]),
    (["compile", "--storage", "sqlite:////nonexistent/dir/x.db"], ["/nonexistent/dir", "does not exist"]),
    (["compile", "--storage", "postgresql://user:secret@127.0.0.1:1/db"], ["cannot connect", "***", "server is up"]),
    (["eval", "--schedule", "garbage"], ["unknown schedule 'garbage'", "interval:K"]),
    (["eval", "--schedule", "interval:0"], ["interval:K (K >= 1)"]),
    (["eval", "--schedule", "missing.json"], ["no such schedule file"]),
    (["sample", "--n", "0"], ["--n 0", "at least 1"]),
    (["show", "nowhere.json"], ["nowhere.json", "no such schedule file"]),
    (["sites", "--device", "tpu9"], ["--device tpu9"]),
]
if not torch.cuda.is_available():
    BAD_INVOCATIONS.append((["sites", "--model", "DiT-XL/2", "--device", "cuda"], ["no CUDA device", "--device cpu"]))


@pytest.mark.parametrize("argv,says", BAD_INVOCATIONS, ids=[" ".join(a) for a, _ in BAD_INVOCATIONS])
def test_bad_invocations_get_one_line_naming_problem_and_fix(argv, says, capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    for name in ("gocopt.evaluate.sample_batches", "gocopt.api.compile_model", "gocopt.trace.sites.find_sites",
                 "gocopt.models.model_by_name"):
        monkeypatch.setattr(name, no_work)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("gocopt: error: ") and "Traceback" not in err
    for text in says:
        assert text in err, (text, err)
    assert "secret" not in err  # a password in a storage URL is never printed
