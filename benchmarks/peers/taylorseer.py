"""TaylorSeer-style reuse: first-order Taylor extrapolation from the last two computed values.

TaylorSeer (Liu et al., 2025) forecasts a skipped feature from finite differences of the
features it last *computed*: ``F(s) ≈ F(c1) + (s − c1) · (F(c1) − F(c0)) / (c1 − c0)`` for the
last two computed steps ``c0 < c1``. GOC differs: it extrapolates from the two values last
*used* (corrected ones included) with a fitted step size. Before a site has two computed values
it is reused plainly.

It is a reuse rule for gocopt's step plans (``cache_model(model, rule=taylorseer_rule)``): the
mask is static, so every forecast's coefficients are known when the schedule is set.
"""

from __future__ import annotations

from gocopt.schedule.plan import PLAIN, Action, Reuse
from gocopt.schedule.schedule import Schedule


def taylorseer_rule(schedule: Schedule) -> list[list[Action]]:
    """Per (step, site): compute, plain reuse, or ``lerp(F[c1], F[c0], −(s − c1)/(c1 − c0))``."""
    steps, sites = schedule.mask.shape
    actions: list[list[Action]] = []
    computed: list[list[int]] = [[] for _ in range(sites)]  # compute steps so far, per site
    for step in range(steps):
        row: list[Action] = []
        for site in range(sites):
            if schedule.mask[step, site]:
                computed[site].append(step)
                row.append(None)
                continue
            if len(computed[site]) < 2:
                row.append(PLAIN)
                continue
            c0, c1 = computed[site][-2:]
            scale = (step - c1) / (c1 - c0)
            row.append(Reuse(((step - c1, 1.0 + scale), (step - c0, -scale))))
        actions.append(row)
    return actions
