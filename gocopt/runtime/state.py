"""Per-run cache state, kept out of the modules: one ``RunState`` per call context."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

SiteValue = tuple[torch.Tensor, ...]  # a site's outputs (two for a joint attention)


@dataclass
class RunState:
    """Where one sampling run stands in one context (``"cond"``, ``"uncond"`` or the default).

    ``queues[i]`` holds site ``i``'s two most recently *used* values, newest first.
    """

    num_sites: int
    step: int = 0
    queues: list[list[SiteValue]] = field(default_factory=list, repr=False)
    computed: int = 0
    reused: int = 0
    corrected: int = 0

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.step = 0
        self.queues = [[] for _ in range(self.num_sites)]
        self.computed = self.reused = self.corrected = 0

    def push(self, site: int, value: SiteValue) -> None:
        queue = self.queues[site]
        queue.insert(0, value)
        del queue[2:]

    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for q in self.queues for v in q for t in v)
