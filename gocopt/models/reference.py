"""The reference DiT gocopt ships: trained on 8×8 digits, loaded from the package, offline."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
from safetensors import safe_open
from safetensors.torch import load_model
from torch import nn

from gocopt.models.dit import DIT_CONFIGS, DiT, dit

REFERENCE_WEIGHTS = Path(__file__).parent / "weights" / "reference_dit.safetensors"
# Guidance scale the reference model is sampled and scored with (DiT's own samples use 4.0).
REFERENCE_GUIDANCE_SCALE = 4.0


def reference(device: torch.device | str = "cpu") -> DiT:
    """The trained class-conditional digits DiT (12 blocks, width 128, 16 tokens), in eval mode."""
    if not REFERENCE_WEIGHTS.exists():
        raise FileNotFoundError(
            f"reference weights missing at {REFERENCE_WEIGHTS}; reinstall gocopt or re-create them with "
            "`python examples/train_reference.py`"
        )
    with safe_open(str(REFERENCE_WEIGHTS), framework="pt") as f:
        config_name = (f.metadata() or {}).get("config", "DiT-Digits")
    model = DiT(DIT_CONFIGS[config_name])
    load_model(model, str(REFERENCE_WEIGHTS), strict=True)
    return model.eval().to(device)


def model_by_name(name: str, *, seed: int = 0, device: torch.device | str = "cpu") -> DiT:
    """``"reference"`` or a named DiT config (random weights from ``seed``, adaLN not zeroed).

    Random-weight models get their adaLN-Zero layers re-initialised too: a freshly initialised
    DiT's blocks are identities, which would make every cache look perfect.
    """
    if name == "reference":
        return reference(device)
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
