"""The seed paper's experiment at small scale: plain reuse vs GOC at interval schedules.

    python examples/goc_experiment.py --n 1000 --steps 20

Reference model, DDIM, 1000 samples; one uncached run is the reference of every row (same seeds,
same process). Rows: interval-2 and interval-3 with plain reuse, with GOC at the paper's hand-set
values (w = 1.2, correction at every reused step from 2 on except the inflection step 17 — for
interval 2 that is the paper's {3, 5, …, 15, 19}), and a sweep of w. Writes
docs/goc_experiment.{json,md}.
"""

from __future__ import annotations

import argparse

from gocopt.atomic import atomic_write_text
from gocopt.compiled import cache_model
from gocopt.evaluate import SampleSet, compare, sample_batches
from gocopt.metrics import QualityEvaluator
from gocopt.models import REFERENCE_GUIDANCE_SCALE, reference
from gocopt.report import environment, markdown_table, write_json
from gocopt.sampling import DDIMSampler
from gocopt.schedule import GOCConfig, named_schedule
from gocopt.schedule.named import paper_goc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7, help="seed set (held out from everything else)")
    parser.add_argument("--sweep", default="0.2,0.4,0.6,0.8,1.0")
    parser.add_argument("--out", default="docs/goc_experiment")
    args = parser.parse_args()

    model, evaluator = reference(), QualityEvaluator()
    compiled = cache_model(model)
    sampler = DDIMSampler(steps=args.steps, guidance_scale=REFERENCE_GUIDANCE_SCALE)
    samples = SampleSet.make(args.n, args.seed, model.num_classes)
    uncached = sample_batches(model, sampler, samples, shape=(1, 8, 8), num_classes=10, desc="uncached")
    rows = [{"schedule": "uncached", "correction": "—", "cost": 1.0, "seconds": uncached[1], "speedup": 1.0,
             **evaluator.score(uncached[0], samples.labels)}]
    paper_steps = paper_goc(args.steps).correction_steps
    ids = tuple(compiled.sites["site"])
    for k in (2, 3):
        configs = [("plain", GOCConfig()), ("GOC, paper (w=1.2)", paper_goc(args.steps))]
        configs += [(f"GOC, w={w}", GOCConfig.at_steps(float(w), paper_steps)) for w in args.sweep.split(",")]
        for label, goc in configs:
            schedule = named_schedule(f"interval:{k}", ids, steps=args.steps, timesteps=sampler.timesteps,
                                      predictor=goc)
            compiled.set_schedule(schedule)
            result = compare(compiled, sampler, samples, evaluator=evaluator, reference=uncached)
            rows.append({"schedule": f"interval:{k}", "correction": label, **result})
            print(rows[-1]["schedule"], label, f"{result['psnr_vs_uncached']:.2f} dB",
                  f"FD {result['fd_vs_uncached']:.4f}")
    columns = [("schedule", "schedule", ""), ("correction", "reuse", ""), ("cost", "cost", ".3f"),
               ("psnr_vs_uncached", "PSNR vs uncached (dB)", ".2f"), ("psnr_vs_uncached_stderr", "± s.e.", ".2f"),
               ("ssim_vs_uncached", "SSIM", ".4f"), ("fd_vs_uncached", "FD vs uncached", ".4f"),
               ("fid", "FID", ".2f"), ("is", "IS", ".2f"), ("class_accuracy", "accuracy", ".3f"),
               ("seconds", "seconds", ".1f"), ("speedup", "speedup", ".2f")]
    write_json(f"{args.out}.json", {"rows": rows, "n": args.n, "steps": args.steps, "seed_set": args.seed,
                                    "guidance_scale": REFERENCE_GUIDANCE_SCALE, "correction_steps": paper_steps,
                                    "environment": environment()})
    text = (f"# GOC vs plain reuse on the reference model (DDIM-{args.steps}, CFG {REFERENCE_GUIDANCE_SCALE}, "
            f"{args.n} samples, seed set {args.seed})\n\nCorrection steps: {paper_steps} (every reused step with a "
            f"full queue, minus the paper's inflection step {round(0.85 * args.steps)}).\n\n"
            + markdown_table(rows, columns))
    atomic_write_text(f"{args.out}.md", text)
    print(text)


if __name__ == "__main__":
    main()
