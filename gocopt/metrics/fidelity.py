"""Per-sample fidelity of a cached sample to the uncached sample with the same seed.

Images are in [-1, 1] (data range 2). Each function returns one value per sample, shape ``(N,)``,
so callers can average, pair or bootstrap them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PSNR_CAP_DB = 100.0  # identical images have infinite PSNR; cap so means stay finite


def psnr(samples: torch.Tensor, reference: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Per-sample PSNR in dB, capped at ``PSNR_CAP_DB`` for identical images; NaN where either
    image holds a non-finite value (never a perfect score for a sample that went NaN)."""
    mse = (samples.double() - reference.double()).pow(2).flatten(1).mean(1)
    value = 10 * torch.log10(data_range**2 / mse)
    return value.clamp(max=PSNR_CAP_DB)


def relative_l2(samples: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    diff = (samples.double() - reference.double()).flatten(1).norm(dim=1)
    return diff / reference.double().flatten(1).norm(dim=1).clamp_min(1e-12)


def paired_fidelity(samples: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """The paired metrics every report uses: mean PSNR (with its standard error), SSIM, rel. L2."""
    if reference.shape != samples.shape:
        raise ValueError(f"reference shape {tuple(reference.shape)} != samples shape {tuple(samples.shape)}")
    per_sample = psnr(samples, reference)
    return {
        "psnr_vs_uncached": float(per_sample.mean()),
        "psnr_vs_uncached_stderr": float(per_sample.std() / len(per_sample) ** 0.5),
        "ssim_vs_uncached": float(ssim(samples, reference).mean()) if _is_image(samples) else float("nan"),
        "rel_l2_vs_uncached": float(relative_l2(samples, reference).mean()),
    }


def _is_image(x: torch.Tensor, window: int = 5) -> bool:
    """SSIM needs (N, C, H, W) with room for its window (packed latents, e.g. Flux's, are not)."""
    return x.dim() == 4 and min(x.shape[-2:]) >= window


def ssim(samples: torch.Tensor, reference: torch.Tensor, data_range: float = 2.0,
         window: int = 5, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian-window SSIM (Wang et al. 2004), with a 5×5 window because images are 8×8."""
    x, y = samples.double(), reference.double()
    channels = x.shape[1]
    coords = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(channels, 1, window, window).to(x.device)

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, kernel, groups=channels)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(1)
