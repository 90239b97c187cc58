"""DiT models: the named DiT configs (random weights) and the trained reference model."""

from gocopt.models.dit import DIT_CONFIGS, DiT, DiTConfig, dit
from gocopt.models.reference import REFERENCE_GUIDANCE_SCALE, REFERENCE_WEIGHTS, model_by_name, reference

__all__ = ["DIT_CONFIGS", "DiT", "DiTConfig", "REFERENCE_GUIDANCE_SCALE", "REFERENCE_WEIGHTS", "dit", "model_by_name",
           "reference"]
