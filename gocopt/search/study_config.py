"""Where a compile's search lives, as one frozen object: the storage, the study's name, the heartbeat.

Optuna keeps a study's storage and sampler apart from running it (``create_study(storage=...,
sampler=...)``, then ``optimize``); gocopt does the same. A :class:`StudyConfig` is all that
changes between a compile in memory and one shared by many workers through a database::

    study = gocopt.StudyConfig(storage="postgresql://…/gocopt", name="dit-xl-ddim50")
    gocopt.compile(model, 0.5, study=study)        # the leader: measures, searches, scores
    gocopt.join_study(model, 0.5, study=study)     # any number of workers: trials only

The defaults keep everything in memory: one process, nothing written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from gocopt.errors import ScheduleError
from gocopt.search.storage import DEFAULT_HEARTBEAT


@dataclass(frozen=True)
class StudyConfig:
    """Where the search's Optuna study lives, and how it samples.

    Attributes:
        storage: ``None`` (in memory), an Optuna storage object, an RDB URL (``sqlite:///…``,
            ``postgresql://…``) or a journal file path (``*.log``, ``*.journal``). Anything else
            than memory lets workers share the study and a killed compile resume it.
        name: the study's name in the storage (one study per budget is made under it); ``None``:
            named after the model class, the diffusion sampler and its step count.
        heartbeat: seconds between a running trial's heartbeats in a database storage; a worker
            silent for three is taken for dead and its trial re-run. ``None``: no heartbeat.
        optuna_sampler: the Optuna sampler that proposes every trial after the planned ones (the
            surrogate's best, which by default fill all the trials the cap pays for; or, with
            ``Effort(surrogate_trials=0)``, the seed candidates). ``None``: TPE, seeded by
            ``Effort.seed`` and varied per worker so workers do not propose alike. Named apart from
            the *diffusion* sampler that ``gocopt.compile`` takes.
    """

    storage: Any = None
    name: str | None = None
    heartbeat: int | None = DEFAULT_HEARTBEAT
    optuna_sampler: optuna.samplers.BaseSampler | None = None

    def __post_init__(self) -> None:
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise ScheduleError(f"StudyConfig.name={self.name!r}: give a non-empty string, or None")
        if self.heartbeat is not None and (isinstance(self.heartbeat, bool) or not isinstance(self.heartbeat, int)
                                           or self.heartbeat < 1):
            raise ScheduleError(f"StudyConfig.heartbeat={self.heartbeat!r}: give whole seconds >= 1, or None")
        if self.optuna_sampler is not None and not isinstance(self.optuna_sampler, optuna.samplers.BaseSampler):
            raise ScheduleError(f"StudyConfig.optuna_sampler={self.optuna_sampler!r}: give an Optuna sampler "
                                "(optuna.samplers.TPESampler(...), ...) or None")

    @property
    def shared(self) -> bool:
        """Whether other processes can see the study (any storage but memory)."""
        return self.storage is not None


__all__ = ["StudyConfig"]
