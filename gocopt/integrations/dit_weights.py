"""Weights bridge: a gocopt / official-layout DiT → diffusers' ``DiTTransformer2DModel``.

The official DiT checkpoints (``DiT-XL-2-256x256.pt``) and gocopt's DiTs share one layout, so the
same mapping serves both. Two details make the diffusers model compute the *official* function:

* diffusers' DiT pipeline hard-codes the null class as label 1000, so the table always has 1001
  rows: rows ``0..num_classes-1`` are the model's classes and row 1000 its null class (a model
  with fewer classes, like the 10-digit reference, leaves the rows between unused, zero);
* the official sinusoidal timestep features use frequencies ``exp(-ln(1e4)·i/half)``; diffusers'
  ``Timesteps(downscale_freq_shift=1)`` divides by ``half - 1``. The bridge sets the shift to 0
  on the converted model (a module attribute, not a config field: re-saving and reloading the
  diffusers model restores diffusers' default).
"""

from __future__ import annotations

import torch
from torch import nn

from gocopt.errors import GocoptError
from gocopt.models.dit import DiT

DIFFUSERS_NULL_CLASS = 1000  # DiTPipeline: class_null = torch.tensor([1000] * batch_size)


def diffusers_state_dict(model: DiT) -> dict[str, torch.Tensor]:
    """``model``'s weights under ``DiTTransformer2DModel``'s names (with the 1001-row label table)."""
    cfg, sd = model.config, model.state_dict()
    if cfg.num_classes > DIFFUSERS_NULL_CLASS:
        raise GocoptError(f"DiTPipeline uses label {DIFFUSERS_NULL_CLASS} as the null class, so a model with "
                          f"{cfg.num_classes} classes cannot run in it")
    table = sd["y_embedder.embedding_table.weight"]
    labels = torch.zeros(DIFFUSERS_NULL_CLASS + 1, table.shape[1], dtype=table.dtype)
    labels[: cfg.num_classes] = table[: cfg.num_classes]
    if table.shape[0] > cfg.num_classes:  # trained with label dropout: it has a null row
        labels[DIFFUSERS_NULL_CLASS] = table[cfg.num_classes]
    shared = {
        "norm1.emb.timestep_embedder.linear_1": "t_embedder.mlp.0",
        "norm1.emb.timestep_embedder.linear_2": "t_embedder.mlp.2",
    }
    out = {"pos_embed.proj.weight": sd["x_embedder.proj.weight"], "pos_embed.proj.bias": sd["x_embedder.proj.bias"],
           "proj_out_1.weight": sd["final_layer.adaLN_modulation.1.weight"],
           "proj_out_1.bias": sd["final_layer.adaLN_modulation.1.bias"],
           "proj_out_2.weight": sd["final_layer.linear.weight"], "proj_out_2.bias": sd["final_layer.linear.bias"]}
    for i in range(cfg.depth):
        ours, theirs = f"blocks.{i}.", f"transformer_blocks.{i}."
        for name, source in shared.items():  # diffusers keeps a copy of the embedders in every block
            for p in ("weight", "bias"):
                out[f"{theirs}{name}.{p}"] = sd[f"{source}.{p}"]
        out[f"{theirs}norm1.emb.class_embedder.embedding_table.weight"] = labels
        q, k, v = sd[f"{ours}attn.qkv.weight"].chunk(3)
        qb, kb, vb = sd[f"{ours}attn.qkv.bias"].chunk(3)
        for name, w, b in (("to_q", q, qb), ("to_k", k, kb), ("to_v", v, vb)):
            out[f"{theirs}attn1.{name}.weight"], out[f"{theirs}attn1.{name}.bias"] = w, b
        for theirs_name, ours_name in (("attn1.to_out.0", "attn.proj"), ("norm1.linear", "adaLN_modulation.1"),
                                       ("ff.net.0.proj", "mlp.fc1"), ("ff.net.2", "mlp.fc2")):
            for p in ("weight", "bias"):
                out[f"{theirs}{theirs_name}.{p}"] = sd[f"{ours}{ours_name}.{p}"]
    return out


def to_diffusers(model: DiT) -> nn.Module:
    """A ``DiTTransformer2DModel`` computing what ``model`` computes (eval mode, same device and dtype)."""
    from diffusers import DiTTransformer2DModel

    cfg = model.config
    if cfg.mlp_ratio != 4.0:
        raise GocoptError(f"DiTTransformer2DModel has a fixed MLP ratio of 4; this model has {cfg.mlp_ratio}")
    transformer = DiTTransformer2DModel(
        num_attention_heads=cfg.num_heads, attention_head_dim=cfg.hidden_size // cfg.num_heads,
        in_channels=cfg.in_channels, out_channels=cfg.out_channels, num_layers=cfg.depth, sample_size=cfg.input_size,
        patch_size=cfg.patch_size, num_embeds_ada_norm=DIFFUSERS_NULL_CLASS, norm_eps=1e-6)
    transformer.load_state_dict(diffusers_state_dict(model), strict=True)
    for block in transformer.transformer_blocks:
        block.norm1.emb.time_proj.downscale_freq_shift = 0  # the official frequencies (module docstring)
    parameter = next(model.parameters())
    if parameter.dtype != torch.float32 or parameter.device.type != "cpu":
        transformer = transformer.to(device=parameter.device, dtype=parameter.dtype)
    return transformer.eval()
