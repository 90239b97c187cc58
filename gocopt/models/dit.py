"""Diffusion Transformer (DiT), written from scratch in the layout of the official code.

Parameter names and shapes match the official DiT checkpoints (``DiT-XL-2-256x256.pt`` loads
with a strict ``load_state_dict``), and the whole model traces with ``torch.fx``: every size
that the official code reads off a runtime shape (the patch grid in ``unpatchify``) is fixed
at construction here. The model knows nothing about sampling: it maps ``(x, t, y)`` to the
network output and never reads a step counter.

Reads top to bottom: helpers → embedders → attention / MLP → block → final layer → DiT →
position embedding → named configs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation of a token stream ``(N, T, D)`` by per-sample ``(N, D)`` vectors."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


# --------------------------------------------------------------------------------------------
# Embedders
# --------------------------------------------------------------------------------------------


class PatchEmbed(nn.Module):
    """Image ``(N, C, H, W)`` → patch tokens ``(N, T, D)`` with one strided convolution."""

    def __init__(self, patch_size: int, in_channels: int, hidden_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
    """Scalar diffusion timesteps → vectors: sinusoidal features, then a two-layer MLP."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )
        self.frequency_embedding_size = frequency_embedding_size

    @staticmethod
    def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
        half = dim // 2
        freqs = torch.exp(
            -math.log(max_period) * torch.arange(0, half, dtype=torch.float32, device=t.device) / half
        )
        args = t[:, None].float() * freqs[None]
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:  # static: dim is a Python int
            embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
        return embedding

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        frequencies = self.timestep_embedding(t, self.frequency_embedding_size)
        first: nn.Linear = self.mlp[0]  # type: ignore[assignment]
        return self.mlp(frequencies.to(first.weight.dtype))  # follows the weights: bf16/fp16 models run


class LabelEmbedder(nn.Module):
    """Class labels → vectors. Row ``num_classes`` is the null class used by guidance.

    During training a fraction ``dropout_prob`` of labels is replaced by the null class, which
    is what teaches the model its unconditional prediction.
    """

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float) -> None:
        super().__init__()
        use_cfg_embedding = dropout_prob > 0
        self.embedding_table = nn.Embedding(num_classes + use_cfg_embedding, hidden_size)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def token_drop(self, labels: torch.Tensor) -> torch.Tensor:
        drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
        return torch.where(drop, torch.full_like(labels, self.num_classes), labels)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        if self.training and self.dropout_prob > 0:  # static under eval(): traces to one lookup
            labels = self.token_drop(labels)
        return self.embedding_table(labels)


# --------------------------------------------------------------------------------------------
# Attention and MLP (the two expensive branches of a block)
# --------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` projection (official parameter names)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t = x.shape[0], x.shape[1]
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (N, heads, T, head_dim)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(n, t, self.num_heads * self.head_dim))


class Mlp(nn.Module):
    """Two-layer feed-forward network with tanh-approximated GELU, as in DiT."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


# --------------------------------------------------------------------------------------------
# Transformer block and final layer
# --------------------------------------------------------------------------------------------


class DiTBlock(nn.Module):
    """adaLN-Zero block: two residual branches, each modulated and gated by the conditioning."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    """adaLN-modulated norm and a linear map from tokens to patch pixels."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiTConfig:
    """Every number that fixes a DiT's architecture (and so its parameter shapes)."""

    input_size: int = 32
    patch_size: int = 2
    in_channels: int = 4
    hidden_size: int = 1152
    depth: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    class_dropout_prob: float = 0.1  # > 0 adds the null-class row used by guidance
    num_classes: int = 1000
    learn_sigma: bool = True  # official checkpoints predict (eps, variance): 2x channels out

    @property
    def out_channels(self) -> int:
        return self.in_channels * 2 if self.learn_sigma else self.in_channels

    @property
    def grid_size(self) -> int:
        return self.input_size // self.patch_size


class DiT(nn.Module):
    """Class-conditional DiT: ``forward(x, t, y)`` → ``(N, out_channels, H, W)``."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        if config.input_size % config.patch_size:
            raise ValueError(f"input_size {config.input_size} is not a multiple of patch_size {config.patch_size}")
        self.config = config
        self.in_channels = config.in_channels
        self.out_channels = config.out_channels
        self.input_size = config.input_size
        self.num_classes = config.num_classes
        self.x_embedder = PatchEmbed(config.patch_size, config.in_channels, config.hidden_size)
        self.t_embedder = TimestepEmbedder(config.hidden_size)
        self.y_embedder = LabelEmbedder(config.num_classes, config.hidden_size, config.class_dropout_prob)
        num_patches = config.grid_size**2
        # Fixed (not learned) sin-cos embedding; a parameter only so checkpoints carry it.
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, config.hidden_size), requires_grad=False)
        self.blocks = nn.ModuleList(
            DiTBlock(config.hidden_size, config.num_heads, config.mlp_ratio) for _ in range(config.depth)
        )
        self.final_layer = FinalLayer(config.hidden_size, config.patch_size, config.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """The official initialisation: adaLN-Zero, so a fresh model's blocks are identities."""

        def _basic_init(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0)

        self.apply(_basic_init)
        pos_embed = get_2d_sincos_pos_embed(self.config.hidden_size, self.config.grid_size)
        self.pos_embed.data.copy_(torch.from_numpy(pos_embed).float().unsqueeze(0))
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view([w.shape[0], -1]))
        nn.init.zeros_(self.x_embedder.proj.bias.data)  # type: ignore[union-attr]  # built with a bias
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        for index in (0, 2):
            nn.init.normal_(cast(nn.Linear, self.t_embedder.mlp[index]).weight, std=0.02)
        for owner in (*self.blocks, self.final_layer):
            modulation = cast(nn.Linear, cast(nn.Sequential, owner.adaLN_modulation)[-1])
            nn.init.constant_(modulation.weight, 0)
            nn.init.constant_(modulation.bias, 0)
        nn.init.constant_(self.final_layer.linear.weight, 0)
        nn.init.constant_(self.final_layer.linear.bias, 0)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``(N, T, p*p*C)`` → image ``(N, C, H, W)``, from sizes fixed at construction."""
        c, p, h = self.out_channels, self.config.patch_size, self.config.grid_size
        x = x.reshape(x.shape[0], h, h, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], c, h * p, h * p)

    def example_inputs(self, batch_size: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One valid call ``(x, t, y)`` on the model's device and in its dtype, for tracing and FLOP counting."""
        device, dtype = self.pos_embed.device, self.pos_embed.dtype
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch_size, self.in_channels, self.input_size, self.input_size, generator=g).to(device, dtype)
        t = torch.randint(0, 1000, (batch_size,), generator=g).to(device)
        y = torch.randint(0, self.num_classes, (batch_size,), generator=g).to(device)
        return x, t, y

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = self.x_embedder(x) + self.pos_embed  # (N, T, D)
        c = self.t_embedder(t) + self.y_embedder(y)  # (N, D)
        for block in self.blocks:
            x = block(x, c)  # (N, T, D)
        x = self.final_layer(x, c)  # (N, T, p*p*out_channels)
        return self.unpatchify(x)  # (N, out_channels, H, W)


# --------------------------------------------------------------------------------------------
# Fixed 2-D sin-cos position embedding (as in MAE / DiT)
# --------------------------------------------------------------------------------------------


def get_2d_sincos_pos_embed(embed_dim: int, grid_size: int) -> np.ndarray:
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape(2, 1, grid_size, grid_size)
    emb_h = _1d_sincos(embed_dim // 2, grid[0])
    emb_w = _1d_sincos(embed_dim // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)  # (grid_size**2, embed_dim)


def _1d_sincos(embed_dim: int, pos: np.ndarray) -> np.ndarray:
    omega = 1.0 / 10000 ** (np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0))
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


# --------------------------------------------------------------------------------------------
# Named configs
# --------------------------------------------------------------------------------------------

_SIZES = {  # name → (depth, hidden_size, num_heads), as in the DiT paper
    "S": (12, 384, 6),
    "B": (12, 768, 12),
    "L": (24, 1024, 16),
    "XL": (28, 1152, 16),
}

DIT_CONFIGS: dict[str, DiTConfig] = {
    f"DiT-{size}/{patch}": DiTConfig(depth=depth, hidden_size=hidden, num_heads=heads, patch_size=patch)
    for size, (depth, hidden, heads) in _SIZES.items()
    for patch in (2, 4, 8)
}

# The reference model gocopt ships: class-conditional 8×8 digits, 16 tokens, 12 blocks.
DIT_CONFIGS["DiT-Digits"] = DiTConfig(
    input_size=8, patch_size=2, in_channels=1, hidden_size=128, depth=12, num_heads=4,
    num_classes=10, learn_sigma=False,
)
# The second reference model: class-conditional, on the 4×8×8 latents of gocopt's digits
# autoencoder (gocopt/models/autoencoder.py), 16 tokens, 8 blocks of width 192: a latent DiT
# sampled without clipping, like DiT-XL/2 on SD's VAE, and shaped unlike the first.
DIT_CONFIGS["DiT-Latent"] = DiTConfig(
    input_size=8, patch_size=2, in_channels=4, hidden_size=192, depth=8, num_heads=6,
    num_classes=10, learn_sigma=False,
)
# The third reference model: the same 8×8 digits as the first, at patch size 1 (64 tokens, 4× the
# first's) through 4 blocks (a third of its depth): shaped unlike both others, for the design
# protocol's "every decision measured on models that differ in kind" (issue #34).
DIT_CONFIGS["DiT-Digits-P1"] = DiTConfig(
    input_size=8, patch_size=1, in_channels=1, hidden_size=128, depth=4, num_heads=4,
    num_classes=10, learn_sigma=False,
)
# The smallest useful DiT, for tests: 2 blocks, width 32.
DIT_CONFIGS["DiT-Tiny"] = DiTConfig(
    input_size=8, patch_size=2, in_channels=1, hidden_size=32, depth=2, num_heads=2,
    num_classes=10, learn_sigma=False,
)


def dit(name: str, **overrides: Any) -> DiT:
    """Build a named DiT config with random weights, e.g. ``dit("DiT-XL/2", input_size=16)``."""
    if name not in DIT_CONFIGS:
        raise KeyError(f"unknown DiT config {name!r}; known: {', '.join(DIT_CONFIGS)}")
    return DiT(replace(DIT_CONFIGS[name], **overrides))
