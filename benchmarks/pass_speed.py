"""Wall-clock cost of the rewrite: uncached vs compiled, same process, same inputs.

    python -m benchmarks.pass_speed --model DiT-XL/2 --batch 1 --steps 20 --budgets 1.0,0.5

DiT-shaped model with random weights (adaLN randomised), DDIM with batched CFG (a model batch
of 2 × --batch), CPU threads as set by --threads. For each budget the compiled model runs
FORA's schedule at the budget (``interval_at_budget``: interval-K where the budget is 1/K)
(budget 1.0: the all-compute schedule); runs are
interleaved over --repeats rounds and each configuration's fastest round is reported, as a
ratio to the uncached run measured beside it. Writes docs/benchmarks/pass_speed_<model>.{json,md}.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.speed_table import measure
from benchmarks.threads import bench_threads
from gocopt.atomic import atomic_write_text
from gocopt.compiled import cache_model
from gocopt.models import model_by_name
from gocopt.report import environment, markdown_table, write_json
from gocopt.sampling import DDIMSampler
from gocopt.schedule import Schedule
from gocopt.schedule.named import interval_at_budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="DiT-XL/2")
    parser.add_argument("--batch", type=int, default=1, help="images per run (the model sees 2× with CFG)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--budgets", default="1.0,0.5")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=bench_threads())
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = model_by_name(args.model)
    compiled = cache_model(model)
    sampler = DDIMSampler(steps=args.steps, guidance_scale=4.0, clip_denoised=False)
    ids = tuple(compiled.sites["site"])
    schedules = {}
    for budget in (float(b) for b in args.budgets.split(",")):  # FORA at the budget (all-compute at 1.0)
        schedules[budget] = Schedule(interval_at_budget(args.steps, len(ids), budget), ids, tuple(sampler.timesteps),
                                     name=f"fora@{budget:g}")
    measured = measure(model, compiled, {f"{b:g}": s for b, s in schedules.items()}, batch=args.batch,
                       steps=args.steps, rounds=args.repeats)
    best = {"uncached": measured["uncached"]["seconds"], **{b: measured[f"{b:g}"]["seconds"] for b in schedules}}
    peak_cache = {b: measured[f"{b:g}"]["cache_mib"] * 2**20 for b in schedules}
    rows = [{"config": "uncached", "cost": 1.0, "seconds": best["uncached"], "speedup": 1.0, "ideal": 1.0}]
    for budget, schedule in schedules.items():
        cost = schedule.cost(compiled.site_flops)
        rows.append({"config": "all-compute" if budget >= 1.0 else schedule.name, "cost": cost, "seconds": best[budget],
                     "speedup": best["uncached"] / best[budget], "ideal": 1 / cost,
                     "ratio_to_ideal": (best["uncached"] / best[budget]) * cost,
                     "cache_mib": peak_cache[budget] / 2**20})
    name = args.out or f"docs/benchmarks/pass_speed_{args.model.replace('/', '_')}"
    meta = {"model": args.model, "batch_images": args.batch, "steps": args.steps, "repeats": args.repeats,
            "site_gflops_per_call": sum(compiled.site_flops) / 1e9, "coverage": compiled.sites.attrs["coverage"],
            "environment": environment()}
    write_json(f"{name}.json", {"rows": rows, **meta})
    table = markdown_table(rows, [("config", "run", ""), ("cost", "site-FLOP cost", ".3f"),
                                  ("seconds", "seconds", ".2f"), ("speedup", "speedup", ".3f"),
                                  ("ideal", "ideal 1/cost", ".2f"),
                                  ("ratio_to_ideal", "speedup / ideal", ".3f"), ("cache_mib", "cache MiB", ".1f")])
    text = (f"# Pass speed: {args.model}, {args.batch} image(s) with batched CFG, {args.steps} DDIM steps, "
            f"{args.threads} CPU threads\n\nBest of {args.repeats} interleaved rounds; sites cover "
            f"{100 * meta['coverage']:.1f}% of block FLOPs.\n\n{table}")
    atomic_write_text(f"{name}.md", text)
    print(text)


if __name__ == "__main__":
    main()
