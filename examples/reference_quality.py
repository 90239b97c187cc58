"""Quality of the shipped reference DiT, uncached, and the noise of the metrics at this scale.

    python examples/reference_quality.py --n 1000

Writes docs/reference_quality.{json,md}: FID / IS / class accuracy at DDIM-20 and DDIM-50, the
FID spread of the uncached model over three seed sets, and FID between two disjoint halves of
the real digits (the floor of what FID can resolve here).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from gocopt.atomic import atomic_write_text
from gocopt.data import load_digits_images
from gocopt.evaluate import SampleSet, sample_batches
from gocopt.metrics import QualityEvaluator, frechet_distance
from gocopt.models import REFERENCE_GUIDANCE_SCALE, reference
from gocopt.report import environment, markdown_table, write_json
from gocopt.sampling import DDIMSampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--out", default="docs/reference_quality")
    args = parser.parse_args()

    model, evaluator = reference(), QualityEvaluator()
    rows = []
    for steps, seed in ((20, 0), (20, 1), (20, 2), (50, 0)):
        sampler = DDIMSampler(steps=steps, guidance_scale=REFERENCE_GUIDANCE_SCALE)
        samples = SampleSet.make(args.n, seed, model.num_classes)
        images, seconds = sample_batches(model, sampler, samples, shape=(1, 8, 8), num_classes=10,
                                         desc=f"ddim{steps}/seed{seed}")
        rows.append({"steps": steps, "seed_set": seed, "n": args.n, "seconds": seconds,
                     **evaluator.score(images, samples.labels)})
    real, _ = load_digits_images()
    order = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))
    halves = real[order[: len(real) // 2]], real[order[len(real) // 2 :]]
    real_halves_fid = frechet_distance(evaluator.features(halves[0]), evaluator.features(halves[1]))
    fids20 = [r["fid"] for r in rows if r["steps"] == 20]
    noise = {"fid_real_half_vs_half": real_halves_fid, "fid_ddim20_seed_sets_mean": float(np.mean(fids20)),
             "fid_ddim20_seed_sets_spread": float(np.max(fids20) - np.min(fids20))}
    write_json(f"{args.out}.json", {"rows": rows, "noise": noise, "guidance_scale": REFERENCE_GUIDANCE_SCALE,
                                    "environment": environment()})
    table = markdown_table(rows, [("steps", "DDIM steps", ""), ("seed_set", "seed set", ""), ("fid", "FID", ".2f"),
                                  ("is", "IS", ".2f"), ("class_accuracy", "class accuracy", ".3f"),
                                  ("seconds", "seconds", ".1f")])
    text = (f"# Reference model, uncached ({args.n} samples per row, CFG {REFERENCE_GUIDANCE_SCALE})\n\n{table}\n"
            f"FID between two disjoint halves of the real digits: {real_halves_fid:.2f}. "
            f"Spread of the DDIM-20 FID over three seed sets: {noise['fid_ddim20_seed_sets_spread']:.2f} "
            f"(mean {noise['fid_ddim20_seed_sets_mean']:.2f}).\n")
    atomic_write_text(f"{args.out}.md", text)
    print(text)


if __name__ == "__main__":
    main()
