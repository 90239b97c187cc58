"""Per-run cache state, kept out of the modules: one ``RunState`` per call context."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from gocopt.sampling.run import SamplingRun

SiteValue = tuple[torch.Tensor, ...]  # a site's outputs (two for a joint attention)


@dataclass
class RunState:
    """Where one sampling run stands in one context (``"cond"``, ``"uncond"`` or the default).

    Attributes:
        step: the step the next call runs.
        kept: per graph (``""`` for a whole-model trace, else the block's path), the flat tuple of
            values the next step's plan reads (its ``keep_in``, in order).
        run: the announced run this state belongs to (``None``: the caller announced nothing).
        timestep_ok: for unannounced runs, a device-side flag: every call's timestep matched so far.
        timesteps_seen: for unannounced runs, the timestep each call received (for the message).
    """

    step: int = 0
    kept: dict[str, tuple[torch.Tensor, ...]] = field(default_factory=dict, repr=False)
    run: SamplingRun | None = None
    computed: int = 0
    reused: int = 0
    corrected: int = 0
    timestep_ok: torch.Tensor | None = field(default=None, repr=False)
    timesteps_seen: torch.Tensor | None = field(default=None, repr=False)

    def reset(self, run: SamplingRun | None = None) -> None:
        self.step = 0
        self.kept = {}
        self.run = run
        self.computed = self.reused = self.corrected = 0
        self.timestep_ok = self.timesteps_seen = None

    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for values in self.kept.values() for t in values)
