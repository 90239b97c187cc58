"""What each predictor costs over plain reuse at the same schedule.

    python -m benchmarks.predictor_overhead --model DiT-B/2 --steps 20 --repeats 5

Same compiled model, same interval-2 schedule, same inputs; only how a reused value is made
differs: plain reuse (a copy of the last value), GOC (one ``lerp``), Taylor order 1 and 2 and a
predictor fitted on this model's calibration run with K = 3 (the shipped schedules' kind): K
fused multiply-adds over the last K computed values. Runs are interleaved and each row's fastest
round is compared. Writes docs/benchmarks/predictor_overhead.{json,md}.
"""

from __future__ import annotations

import argparse

import torch
from tqdm import tqdm

from benchmarks.threads import bench_threads
from gocopt.atomic import atomic_write_text
from gocopt.calibrate import calibrate
from gocopt.compiled import cache_model
from gocopt.models import model_by_name
from gocopt.report import environment, markdown_table, write_json
from gocopt.sampling import DDIMSampler, initial_noise
from gocopt.schedule import GOCConfig, named_schedule
from gocopt.schedule.fit import fit_predictor
from gocopt.schedule.predictors import Taylor
from gocopt.timing import timed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="DiT-B/2")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=bench_threads())
    parser.add_argument("--out", default="docs/benchmarks/predictor_overhead")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    model = model_by_name(args.model)
    compiled = cache_model(model)
    sampler = DDIMSampler(steps=args.steps, guidance_scale=4.0, clip_denoised=False)
    ids = tuple(compiled.sites["site"])
    noise = initial_noise(range(args.batch), (model.in_channels, model.input_size, model.input_size))
    labels = torch.arange(args.batch) % model.num_classes
    plain = named_schedule("interval:2", ids, steps=args.steps, timesteps=sampler.timesteps)
    gram = calibrate(compiled, sampler, labels, noise, num_classes=model.num_classes).gram
    predictors = {"GOC (w=0.8)": GOCConfig.at_steps(0.8, range(2, args.steps)),
                  "Taylor order 1": Taylor(1), "Taylor order 2": Taylor(2),
                  "fitted, K = 3": fit_predictor(plain.mask, gram, 3)}
    schedules = {"plain reuse": plain} | {name: plain.replace(predictor=p) for name, p in predictors.items()}
    best = dict.fromkeys(schedules, float("inf"))
    predicted = {}
    for round_ in tqdm(range(args.repeats + 1), desc="rounds"):  # round 0 is a warm-up, not counted
        for name, schedule in schedules.items():
            compiled.set_schedule(schedule)
            _, elapsed = timed(lambda: sampler.sample(compiled, labels, noise, num_classes=model.num_classes))
            predicted[name] = compiled.runtime.last_run.corrected
            if round_ > 0:
                best[name] = min(best[name], elapsed)
    base = best["plain reuse"]
    rows = [{"reuse": name, "seconds": best[name], "overhead": best[name] / base - 1,
             "predicted_site_calls": predicted[name]}
            for name in schedules]
    write_json(f"{args.out}.json", {"rows": rows, "model": args.model, "steps": args.steps, "batch_images": args.batch,
                                    "repeats": args.repeats, "environment": environment()})
    text = (f"# Predictor overhead: {args.model}, interval:2, {args.steps} DDIM steps, {args.batch} image(s) "
            f"with CFG, {args.threads} CPU threads\n\nFastest of {args.repeats} interleaved rounds; predicted site "
            "calls: reused calls whose value is a forecast rather than a copy.\n\n"
            + markdown_table(rows, [("reuse", "reuse", ""), ("seconds", "seconds", ".3f"),
                                    ("overhead", "overhead", "+.2%"),
                                    ("predicted_site_calls", "predicted site calls", "")]))
    atomic_write_text(f"{args.out}.md", text)
    print(text)


if __name__ == "__main__":
    main()
