"""Train gocopt's second reference model, a latent DiT, on scikit-learn's digits, from a seed, on CPU.

    python examples/train_latent.py      # writes gocopt/models/weights/latent_{autoencoder,dit}.safetensors

Two stages, like DiT-XL/2 on SD's VAE: an autoencoder (gocopt/models/autoencoder.py) learns to map
digits upsampled to 32×32 to 4×8×8 latents and back (MSE, a small L2 pull on the latents), its latents
are scaled to unit variance, and a DiT (``DiT-Latent``) is trained on them exactly as the first
reference model is on pixels (examples/train_reference.py: epsilon prediction, EMA, 10% label
dropout). The autoencoder never sees a diffusion loss, the DiT never sees pixels.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from safetensors.torch import save_model
from tqdm import tqdm

from examples.train_reference import train_dit
from gocopt.data import load_digits_images
from gocopt.models.autoencoder import Autoencoder, upsample_digits
from gocopt.models.dit import DIT_CONFIGS, DiT

LATENT_L2 = 1e-4  # pulls latents toward 0 so their scale, not their spread, is what the encoder learns


def train_autoencoder(pixels: torch.Tensor, *, steps: int, batch_size: int, lr: float) -> Autoencoder:
    """An autoencoder fitted to ``pixels``, with ``scale`` set so the training latents have unit variance."""
    autoencoder = Autoencoder().train()
    optimizer = torch.optim.AdamW(autoencoder.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    bar = tqdm(range(steps), desc="train autoencoder")
    for step in bar:
        x = pixels[torch.randint(0, pixels.shape[0], (batch_size,))]
        z = autoencoder.encoder(x)
        loss = F.mse_loss(autoencoder.decode(z), x) + LATENT_L2 * z.pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.5f}")
    autoencoder.eval()
    with torch.no_grad():
        autoencoder.scale.fill_(1.0 / float(autoencoder.encoder(pixels).std()))
    return autoencoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--autoencoder-steps", type=int, default=3000)
    parser.add_argument("--dit-steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--autoencoder-lr", type=float, default=2e-3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="gocopt/models/weights/latent",
                        help="prefix: writes PREFIX_autoencoder.safetensors and PREFIX_dit.safetensors")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    images, labels = load_digits_images()
    pixels = upsample_digits(images)
    start = time.time()
    autoencoder = train_autoencoder(pixels, steps=args.autoencoder_steps, batch_size=args.batch_size,
                                    lr=args.autoencoder_lr)
    with torch.no_grad():
        latents = autoencoder.encode(pixels)
        error = F.mse_loss(autoencoder.decode(latents), pixels).item()
    print(f"autoencoder: reconstruction MSE {error:.5f} ([-1, 1] pixels), latent scale {float(autoencoder.scale):.4f}")
    ema = train_dit(DiT(DIT_CONFIGS["DiT-Latent"]), latents, labels, steps=args.dit_steps,
                    batch_size=args.batch_size, lr=args.lr, warmup=args.warmup, ema_decay=args.ema)
    metadata = {"trained_by": "examples/train_latent.py", "args": json.dumps(vars(args), sort_keys=True),
                "seconds": f"{time.time() - start:.0f}", "reconstruction_mse": f"{error:.6f}"}
    save_model(autoencoder, f"{args.out}_autoencoder.safetensors", metadata=metadata)
    save_model(ema, f"{args.out}_dit.safetensors", metadata={**metadata, "config": "DiT-Latent"})
    print(f"saved {args.out}_autoencoder.safetensors and {args.out}_dit.safetensors after {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
