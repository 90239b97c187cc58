"""The command line, end to end, on small inputs."""

from __future__ import annotations

import json
import math

from gocopt.cli import main, paper_correction_steps


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


def test_paper_correction_steps_for_20_steps_are_the_seed_papers():
    assert paper_correction_steps(20) == [3, 5, 7, 9, 11, 13, 15, 19]
