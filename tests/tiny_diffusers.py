"""Tiny diffusers transformers built from configs (random weights, offline), with one valid call."""

from __future__ import annotations

import torch


def build(name: str):
    """``(model, call_kwargs)`` for ``dit``, ``pixart``, ``sd3`` or ``flux``."""
    diffusers = __import__("pytest").importorskip("diffusers")
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    if name == "dit":
        model = diffusers.DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, num_layers=2,
                                                sample_size=8, patch_size=2, num_embeds_ada_norm=10)
        call = dict(hidden_states=torch.randn(2, 4, 8, 8, generator=g), timestep=torch.tensor([10, 10]),
                    class_labels=torch.tensor([1, 2]), return_dict=False)
    elif name == "pixart":
        model = diffusers.PixArtTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                                   num_layers=2, sample_size=8, patch_size=2, cross_attention_dim=16,
                                                   caption_channels=32)
        call = dict(hidden_states=torch.randn(2, 4, 8, 8, generator=g), encoder_hidden_states=torch.randn(2, 5, 32, generator=g),
                    timestep=torch.tensor([10, 10]), added_cond_kwargs={"resolution": None, "aspect_ratio": None},
                    return_dict=False)
    elif name == "sd3":
        model = diffusers.SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8,
                                                num_attention_heads=2, joint_attention_dim=32, caption_projection_dim=16,
                                                pooled_projection_dim=16, out_channels=4)
        call = dict(hidden_states=torch.randn(2, 4, 8, 8, generator=g), encoder_hidden_states=torch.randn(2, 5, 32, generator=g),
                    pooled_projections=torch.randn(2, 16, generator=g), timestep=torch.tensor([10, 10]), return_dict=False)
    elif name == "flux":
        model = diffusers.FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=2, num_single_layers=2,
                                                 attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                                 pooled_projection_dim=32, axes_dims_rope=(4, 4, 8))
        call = dict(hidden_states=torch.randn(1, 16, 4, generator=g), encoder_hidden_states=torch.randn(1, 8, 32, generator=g),
                    pooled_projections=torch.randn(1, 32, generator=g), timestep=torch.tensor([0.5]),
                    img_ids=torch.zeros(16, 3), txt_ids=torch.zeros(8, 3), return_dict=False)
    else:
        raise KeyError(name)
    with torch.no_grad():  # adaLN-Zero style inits make blocks identities; give them real weights
        for pname, p in model.named_parameters():
            if p.dim() >= 2 and float(p.abs().max()) == 0.0:
                p.normal_(std=0.02, generator=g)
    return model.eval(), call
