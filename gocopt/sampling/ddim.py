"""Deterministic DDIM (eta = 0) with classifier-free guidance, at DiT's timestep respacing."""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from gocopt.errors import ScheduleError
from gocopt.sampling.diffusion import GaussianDiffusion
from gocopt.sampling.run import sampling_run

GUIDANCE_MODES = ("batched", "separate", "none")


def initial_noise(seeds: Sequence[int], shape: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
    """One generator per sample, so a sample's noise never depends on its batch-mates."""
    noise = [torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    return torch.stack(noise).to(device)


@dataclass(frozen=True)
class DDIMSampler:
    """DDIM with ``steps`` model evaluations at ``t_i = round(i * (T-1) / (steps-1))``.

    Args:
        steps: number of sampling steps (= model calls per image with batched guidance).
        guidance_scale: classifier-free guidance scale; 1.0 means the conditional model alone.
        guidance: ``"batched"`` (cond and uncond halves in one call, as DiT does), ``"separate"``
            (two calls per step, inside ``model.cache_context("cond" | "uncond")`` when the model
            has one, as diffusers pipelines do) or ``"none"`` (one conditional call).
        clip_denoised: clamp the predicted clean image to [-1, 1] (pixel-space models).
        first_step: start the run at this step of the ``steps``-step schedule, from a latent taken
            at that step (``noise`` is then that latent): how a search re-runs only the part of a
            run that a cache decision can change (:mod:`gocopt.search.spans`).
        last_step: stop before this step (``None``: run to the end); the result is then the latent
            before ``last_step``, not a sample.
    """

    steps: int = 20
    guidance_scale: float = 2.0
    guidance: str = "batched"
    clip_denoised: bool = True
    first_step: int = 0
    last_step: int | None = None
    diffusion: GaussianDiffusion = field(default_factory=GaussianDiffusion, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, numbers.Integral) or self.steps < 2:
            raise ScheduleError(f"DDIMSampler(steps={self.steps!r}): DDIM needs a whole number of at least 2 steps")
        if self.steps > self.diffusion.num_timesteps:
            limit = self.diffusion.num_timesteps
            raise ScheduleError(f"DDIMSampler(steps={self.steps}) exceeds the diffusion's {limit} timesteps: steps "
                                f"would repeat a timestep and update nothing; use steps <= {limit}")
        if not 0 <= self.first_step < self.steps:
            raise ScheduleError(f"first_step={self.first_step} is not a step of a {self.steps}-step run")
        if self.last_step is not None and not self.first_step < self.last_step <= self.steps:
            raise ScheduleError(f"last_step={self.last_step} must lie in ({self.first_step}, {self.steps}]")
        if self.guidance not in GUIDANCE_MODES:
            raise ScheduleError(f"guidance={self.guidance!r}; expected one of {GUIDANCE_MODES}")
        if not math.isfinite(self.guidance_scale):
            raise ScheduleError(f"guidance_scale={self.guidance_scale!r} is not a finite number")

    @property
    def timesteps(self) -> list[int]:
        """Model timesteps, first to last: 999, 946, …, 53, 0 for 20 steps."""
        return self._all_timesteps[self.first_step:self.last_step]

    @property
    def _all_timesteps(self) -> list[int]:
        last = self.diffusion.num_timesteps - 1
        return [round(i * last / (self.steps - 1)) for i in range(self.steps)][::-1]

    def describe(self) -> dict:
        """What a cache schedule must record to know which sampler it was made for."""
        return {
            "name": "ddim",
            "steps": len(self.timesteps),
            "timesteps": self.timesteps,
            "guidance": self.guidance,
            "guidance_scale": self.guidance_scale,
            "clip_denoised": self.clip_denoised,  # a pixel model's clipped run is another trajectory
        }

    @torch.no_grad()
    def sample(
        self,
        model: Callable[..., torch.Tensor],
        labels: torch.Tensor,
        noise: torch.Tensor,
        *,
        num_classes: int,
        progress: bool = False,
    ) -> torch.Tensor:
        """Denoise ``noise`` ``(N, C, H, W)`` into samples of classes ``labels`` ``(N,)``."""
        return self.latents(model, labels, noise, num_classes=num_classes, progress=progress)[-1]

    @torch.no_grad()
    def latents(self, model: Callable[..., torch.Tensor], labels: torch.Tensor, noise: torch.Tensor, *,
                num_classes: int, progress: bool = False) -> list[torch.Tensor]:
        """The latent before every step, then the final sample (``len(timesteps) + 1`` tensors; with
        ``last_step``, the last one is the latent before that step)."""
        x = noise
        labels = labels.to(x.device)
        null = torch.full_like(labels, num_classes)
        steps = self._all_timesteps
        alphas = self.diffusion.alphas_cumprod.tolist()  # host floats, read once
        out = [x]
        with sampling_run(self.timesteps):  # a cached model checks these once, on the host: no sync per call
            for i in tqdm(range(self.first_step, self.last_step or self.steps), desc="ddim", disable=not progress,
                          leave=False):
                x = self._step(model, x, i, steps, alphas, labels, null, x.shape[1])
                out.append(x)
        return out

    def _step(self, model, x, i: int, steps: list[int], ab: list[float], labels, null, channels: int) -> torch.Tensor:
        """One DDIM update ``x_t → x_{t-1}`` at step ``i`` of ``steps`` (the whole run's timesteps);
        every scalar is a host float (no device reads)."""
        t_int = steps[i]
        t = torch.full((x.shape[0],), t_int, device=x.device, dtype=torch.long)
        eps = self._guided_eps(model, x, t, labels, null)[:, :channels]
        ab_t = ab[t_int]
        ab_prev = ab[steps[i + 1]] if i + 1 < len(steps) else 1.0
        x0 = (x - (1 - ab_t) ** 0.5 * eps) / ab_t**0.5
        if self.clip_denoised:
            x0 = x0.clamp(-1, 1)
            eps = (x - ab_t**0.5 * x0) / (1 - ab_t) ** 0.5
        return ab_prev**0.5 * x0 + (1 - ab_prev) ** 0.5 * eps

    def _guided_eps(self, model, x, t, labels, null) -> torch.Tensor:
        channels = x.shape[1]
        if self.guidance == "none":
            return model(x, t, labels)
        if self.guidance == "batched":
            out = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null]))[:, :channels]
            cond, uncond = out.chunk(2)
        else:
            with _cache_context(model, "cond"):
                cond = model(x, t, labels)[:, :channels]
            with _cache_context(model, "uncond"):
                uncond = model(x, t, null)[:, :channels]
        return uncond + self.guidance_scale * (cond - uncond)


def _cache_context(model: object, name: str) -> contextlib.AbstractContextManager:
    """The diffusers convention: a cache keeps separate state per named call context."""
    context = getattr(model, "cache_context", None)
    return context(name) if callable(context) else contextlib.nullcontext()
