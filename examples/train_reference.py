"""Train gocopt's reference DiT on scikit-learn's 8×8 digits, from a seed, on CPU.

    python examples/train_reference.py --steps 2500 --out gocopt/models/weights/reference_dit.safetensors

Epsilon-prediction MSE, uniform timesteps, AdamW with warm-up and cosine decay, an EMA of the
weights (the EMA is what ships), 10% label dropout so the model learns its unconditional half
for classifier-free guidance. Takes about 11 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time

import torch
import torch.nn.functional as F
from safetensors.torch import save_model
from tqdm import tqdm

from gocopt.data import load_digits_images
from gocopt.models.dit import DIT_CONFIGS, DiT
from gocopt.sampling import GaussianDiffusion


def train_dit(model: DiT, data: torch.Tensor, labels: torch.Tensor, *, steps: int, batch_size: int, lr: float,
              warmup: int, ema_decay: float) -> DiT:
    """The EMA of ``model`` trained ``steps`` steps to predict the noise added to ``data``."""
    model.train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    diffusion = GaussianDiffusion()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return lr * 0.5 * (1 + math.cos(math.pi * progress))

    bar = tqdm(range(steps), desc="train DiT")
    for step in bar:
        idx = torch.randint(0, data.shape[0], (batch_size,))
        x0, y = data[idx], labels[idx]
        t = torch.randint(0, diffusion.num_timesteps, (batch_size,))
        noise = torch.randn_like(x0)
        loss = F.mse_loss(model(diffusion.q_sample(x0, t, noise), t, y), noise)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), model.parameters()):
                p_ema.lerp_(p, 1 - ema_decay)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    return ema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="DiT-Digits")
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="gocopt/models/weights/reference_dit.safetensors")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    images, labels = load_digits_images()  # all 1,797 digits: the generator is scored against them
    start = time.time()
    ema = train_dit(DiT(DIT_CONFIGS[args.config]), images, labels, steps=args.steps, batch_size=args.batch_size,
                    lr=args.lr, warmup=args.warmup, ema_decay=args.ema)
    metadata = {
        "config": args.config,
        "trained_by": "examples/train_reference.py",
        "args": json.dumps(vars(args), sort_keys=True),
        "seconds": f"{time.time() - start:.0f}",
    }
    save_model(ema, args.out, metadata=metadata)
    print(f"saved EMA weights to {args.out} after {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
