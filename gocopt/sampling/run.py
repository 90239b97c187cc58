"""A sampling run, announced by the sampler to whatever cache the model it calls holds.

A static cache schedule is made for one sequence of timesteps. Checking every model call's
timestep against it means reading the timestep tensor back to the host — on a GPU a device→host
synchronisation per call, which stalls the launch queue. The sampler already knows its timesteps
on the host, so it says so once per run::

    with sampling_run(sampler.timesteps):
        for t in sampler.timesteps:
            model(x, t_tensor, y)

A cached model called inside the block compares the announced timesteps with its schedule's once,
on the host, and then trusts its step counter: zero synchronisations per call. A new block is a
new run (an interrupted run never leaks into the next one). The announcement lives in a context
variable, so it reaches the model through any wrapper (``torch.compile``, a lambda, a pipeline).
Callers that announce nothing are checked on the device instead (see :mod:`gocopt.runtime`).
Each run owns its cached values: two threads or asyncio tasks sampling from one loaded model at
the same time, each inside its own block, get exactly the images each would get alone.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, eq=False)
class SamplingRun:
    """One announced run. Identity is the run: two announcements are two runs.

    Args:
        timesteps: the model timestep of every step, first to last, as the model receives them;
            ``None`` announces a new run whose timesteps the caller cannot state on the host
            (the cache then checks them on the device).
    """

    timesteps: tuple[float, ...] | None = None
    _on_close: list[Callable[[SamplingRun], None]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.timesteps is not None:
            object.__setattr__(self, "timesteps", tuple(float(t) for t in self.timesteps))

    def when_closed(self, callback: Callable[[SamplingRun], None]) -> None:
        """Call ``callback(run)`` when the run ends (its block exits): caches drop their state for it."""
        self._on_close.append(callback)

    def close(self) -> None:
        callbacks, self._on_close[:] = list(self._on_close), []
        for callback in callbacks:
            callback(self)

    @property
    def steps(self) -> int | None:
        return None if self.timesteps is None else len(self.timesteps)


_CURRENT: contextvars.ContextVar[SamplingRun | None] = contextvars.ContextVar("gocopt_sampling_run", default=None)


@contextlib.contextmanager
def sampling_run(timesteps: Sequence[float] | None = None) -> Iterator[SamplingRun]:
    """Announce a run with these model timesteps to every cached model called inside the block."""
    run = SamplingRun(None if timesteps is None else tuple(timesteps))
    token = _CURRENT.set(run)
    try:
        yield run
    finally:
        _CURRENT.reset(token)
        run.close()  # every cache drops this run's values now, also when an error is still held


def current_run() -> SamplingRun | None:
    """The run announced around the current call, if any."""
    return _CURRENT.get()


__all__ = ["SamplingRun", "current_run", "sampling_run"]
