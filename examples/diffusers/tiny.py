"""Tiny diffusers transformers and pipelines built from configs (random weights, offline).

For the examples and tests: real diffusers classes (DiT, PixArt-α/Σ, SD3, Flux), a few thousand
parameters each, no text encoders (inputs are precomputed prompt embeddings), no download.
"""

from __future__ import annotations

import torch


def build(name: str):
    """``(model, call_kwargs)`` for ``dit``, ``pixart`` (α and ``pixart_sigma``), ``sd3`` or ``flux``."""
    import diffusers

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    if name == "dit":
        model = diffusers.DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4,
                                                out_channels=8, num_layers=2, sample_size=8, patch_size=2,
                                                num_embeds_ada_norm=1000)
        call = dict(hidden_states=torch.randn(2, 4, 8, 8, generator=g), timestep=torch.tensor([10, 10]),
                    class_labels=torch.tensor([1, 2]), return_dict=False)
    elif name in ("pixart", "pixart_sigma"):
        model = diffusers.PixArtTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4,
                                                   out_channels=8, num_layers=2, sample_size=8, patch_size=2,
                                                   cross_attention_dim=16, caption_channels=32)
        call = dict(hidden_states=torch.randn(2, 4, 8, 8, generator=g),
                    encoder_hidden_states=torch.randn(2, 5, 32, generator=g),
                    timestep=torch.tensor([10, 10]), added_cond_kwargs={"resolution": None, "aspect_ratio": None},
                    return_dict=False)
    elif name == "sd3":
        model = diffusers.SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=4, num_layers=2,
                                                attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                                caption_projection_dim=16, pooled_projection_dim=16, out_channels=4)
        call = dict(hidden_states=torch.randn(2, 4, 8, 8, generator=g),
                    encoder_hidden_states=torch.randn(2, 5, 32, generator=g),
                    pooled_projections=torch.randn(2, 16, generator=g), timestep=torch.tensor([10, 10]),
                    return_dict=False)
    elif name == "flux":
        model = diffusers.FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=2, num_single_layers=2,
                                                 attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                                 pooled_projection_dim=32, axes_dims_rope=(4, 4, 8))
        call = dict(hidden_states=torch.randn(1, 16, 4, generator=g),
                    encoder_hidden_states=torch.randn(1, 8, 32, generator=g),
                    pooled_projections=torch.randn(1, 32, generator=g), timestep=torch.tensor([0.5]),
                    img_ids=torch.zeros(16, 3), txt_ids=torch.zeros(8, 3), return_dict=False)
    else:
        raise KeyError(name)
    with torch.no_grad():  # adaLN-Zero style inits make blocks identities; give them real weights
        for p in model.parameters():
            if p.dim() >= 2 and float(p.abs().max()) == 0.0:
                p.normal_(std=0.02, generator=g)
    return model.eval(), call


def _tiny_vae(latent_channels: int):
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",),
                         up_block_types=("UpDecoderBlock2D",), block_out_channels=(8,), latent_channels=latent_channels,
                         norm_num_groups=8, sample_size=8).eval()


def _embeds(n: int, length: int, dim: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, length, dim, generator=g) for _ in range(n)]


def pipeline(name: str):
    """``(pipe, inputs, call_kwargs)``: a tiny real pipeline (random weights, no text encoders) and
    per-sample inputs given as precomputed prompt embeddings (class labels for DiT)."""
    import diffusers

    transformer, _ = build(name)
    if name == "dit":
        scheduler = diffusers.DDIMScheduler(timestep_spacing="linspace", clip_sample=False)
        pipe = diffusers.DiTPipeline(transformer=transformer, vae=_tiny_vae(4), scheduler=scheduler)
        return pipe, [{"class_labels": c} for c in range(4)], {"guidance_scale": 4.0}
    if name in ("pixart", "pixart_sigma"):
        cls = diffusers.PixArtAlphaPipeline if name == "pixart" else diffusers.PixArtSigmaPipeline
        pipe = cls(tokenizer=None, text_encoder=None, vae=_tiny_vae(4), transformer=transformer,
                   scheduler=diffusers.DPMSolverMultistepScheduler())
        pos, neg = _embeds(4, 5, 32, 1), _embeds(4, 5, 32, 2)
        inputs = [{"prompt_embeds": p, "prompt_attention_mask": torch.ones(1, 5, dtype=torch.long),
                   "negative_prompt_embeds": q, "negative_prompt_attention_mask": torch.ones(1, 5, dtype=torch.long)}
                  for p, q in zip(pos, neg)]
        return pipe, inputs, {"guidance_scale": 4.0, "use_resolution_binning": False, "negative_prompt": None}
    if name == "sd3":
        pipe = diffusers.StableDiffusion3Pipeline(transformer=transformer,
                                                  scheduler=diffusers.FlowMatchEulerDiscreteScheduler(),
                                                  vae=_tiny_vae(4), text_encoder=None, tokenizer=None,
                                                  text_encoder_2=None,
                                                  tokenizer_2=None, text_encoder_3=None, tokenizer_3=None)
        pos, neg = _embeds(4, 5, 32, 1), _embeds(4, 5, 32, 2)
        pooled, npooled = [e[:, 0, :16] for e in _embeds(4, 1, 16, 3)], [e[:, 0, :16] for e in _embeds(4, 1, 16, 4)]
        inputs = [{"prompt_embeds": p, "negative_prompt_embeds": q, "pooled_prompt_embeds": a,
                   "negative_pooled_prompt_embeds": b} for p, q, a, b in zip(pos, neg, pooled, npooled)]
        return pipe, inputs, {"guidance_scale": 4.0}
    if name == "flux":
        pipe = diffusers.FluxPipeline(scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=_tiny_vae(1),
                                      text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
                                      transformer=transformer)
        pos, neg = _embeds(4, 8, 32, 1), _embeds(4, 8, 32, 2)
        pooled, npooled = [e[:, 0] for e in _embeds(4, 1, 32, 3)], [e[:, 0] for e in _embeds(4, 1, 32, 4)]
        inputs = [{"prompt_embeds": p, "negative_prompt_embeds": q, "pooled_prompt_embeds": a,
                   "negative_pooled_prompt_embeds": b} for p, q, a, b in zip(pos, neg, pooled, npooled)]
        return pipe, inputs, {"true_cfg_scale": 2.0, "height": 8, "width": 8}
    raise KeyError(name)
