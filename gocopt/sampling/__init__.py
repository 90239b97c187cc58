"""Diffusion sampling: the noise schedule, DDIM, classifier-free guidance.

The sampler calls the model exactly once per step (twice with ``guidance="separate"``), so a
cache runtime can count steps; the model itself never sees a step index.
"""

from gocopt.sampling.ddim import GUIDANCE_MODES, DDIMSampler, initial_noise
from gocopt.sampling.diffusion import GaussianDiffusion
from gocopt.sampling.protocol import Sampler
from gocopt.sampling.run import SamplingRun, sampling_run

__all__ = ["GUIDANCE_MODES", "DDIMSampler", "GaussianDiffusion", "Sampler", "SamplingRun", "initial_noise",
           "sampling_run"]
