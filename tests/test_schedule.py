"""The schedule as data: validation, named baselines and their costs, step plans."""

from __future__ import annotations

import numpy as np
import pytest

from gocopt.compiled import cache_model
from gocopt.errors import ScheduleError
from gocopt.schedule import GOCConfig, Schedule, named_schedule
from gocopt.schedule.plan import PLAIN, SiteHistory, plan_run
from gocopt.schedule.predictors import Fitted, Taylor


@pytest.mark.parametrize("build,message", [
    (lambda: Schedule(np.array([[True, False]]), ("a", "b")), "step 0 must compute every site"),
    (lambda: Schedule(np.ones((3, 2), bool), ("a",)), "2 site columns but 1 site ids"),
    (lambda: Schedule(np.ones((3, 1), bool), ("a",), (1, 2)), "3 rows but the sampler has 2 steps"),
    (lambda: Schedule(np.ones((3, 1), bool), ("a",), None, GOCConfig((0.1, 0.2))), "2 per-site weights"),
    (lambda: Schedule(np.full((2, 1), 2), ("a",)), "only booleans"),
])
def test_bad_schedules_are_refused(build, message):
    with pytest.raises(ScheduleError, match=message):
        build()


def test_named_schedules_and_their_costs(tiny_model):
    compiled_tiny = cache_model(tiny_model)
    ids, flops = tuple(compiled_tiny.sites["site"]), compiled_tiny.site_flops
    blocks = list(compiled_tiny.sites["block"])
    assert named_schedule("none", ids, steps=20).cost(flops) == 1.0
    assert named_schedule("interval:2", ids, steps=20).cost(flops) == 0.5
    assert named_schedule("interval:3", ids, steps=21).cost(flops) == pytest.approx(1 / 3)
    for budget in (0.25, 0.5, 0.75):
        l2c = named_schedule(f"l2c:{budget}", ids, steps=20, site_flops=flops, site_blocks=blocks)
        assert budget - max(flops) / (20 * sum(flops)) < l2c.cost(flops) <= budget
        reuse = l2c.reuse_fraction_per_step()
        assert reuse[1:10].mean() > reuse[10:].mean()  # concentrated in the early, noisy steps
    with pytest.raises(ScheduleError, match="unknown schedule"):
        named_schedule("fora", ids, steps=20)


def test_interval_two_with_goc_needs_three_step_graphs():
    """Step 0 (fills the queues), compute, reuse: the plain first reuse and the corrected ones share
    a shape, their coefficients are data. 3 graphs for 20 steps, whatever the model."""
    mask = np.ones((20, 3), bool)
    mask[1::2] = False
    plan = plan_run(Schedule(mask, ("a", "b", "c"), None, GOCConfig.at_steps(0.8, range(2, 20))))
    assert len(plan.plans) == 3
    assert plan.plan_of_step == (0, 1) + (2, 1) * 9
    assert plan.at(1).history == (SiteHistory(slots=2, used=True, plain=False, affine=True),) * 3
    assert plan.coefficients[1] == ((1.0, 0.0),) * 3  # one value so far: plain reuse, as data
    assert plan.coefficients[3] == ((1.8, -0.8),) * 3
    assert plan.at(0).fills == (True,) * 3 and plan.at(2).fills == (False,) * 3


def test_a_history_holds_only_what_the_predictor_reads():
    mask = np.array([[True], [False], [True], [False]])
    plain = plan_run(Schedule(mask, ("s",)))
    assert plain.at(1).history == (SiteHistory(slots=1, used=False, plain=True, affine=True),)
    assert plain.coefficients[1] == ((),)  # plain reuse: no arithmetic, no coefficients
    corrected = plan_run(Schedule(mask, ("s",), None, GOCConfig.at_steps(1.0, {3})))
    # step 3 reads the values used at steps 2 and 1 (GOC's queue); step 1's is step 0's (plain
    # reuse), so two slots of computed values serve
    assert corrected.at(3).history == (SiteHistory(slots=2, used=False, plain=False, affine=True),)
    assert corrected.coefficients[3] == ((2.0, -1.0),)
    taylor = plan_run(Schedule(np.array([[True], [True], [False], [True], [False]]), ("s",), None, Taylor(2)))
    # the polynomial through computed steps 0, 1, 3 at step 4: weights 1, −2, 2; slots newest first
    assert taylor.at(4).history == (SiteHistory(slots=3, used=False, plain=False, affine=True),)
    assert taylor.coefficients[4] == (pytest.approx((2.0, -2.0, 1.0)),)


def test_a_predictor_reading_before_the_run_is_refused():
    mask = np.array([[True], [False]])
    too_old = Fitted(2, {(1, 0): ((2, 1.0),)})
    with pytest.raises(ScheduleError, match="fitted for another mask"):
        Schedule(mask, ("s",), None, too_old)
    assert GOCConfig().actions(mask) == [[None], [PLAIN]]
