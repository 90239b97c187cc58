"""The reference DiT gocopt ships: trained on 8×8 digits, loaded from the package, offline."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
from torch import nn

from gocopt.models.dit import DIT_CONFIGS, DiT, dit
from gocopt.models.latent import config_name, latent_reference, load_weights

REFERENCE_WEIGHTS = Path(__file__).parent / "weights" / "reference_dit.safetensors"
PATCH1_WEIGHTS = Path(__file__).parent / "weights" / "patch1_dit.safetensors"
# Guidance scale the reference model is sampled and scored with (DiT's own samples use 4.0).
REFERENCE_GUIDANCE_SCALE = 4.0


def reference(device: torch.device | str = "cpu") -> DiT:
    """The trained class-conditional digits DiT (12 blocks, width 128, 16 tokens), in eval mode."""
    model = DiT(DIT_CONFIGS[config_name(REFERENCE_WEIGHTS, "DiT-Digits")])
    load_weights(model, REFERENCE_WEIGHTS, "examples/train_reference.py")
    return model.eval().to(device)


def patch1_reference(device: torch.device | str = "cpu") -> DiT:
    """The third trained model: the same digits at patch size 1 (4 blocks, width 128, 64 tokens), in
    eval mode. It exists so design decisions are measured on a model shaped unlike the other two
    (another depth, another token count); it is trained exactly as :func:`reference`."""
    model = DiT(DIT_CONFIGS[config_name(PATCH1_WEIGHTS, "DiT-Digits-P1")])
    load_weights(model, PATCH1_WEIGHTS, "examples/train_reference.py --config DiT-Digits-P1 --out "
                 "gocopt/models/weights/patch1_dit.safetensors")
    return model.eval().to(device)


def model_by_name(name: str, *, seed: int = 0, device: torch.device | str = "cpu") -> DiT:
    """``"reference"`` (pixels), ``"latent"`` (the latent reference model), ``"patch1"`` (pixels,
    64 tokens) or a named DiT config (random weights from ``seed``, adaLN not zeroed).

    Random-weight models get their adaLN-Zero layers re-initialised too: a freshly initialised
    DiT's blocks are identities, which would make every cache look perfect.
    """
    if name == "reference":
        return reference(device)
    if name == "latent":
        return latent_reference(device)
    if name == "patch1":
        return patch1_reference(device)
    torch.manual_seed(seed)
    model = dit(name)
    randomize_adaln(model)
    return model.eval().to(device)


@torch.no_grad()
def randomize_adaln(model: DiT, std: float = 0.02) -> None:
    """Give the zero-initialised adaLN and output layers small random weights (for tests, speed)."""
    for owner in (*model.blocks, model.final_layer):
        cast(nn.Linear, cast(nn.Sequential, owner.adaLN_modulation)[-1]).weight.normal_(std=std)
    model.final_layer.linear.weight.normal_(std=std)
