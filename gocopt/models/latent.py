"""gocopt's second reference model: a DiT on the 4×8×8 latents of a small autoencoder, offline.

The first reference model denoises pixels and clips its predicted clean image; DiT-XL/2, PixArt
and SD3 denoise a VAE's latents and cannot clip. Every design choice was tuned on the first, so
this one is held out from tuning: trained by ``examples/train_latent.py`` on the same digits,
sampled without clipping, scored on its decoded pixels.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_model
from torch import nn

from gocopt.models.autoencoder import Autoencoder
from gocopt.models.dit import DIT_CONFIGS, DiT

WEIGHTS = Path(__file__).parent / "weights"
LATENT_DIT_WEIGHTS = WEIGHTS / "latent_dit.safetensors"
LATENT_AUTOENCODER_WEIGHTS = WEIGHTS / "latent_autoencoder.safetensors"


def load_weights(module: nn.Module, path: Path, script: str) -> None:
    """Load ``path`` into ``module`` strictly, or say which file is missing and how to re-create it."""
    if not path.exists():
        raise FileNotFoundError(f"weights missing at {path}; reinstall gocopt or re-create them with "
                                f"`python {script}`")
    load_model(module, str(path), strict=True)


def config_name(path: Path, default: str) -> str:
    """The DiT config a weights file was trained with (its ``config`` metadata)."""
    if not path.exists():
        return default
    with safe_open(str(path), framework="pt") as f:
        return (f.metadata() or {}).get("config", default)


def latent_reference(device: torch.device | str = "cpu") -> DiT:
    """The trained class-conditional latent DiT (8 blocks, width 192, 4×8×8 latents), in eval mode.

    Sample it with ``DDIMSampler(..., clip_denoised=False)`` and decode with :func:`latent_autoencoder`.
    """
    model = DiT(DIT_CONFIGS[config_name(LATENT_DIT_WEIGHTS, "DiT-Latent")])
    load_weights(model, LATENT_DIT_WEIGHTS, "examples/train_latent.py")
    return model.eval().to(device)


def latent_autoencoder(device: torch.device | str = "cpu") -> Autoencoder:
    """The autoencoder whose latents :func:`latent_reference` denoises (decode: latents → 32×32 pixels)."""
    autoencoder = Autoencoder()
    load_weights(autoencoder, LATENT_AUTOENCODER_WEIGHTS, "examples/train_latent.py")
    return autoencoder.eval().to(device)


__all__ = ["LATENT_AUTOENCODER_WEIGHTS", "LATENT_DIT_WEIGHTS", "latent_autoencoder", "latent_reference"]
