"""DiT models: the named DiT configs (random weights) and the two trained reference models."""

from gocopt.models.dit import DIT_CONFIGS, DiT, DiTConfig, dit
from gocopt.models.latent import latent_autoencoder, latent_reference
from gocopt.models.reference import REFERENCE_GUIDANCE_SCALE, REFERENCE_WEIGHTS, model_by_name, reference

# Whether a trained model's sampler clips the predicted clean sample: pixels yes, latents no.
CLIPS_DENOISED = {"reference": True, "latent": False}

__all__ = ["CLIPS_DENOISED", "DIT_CONFIGS", "DiT", "DiTConfig", "REFERENCE_GUIDANCE_SCALE", "REFERENCE_WEIGHTS", "dit",
           "latent_autoencoder", "latent_reference", "model_by_name", "reference"]
