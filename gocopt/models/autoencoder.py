"""A small convolutional autoencoder: the latent space of gocopt's second reference model.

DiT-XL/2, PixArt and SD3 do not denoise pixels: they denoise the latents of a pretrained
autoencoder (SD's VAE: 8× smaller per side, 4 channels, scaled to unit variance), and they sample
without clipping the predicted clean latent, whose range is not known. The reference DiT denoises
8×8 pixels and clips, so every design choice tuned on it was tuned in a setting our users do not
have. This autoencoder gives the second reference model that setting at digits scale: a digit
upsampled to 32×32 pixels ↔ a 4×8×8 latent (4× smaller per side), scaled by ``scale`` to unit
variance over the training set, as SD scales by 0.18215.

No KL term and no discriminator: the latents only have to decode well and be smooth enough to
denoise, and a small L2 pull on them (in the training script) keeps them compact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LATENT_IMAGE_SIZE = 32  # the pixel size the autoencoder works at: 8×8 digits, upsampled


@dataclass(frozen=True)
class AutoencoderConfig:
    """Widths of the autoencoder; the latent is ``latent_channels × (32 / 4) × (32 / 4)``."""

    channels: int = 64
    latent_channels: int = 4


def _down(c_in: int, c_out: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.GroupNorm(8, c_out), nn.SiLU())


def _up(c_in: int, c_out: int) -> nn.Module:
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.GroupNorm(8, c_out), nn.SiLU())


class Autoencoder(nn.Module):
    """Pixels ``(N, 1, 32, 32)`` in [-1, 1] ↔ unit-variance latents ``(N, 4, 8, 8)``."""

    scale: torch.Tensor

    def __init__(self, config: AutoencoderConfig = AutoencoderConfig()) -> None:
        super().__init__()
        c, z = config.channels, config.latent_channels
        self.config = config
        self.encoder = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.SiLU(), _down(c, c), _down(c, 2 * c),
                                     nn.Conv2d(2 * c, z, 1))
        self.decoder = nn.Sequential(nn.Conv2d(z, 2 * c, 3, padding=1), nn.SiLU(), _up(2 * c, c), _up(c, c),
                                     nn.Conv2d(c, 1, 3, padding=1))
        self.register_buffer("scale", torch.ones(()))  # set after training: latents · scale have unit variance

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.encoder(pixels) * self.scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.decoder(latents / self.scale))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(pixels))


def upsample_digits(images: torch.Tensor) -> torch.Tensor:
    """8×8 digits ``(N, 1, 8, 8)`` → ``(N, 1, 32, 32)`` (bilinear): the pixels the autoencoder sees."""
    return F.interpolate(images, size=(LATENT_IMAGE_SIZE, LATENT_IMAGE_SIZE), mode="bilinear", align_corners=False)


def downsample_to_digits(pixels: torch.Tensor) -> torch.Tensor:
    """``(N, 1, 32, 32)`` → ``(N, 1, 8, 8)``: the least-squares inverse of :func:`upsample_digits`.

    Exact on upsampled digits (area or bilinear resizing would blur them, and the digits classifier
    would see a domain shift instead of the sample), the closest 8×8 digit for anything else.
    """
    basis = torch.eye(8, dtype=torch.float64)[:, None, :, None].expand(8, 1, 8, 1)
    up = F.interpolate(basis, size=(LATENT_IMAGE_SIZE, 1), mode="bilinear", align_corners=False)  # (8, 1, 32, 1)
    inverse = torch.linalg.pinv(up[:, 0, :, 0].T).to(pixels)  # (8, 32): the 1-D upsampling's left inverse
    return inverse @ pixels @ inverse.T


__all__ = ["LATENT_IMAGE_SIZE", "Autoencoder", "AutoencoderConfig", "downsample_to_digits", "upsample_digits"]
