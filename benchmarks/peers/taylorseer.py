"""TaylorSeer-style reuse: first-order Taylor extrapolation from the last two computed values.

TaylorSeer (Liu et al., 2025) forecasts a skipped feature from finite differences of the
features it last *computed*: ``F(s) ≈ F(c1) + (s − c1) · (F(c1) − F(c0)) / (c1 − c0)`` for the
last two computed steps ``c0 < c1``. GOC differs: it extrapolates from the two values last
*used* (corrected ones included) with a fitted step size. Before a site has two computed values
it is reused plainly.
"""

from __future__ import annotations

from gocopt.runtime.runtime import CacheRuntime
from gocopt.runtime.state import RunState, SiteValue


class TaylorSeerRuntime(CacheRuntime):
    """A :class:`CacheRuntime` whose reuse rule is TaylorSeer's first order (the mask decides when)."""

    def __init__(self, *args, **kwargs) -> None:
        self._computed: dict[tuple[str, int], list[tuple[int, SiteValue]]] = {}  # newest first
        super().__init__(*args, **kwargs)

    def reset(self) -> None:
        super().reset()
        self._computed = {}

    def _on_computed(self, index: int, step: int, value: SiteValue) -> None:
        key = (self._context, index)
        history = [] if step == 0 else self._computed.get(key, [])[:1]  # step 0 starts a new run
        self._computed[key] = [(step, value), *history]

    def _reuse(self, state: RunState, index: int, step: int) -> SiteValue:
        history = self._computed.get((self._context, index), [])
        if len(history) < 2:
            return super()._reuse(state, index, step)  # one value: plain reuse (GOC weights are 0 here)
        state.reused += 1
        state.corrected += 1
        (c1, newest), (c0, older) = history
        scale = (step - c1) / (c1 - c0)
        return tuple(new + scale * (new - old) for new, old in zip(newest, older))
