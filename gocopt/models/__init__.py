"""DiT models: the named DiT configs (random weights) and the three trained reference models."""

from gocopt.models.dit import DIT_CONFIGS, DiT, DiTConfig, dit
from gocopt.models.latent import latent_autoencoder, latent_reference
from gocopt.models.reference import (
    PATCH1_WEIGHTS,
    REFERENCE_GUIDANCE_SCALE,
    REFERENCE_WEIGHTS,
    model_by_name,
    patch1_reference,
    reference,
)

# Whether a trained model's sampler clips the predicted clean sample: pixels yes, latents no.
CLIPS_DENOISED = {"reference": True, "latent": False, "patch1": True}
TRAINED_MODELS = tuple(CLIPS_DENOISED)

__all__ = ["CLIPS_DENOISED", "DIT_CONFIGS", "PATCH1_WEIGHTS", "REFERENCE_GUIDANCE_SCALE", "REFERENCE_WEIGHTS",
           "TRAINED_MODELS", "DiT", "DiTConfig", "dit", "latent_autoencoder", "latent_reference", "model_by_name",
           "patch1_reference", "reference"]
