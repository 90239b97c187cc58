"""What calibration, search and scoring need of a sampler — gocopt's DDIM and the diffusers
pipeline adapter (:class:`gocopt.integrations.diffusers.PipelineSampler`) are both one.

The three positional arguments of ``sample`` are positional-only, so each sampler names them for
what they hold: DDIM takes ``(model, labels, noise)``, the pipeline adapter
``(model, input_indices, seeds)`` — one condition and one source of noise per sample, so a sample
never depends on its batch-mates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class Sampler(Protocol):
    @property
    def steps(self) -> int:
        """Model calls per sample and call context."""

    @property
    def timesteps(self) -> Sequence[float] | None:
        """The model timestep of each step, as the model receives it."""

    @property
    def guidance(self) -> str | None:
        """``"batched"``, ``"separate"`` or ``"none"``: how the model is called per step."""

    def describe(self) -> dict[str, Any]:
        """What a schedule must record to know which sampler it was made for."""

    def sample(self, model: Any, conditions: torch.Tensor, noise: torch.Tensor, /, *, num_classes: Any,
               progress: bool = False) -> torch.Tensor:
        """One final sample per condition (CPU or the model's device); ``num_classes`` where the
        conditions are class labels (the null class for guidance is the next index), else ``None``."""


__all__ = ["Sampler"]
