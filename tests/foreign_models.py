"""Models nobody at gocopt wrote, in the shapes users bring them (for tests).

* :class:`OriginalDiT` — the attributes and calling convention of facebookresearch/DiT's ``DiT``
  (timm ``PatchEmbed`` as ``x_embedder``, ``y_embedder.num_classes``, no ``num_classes`` or
  ``input_size`` of its own, no ``example_inputs``), built from gocopt's block code.
* :class:`UViT` — U-ViT's layout: time and class as tokens, ``nn.MultiheadAttention``, no adaLN,
  long skips concatenated into the second half, and the middle block as a plain attribute.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gocopt.models.dit import DiTBlock, FinalLayer, TimestepEmbedder


class TimmPatchEmbed(nn.Module):
    """timm's ``PatchEmbed`` attributes: ``img_size`` and ``patch_size`` tuples, ``num_patches``."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.img_size, self.patch_size = (img_size, img_size), (patch_size, patch_size)
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class OriginalLabelEmbedder(nn.Module):
    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float) -> None:
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden_size)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def forward(self, labels: torch.Tensor, train: bool, force_drop_ids=None) -> torch.Tensor:
        return self.embedding_table(labels)


class OriginalDiT(nn.Module):
    def __init__(self, input_size: int = 8, patch_size: int = 2, in_channels: int = 1, hidden_size: int = 32,
                 depth: int = 2, num_heads: int = 2, num_classes: int = 10) -> None:
        super().__init__()
        self.learn_sigma, self.in_channels, self.out_channels = False, in_channels, in_channels
        self.patch_size, self.num_heads = patch_size, num_heads
        self.x_embedder = TimmPatchEmbed(input_size, patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = OriginalLabelEmbedder(num_classes, hidden_size, 0.1)
        self.pos_embed = nn.Parameter(torch.randn(1, self.x_embedder.num_patches, hidden_size) * 0.02,
                                      requires_grad=False)
        self.blocks = nn.ModuleList([DiTBlock(hidden_size, num_heads) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        c, p = self.out_channels, self.x_embedder.patch_size[0]
        h = w = int(x.shape[1] ** 0.5)
        x = x.reshape(shape=(x.shape[0], h, w, p, p, c))
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(shape=(x.shape[0], c, h * p, h * p))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y, self.training)
        for block in self.blocks:
            x = block(x, c)
        return self.unpatchify(self.final_layer(x, c))


class UViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, skip: bool = False) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class UViT(nn.Module):
    """U-ViT for ``(N, C, H, W)`` latents, time and class as two extra tokens."""

    def __init__(self, img_size: int = 8, patch_size: int = 2, in_chans: int = 1, dim: int = 32, depth: int = 5,
                 heads: int = 2, num_classes: int = 10) -> None:
        super().__init__()
        self.in_channels, self.input_size, self.num_classes = in_chans, img_size, num_classes
        self.patch_size = patch_size
        self.patch_embed = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.time_embed = nn.Sequential(nn.Linear(dim, 4 * dim), nn.SiLU(), nn.Linear(4 * dim, dim))
        self.label_emb = nn.Embedding(num_classes + 1, dim)
        tokens = (img_size // patch_size) ** 2 + 2
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.in_blocks = nn.ModuleList([UViTBlock(dim, heads) for _ in range(depth // 2)])
        self.mid_block = UViTBlock(dim, heads)
        self.out_blocks = nn.ModuleList([UViTBlock(dim, heads, skip=True) for _ in range(depth // 2)])
        self.norm = nn.LayerNorm(dim)
        self.decoder_pred = nn.Linear(dim, patch_size * patch_size * in_chans)
        self.dim = dim

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=x.device) / half)
        args = t[:, None].float() * freqs[None]
        time_token = self.time_embed(torch.cat([torch.cos(args), torch.sin(args)], dim=-1)).unsqueeze(1)
        x = torch.cat([time_token, self.label_emb(y).unsqueeze(1), x], dim=1) + self.pos_embed
        skips = []
        for block in self.in_blocks:
            x = block(x)
            skips.append(x)
        x = self.mid_block(x)
        for block in self.out_blocks:
            x = block(x, skips.pop())
        x = self.decoder_pred(self.norm(x))[:, 2:]
        p = self.patch_size
        x = x.reshape(n, h // p, w // p, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(n, c, h, w)


class OddMiddle(nn.Module):
    """A block of its own class, held as a plain attribute, plus a residual branch inline in the model's forward."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ff(self.norm(x))


class UViTWithOddParts(UViT):
    def __init__(self) -> None:
        super().__init__()
        self.mid_block = OddMiddle(self.dim)
        self.final_norm = nn.LayerNorm(self.dim)
        self.final_ff = nn.Linear(self.dim, self.dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        out = super().forward(x, t, y)
        tokens = out.reshape(n, -1, self.dim) if out.numel() % self.dim == 0 else None
        return out if tokens is None else (tokens + self.final_ff(self.final_norm(tokens))).reshape(n, c, h, w)


def tiny_diffusers(name: str) -> tuple[nn.Module, dict]:
    """A tiny random diffusers transformer beyond the pipelines' four, and one call of it."""
    import diffusers

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    if name == "hunyuan":  # long skips: the second half of the blocks concatenates the first half's outputs
        model = diffusers.HunyuanDiT2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, patch_size=2,
                                            sample_size=8, hidden_size=16, num_layers=4, cross_attention_dim=32,
                                            cross_attention_dim_t5=32, pooled_projection_dim=16, text_len=5,
                                            text_len_t5=6)
        call = dict(hidden_states=torch.randn(2, 4, 8, 8, generator=g), timestep=torch.tensor([10.0, 10.0]),
                    encoder_hidden_states=torch.randn(2, 5, 32, generator=g), text_embedding_mask=torch.ones(2, 5),
                    encoder_hidden_states_t5=torch.randn(2, 6, 32, generator=g),
                    text_embedding_mask_t5=torch.ones(2, 6),
                    image_meta_size=torch.tensor([[8.0, 8, 8, 8, 0, 0]] * 2), style=torch.zeros(2, dtype=torch.long),
                    return_dict=False)
    elif name == "cogvideox":  # video: (N, frames, C, H, W), text and video tokens in one attention
        model = diffusers.CogVideoXTransformer3DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4,
                                                      out_channels=4, time_embed_dim=16, text_embed_dim=32,
                                                      num_layers=2, sample_width=8, sample_height=8, sample_frames=5,
                                                      patch_size=2, temporal_compression_ratio=4, max_text_seq_length=6)
        call = dict(hidden_states=torch.randn(2, 2, 4, 8, 8, generator=g),
                    encoder_hidden_states=torch.randn(2, 6, 32, generator=g), timestep=torch.tensor([10, 10]),
                    return_dict=False)
    elif name == "latte":  # video: spatial and temporal blocks interleaved
        model = diffusers.LatteTransformer3DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4,
                                                  out_channels=8, num_layers=2, cross_attention_dim=16, sample_size=8,
                                                  patch_size=2, norm_type="ada_norm_single", caption_channels=32,
                                                  video_length=2)
        call = dict(hidden_states=torch.randn(2, 4, 2, 8, 8, generator=g), timestep=torch.tensor([10, 10]),
                    encoder_hidden_states=torch.randn(2, 5, 32, generator=g), return_dict=False)
    else:
        raise KeyError(name)
    return model.eval(), call
