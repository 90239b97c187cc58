"""The reference DiT inside a real diffusers ``DiTPipeline``.

``reference_pipeline()`` puts gocopt's trained reference model (converted by
:mod:`gocopt.integrations.dit_weights`) into ``DiTPipeline`` with a ``DDIMScheduler`` set up as
gocopt's DDIM (linear betas 1e-4…0.02, ``linspace`` timesteps 999 … 0, final alpha 1, x0 clipped
to [-1, 1], see ``ReferenceDDIMScheduler``) and :class:`PixelDecoder` as its VAE: the reference model works
on 8×8 pixels, so
"decoding" is the identity. ``DiTPipeline`` returns images in [0, 1]; ``2·x − 1`` gives gocopt's
[-1, 1] samples.
"""

from __future__ import annotations

import torch

from gocopt.models.dit import DiT


def _pixel_decoder_class():
    from diffusers import ConfigMixin, ModelMixin
    from diffusers.configuration_utils import register_to_config
    from diffusers.models.autoencoders.vae import DecoderOutput

    class PixelDecoder(ModelMixin, ConfigMixin):
        """The VAE of a pixel-space DiT: ``decode`` is the identity, ``scaling_factor`` 1."""

        @register_to_config
        def __init__(self, scaling_factor: float = 1.0) -> None:
            super().__init__()
            self.register_buffer("_device_anchor", torch.zeros(()), persistent=False)  # gives the module a device

        def decode(self, z: torch.Tensor, return_dict: bool = True):
            return DecoderOutput(sample=z) if return_dict else (z,)

    return PixelDecoder


def _scheduler_class():
    from diffusers import DDIMScheduler
    from diffusers.schedulers.scheduling_ddim import DDIMSchedulerOutput

    class ReferenceDDIMScheduler(DDIMScheduler):
        """``DDIMScheduler`` stepping as gocopt's DDIM (η = 0) does, for two details diffusers does differently:
        the previous timestep is the *next one in the list* (``linspace`` spacing is not the uniform
        ``T // N`` that ``DDIMScheduler.step`` assumes), and after clipping x0 the noise is re-derived
        from it (diffusers' ``use_clipped_model_output=True``)."""

        def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, eta: float = 0.0,
                 use_clipped_model_output: bool = True, generator=None, variance_noise=None, return_dict: bool = True):
            if eta != 0.0:
                raise ValueError("ReferenceDDIMScheduler is deterministic DDIM (eta = 0), as gocopt samples")
            steps = [int(t) for t in self.timesteps]
            i = steps.index(int(timestep))
            alphas = self.alphas_cumprod.double()
            ab_t = float(alphas[steps[i]])
            ab_prev = float(alphas[steps[i + 1]]) if i + 1 < len(steps) else float(self.final_alpha_cumprod)
            x0 = (sample - (1 - ab_t) ** 0.5 * model_output) / ab_t**0.5
            if self.config.clip_sample:
                x0 = x0.clamp(-self.config.clip_sample_range, self.config.clip_sample_range)
                model_output = (sample - ab_t**0.5 * x0) / (1 - ab_t) ** 0.5
            prev = ab_prev**0.5 * x0 + (1 - ab_prev) ** 0.5 * model_output
            return DDIMSchedulerOutput(prev_sample=prev, pred_original_sample=x0) if return_dict else (prev,)

    return ReferenceDDIMScheduler


def reference_scheduler():
    """A DDIM scheduler that takes exactly gocopt's DDIM steps (see ``ReferenceDDIMScheduler``)."""
    return _scheduler_class()(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                              clip_sample=True, clip_sample_range=1.0, set_alpha_to_one=True, steps_offset=0,
                              timestep_spacing="linspace", prediction_type="epsilon")


def reference_pipeline(model: DiT | None = None):
    """``DiTPipeline`` running the reference model (or another gocopt DiT of pixel images)."""
    from diffusers import DiTPipeline

    from gocopt.integrations.dit_weights import to_diffusers
    from gocopt.models import reference

    model = model if model is not None else reference()
    return DiTPipeline(transformer=to_diffusers(model), vae=_pixel_decoder_class()(), scheduler=reference_scheduler())
