"""Quality of a shipped DiT, uncached, and the noise of the metrics at this scale.

    python examples/reference_quality.py --n 1000                  # docs/reference_quality.{json,md}
    python examples/reference_quality.py --n 1000 --model latent   # docs/latent_quality.{json,md,png}
    python examples/reference_quality.py --n 1000 --model patch1   # docs/patch1_quality.{json,md,png}

FID / IS / class accuracy at DDIM-20 and DDIM-50, the FID spread of the uncached model over three
seed sets, and FID between two disjoint halves of the real digits (the floor of what FID can
resolve here). The latent model is scored on its decoded pixels, and its autoencoder's round trip
of the real digits is measured too (the floor the latent DiT cannot go below); a grid of decoded
samples is written beside the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from gocopt.atomic import atomic_write_text
from gocopt.data import load_digits_images
from gocopt.evaluate import SampleSet, sample_batches
from gocopt.metrics import frechet_distance
from gocopt.metrics.decoded import evaluator_for
from gocopt.models import CLIPS_DENOISED, REFERENCE_GUIDANCE_SCALE, latent_autoencoder, model_by_name
from gocopt.models.autoencoder import upsample_digits
from gocopt.plots import save_image_grid
from gocopt.report import environment, markdown_table, write_json
from gocopt.sampling import DDIMSampler

TITLES = {"reference": "Reference model (8×8 pixels, x0 clipped)",
          "latent": "Latent model (4×8×8 latents, no x0 clipping; scored on its decoded 32×32 pixels)",
          "patch1": "Third model (8×8 pixels at patch size 1: 64 tokens, 4 blocks; x0 clipped)"}


def autoencoder_round_trip(evaluator, real: torch.Tensor) -> dict[str, float]:
    """How well the latent model's autoencoder reproduces the real digits: the latent DiT's floor."""
    autoencoder = latent_autoencoder()
    with torch.no_grad():
        latents = autoencoder.encode(upsample_digits(real))
        mse = float((autoencoder.decode(latents) - upsample_digits(real)).pow(2).mean())
    return {"reconstruction_mse": mse, "reconstruction_fid": frechet_distance(evaluator.features(latents),
                                                                              evaluator.real_features)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--model", choices=tuple(TITLES), default="reference")
    parser.add_argument("--out", help="output prefix (default docs/MODEL_quality)")
    args = parser.parse_args()
    out = args.out or f"docs/{args.model}_quality"

    model, evaluator = model_by_name(args.model), evaluator_for(args.model)
    assert evaluator is not None  # every shipped model has one
    shape = (model.in_channels, model.input_size, model.input_size)
    rows = []
    for steps, seed in ((20, 0), (20, 1), (20, 2), (50, 0)):
        sampler = DDIMSampler(steps=steps, guidance_scale=REFERENCE_GUIDANCE_SCALE,
                              clip_denoised=CLIPS_DENOISED[args.model])
        samples = SampleSet.make(args.n, seed, model.num_classes)
        images, seconds = sample_batches(model, sampler, samples, shape=shape, num_classes=model.num_classes,
                                         desc=f"ddim{steps}/seed{seed}")
        rows.append({"steps": steps, "seed_set": seed, "n": args.n, "seconds": seconds,
                     **evaluator.score(images, samples.labels)})
        if steps == 20 and seed == 0:
            save_image_grid(evaluator.images(images[:50]), f"{out}.png", labels=samples.labels[:50])
    real, _ = load_digits_images()
    order = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))
    features = evaluator.real_features  # the real digits are pixels for either model's evaluator
    halves = order[: len(real) // 2].numpy(), order[len(real) // 2 :].numpy()
    real_halves_fid = frechet_distance(features[halves[0]], features[halves[1]])
    fids20 = [r["fid"] for r in rows if r["steps"] == 20]
    noise = {"fid_real_half_vs_half": real_halves_fid, "fid_ddim20_seed_sets_mean": float(np.mean(fids20)),
             "fid_ddim20_seed_sets_spread": float(np.max(fids20) - np.min(fids20))}
    if args.model == "latent":
        noise.update(autoencoder_round_trip(evaluator, real))
    write_json(f"{out}.json", {"model": args.model, "rows": rows, "noise": noise,
                               "guidance_scale": REFERENCE_GUIDANCE_SCALE, "environment": environment()})
    table = markdown_table(rows, [("steps", "DDIM steps", ""), ("seed_set", "seed set", ""), ("fid", "FID", ".2f"),
                                  ("is", "IS", ".2f"), ("class_accuracy", "class accuracy", ".3f"),
                                  ("seconds", "seconds", ".1f")])
    text = (f"# {TITLES[args.model]}, uncached ({args.n} samples per row, CFG {REFERENCE_GUIDANCE_SCALE})\n\n"
            f"{table}\nFID between two disjoint halves of the real digits: {real_halves_fid:.2f}. "
            f"Spread of the DDIM-20 FID over three seed sets: {noise['fid_ddim20_seed_sets_spread']:.2f} "
            f"(mean {noise['fid_ddim20_seed_sets_mean']:.2f}).\n")
    if args.model == "latent":
        text += (f"\nThe autoencoder's round trip of the real digits: MSE {noise['reconstruction_mse']:.6f} "
                 f"(pixels in [-1, 1]), FID {noise['reconstruction_fid']:.2f} against the real digits: the "
                 "decoder is not what separates the samples from the data, the latent DiT is.\n")
    text += f"\n![DDIM-20 samples, seed set 0]({Path(out).name}.png)\n"
    atomic_write_text(f"{out}.md", text)
    print(text)


if __name__ == "__main__":
    main()
