"""Calibration statistics and inflection points, on a site whose values are known exactly."""

from __future__ import annotations

import pytest
import torch
from conftest import OneSiteModel, ScriptedSampler

from gocopt.calibrate import calibrate, detect_inflections
from gocopt.compiled import cache_model
from gocopt.sampling import Sampler


@pytest.fixture
def calibration():
    compiled = cache_model(OneSiteModel(), None, (torch.zeros(1, 1, dtype=torch.float64), torch.tensor([3])))
    sampler = ScriptedSampler([1.0, 2.0, 4.0, 3.0], (3, 2, 1, 0))  # the site's value at each step
    assert isinstance(sampler, Sampler)
    return calibrate(compiled, sampler, torch.zeros(1), torch.zeros(1), num_classes=1)


def test_statistics_are_the_hand_computed_ones(calibration):
    stats = calibration.stats.set_index("step")
    assert list(calibration.stats.columns[:3]) == ["step", "timestep", "site"]
    assert list(stats["timestep"]) == [3, 2, 1, 0]
    # rel_change = |F[s] - F[s-1]| / |F[s]|: 1/2, 2/4, 1/3 — undefined at step 0
    assert stats["rel_change"].isna().loc[0]
    assert stats["rel_change"].loc[1:].tolist() == pytest.approx([0.5, 0.5, 1 / 3])
    # direction cosine of consecutive differences (+1, +2, -1): undefined at steps 0 and 1, then +1, -1
    assert stats["direction_cos"].isna().loc[[0, 1]].all()
    assert stats["direction_cos"].loc[2:].tolist() == pytest.approx([1.0, -1.0])
    # GOC's one-step error at w = 0.8: |d[s] - 0.8·d[s-1]| / |F[s]| = |2 - 0.8| / 4, |-1 - 1.6| / 3
    assert stats["err_goc_w0.8"].loc[2:].tolist() == pytest.approx([0.3, 2.6 / 3])


def test_the_turn_back_is_the_detected_inflection(calibration):
    assert detect_inflections(calibration.stats) == [3]
    assert calibration.matrix("rel_change").shape == (4, 1)
