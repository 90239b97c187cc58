"""Time to the first image under torch.compile: gocopt's step graphs next to the uncached model.

    python -m benchmarks.compile_time                        # CPU: reference model, the DDIM-50 schedules
    python -m benchmarks.compile_time --device cuda --mode reduce-overhead   # on a GPU (CUDA graphs)

Every row runs in a fresh process with an empty inductor cache (nothing one row compiled helps
another), one row after the other: load, ``torch.compile`` (the uncached model) or
``CachedModel.compile_graphs()`` (every distinct step graph, ``fullgraph``), then the first sampling run —
*time to first image*, compilation included — then ``--rounds`` more runs, of which the best is the
steady-state time. Ratios are against the uncached compiled model of the same run.

A second table measures what few graphs save the search itself (eager, in this process):
``set_schedule`` of 40 random search candidates (DDIM-50, budget 0.35, path + fitted spans on
synthetic statistics), with the graph limit and without it — the seconds spent making step graphs
and how many were made (graphs of one shape are shared between candidates).
Writes ``docs/benchmarks/compile_time.{json,md}``.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import optuna
import torch

from benchmarks.fresh_process import run_row
from benchmarks.threads import bench_threads
from gocopt.atomic import atomic_write_text
from gocopt.report import environment, markdown_table, write_json

SCHEDULES = ("reference_ddim50_b0.25", "reference_ddim50_b0.35", "reference_ddim50_b0.50", "reference_ddim50_b0.75")


def row(schedule: str | None, device: str, mode: str | None, rounds: int, images: int) -> dict:
    """One row, measured in this process (run by :func:`in_fresh_process`)."""
    import gocopt
    from gocopt.models import reference
    from gocopt.sampling import DDIMSampler, initial_noise
    from gocopt.schedule.io import load_schedule
    from gocopt.timing import timed

    torch.set_num_threads(bench_threads())
    model = reference().to(device).eval()
    steps = load_schedule(f"schedules/{schedule}.json").steps if schedule else 50
    sampler = DDIMSampler(steps=steps, guidance_scale=4.0, clip_denoised=True)
    labels = torch.arange(images, device=device) % 10
    noise = initial_noise(range(images), (1, 8, 8), device)
    graphs = 1
    started = time.perf_counter()
    if schedule is None:
        runner = torch.compile(model, mode=mode)
    else:
        runner = gocopt.load(model, f"schedules/{schedule}.json", sampler=sampler).compile_graphs(mode=mode)
        graphs = len(runner.runtime.plan.plans)
    setup = time.perf_counter() - started  # load, trace, plan: torch.compile itself compiles on the first run
    with torch.no_grad():
        _, first = timed(lambda: sampler.sample(runner, labels, noise, num_classes=10), device)
        steady = min(timed(lambda: sampler.sample(runner, labels, noise, num_classes=10), device)[1]
                     for _ in range(rounds))
        eager_runner = model if schedule is None else gocopt.load(model, f"schedules/{schedule}.json", sampler=sampler)
        eager = min(timed(lambda: sampler.sample(eager_runner, labels, noise, num_classes=10), device)[1]
                    for _ in range(rounds))
    return {"schedule": schedule or "uncached", "graphs": graphs, "setup_s": setup, "first_image_s": first,
            "steady_s": steady, "eager_s": eager}


def in_fresh_process(schedule: str | None, args) -> dict:
    with tempfile.TemporaryDirectory() as cache:  # an empty inductor cache: every row compiles from scratch
        return run_row("benchmarks.compile_time", "row", schedule, args.device, args.mode, args.rounds, args.images,
                       env={"TORCHINDUCTOR_CACHE_DIR": cache, "TORCHINDUCTOR_FX_GRAPH_CACHE": "0",
                            "GOCOPT_BENCH_THREADS": str(args.threads)})


def search_graphs(trials: int = 40, steps: int = 50, budget: float = 0.35) -> list[dict]:
    """Eager set_schedule of random search candidates, with and without the graph limit."""
    from benchmarks.kept_memory import synthetic_context
    from gocopt.compiled import cache_model
    from gocopt.models import reference
    from gocopt.sampling import DDIMSampler
    from gocopt.schedule import Schedule
    from gocopt.search import build_mask, suggest
    from gocopt.search.space import build_predictor

    timesteps = tuple(DDIMSampler(steps=steps).timesteps)
    out = []
    for limit in (6, None):
        compiled = cache_model(reference())
        ctx = synthetic_context(compiled, steps, budget, max_graphs=limit)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        seconds, graphs, made = 0.0, [], 0
        for _ in range(trials):
            candidate = suggest(study.ask())
            mask = build_mask(candidate, ctx, budget)
            schedule = Schedule(mask, tuple(compiled.sites["site"]), timesteps, build_predictor(candidate, ctx, mask))
            before = len(compiled._specialized)
            started = time.perf_counter()
            compiled.set_schedule(schedule, log=False)
            seconds += time.perf_counter() - started
            made += len(compiled._specialized) - before
            graphs.append(len(compiled.runtime.plan.plans))
        out.append({"max_graphs": limit if limit is not None else "none", "candidates": trials,
                    "mean_graphs": sum(graphs) / trials, "max_graphs_seen": max(graphs),
                    "graphs_made": made, "set_schedule_s": seconds})
    base = out[-1]["set_schedule_s"]
    for r in out:
        r["vs_unlimited"] = r["set_schedule_s"] / base
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mode", default=None, help="torch.compile mode (reduce-overhead: CUDA graphs)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--threads", type=int, default=bench_threads())
    parser.add_argument("--out", default="docs/benchmarks/compile_time")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = [in_fresh_process(None, args)] + [in_fresh_process(s, args) for s in SCHEDULES]
    base = rows[0]
    for r in rows:
        r["first_image_vs_uncached"] = r["first_image_s"] / base["first_image_s"]
        r["steady_vs_uncached_compiled"] = base["steady_s"] / r["steady_s"]
    torch.set_num_threads(args.threads)
    search = search_graphs()
    env = environment()
    settings = {"device": args.device, "mode": args.mode, "rounds": args.rounds, "images": args.images,
                "threads": args.threads, "model": "reference", "steps": 50}
    write_json(f"{args.out}.json", {"rows": rows, "search": search, "settings": settings, "environment": env})
    text = (f"# Time to first image under torch.compile: reference model, DDIM-50, {args.images} images with CFG\n\n"
            f"Device {env['device']}, torch {env['torch']}, mode {args.mode!r}, inductor, {args.threads} threads. "
            "Each row in a fresh process with an empty inductor cache, rows one after the other "
            "(`python -m benchmarks.compile_time`). *first image*: the first sampling run after compile, "
            "compilation included; *steady*: best of "
            f"{args.rounds} runs after it; *vs uncached*: first-image time over the uncached model's, and the "
            "uncached compiled model's steady time over this row's.\n\n"
            + markdown_table(rows, [("schedule", "schedule", ""), ("graphs", "graphs", ""),
                                    ("first_image_s", "first image s", ".1f"),
                                    ("first_image_vs_uncached", "first image vs uncached", ".2f"),
                                    ("steady_s", "steady s", ".4f"),
                                    ("steady_vs_uncached_compiled", "speedup vs uncached compiled", ".2f"),
                                    ("eager_s", "eager s", ".4f")])
            + "\n\n## What few graphs save the search (eager set_schedule, 40 random candidates, DDIM-50, 0.35)\n\n"
            + markdown_table(search, [("max_graphs", "graph limit", ""), ("mean_graphs", "graphs per candidate", ".1f"),
                                      ("max_graphs_seen", "most", ""), ("graphs_made", "graphs made", ""),
                                      ("set_schedule_s", "seconds", ".2f"), ("vs_unlimited", "vs no limit", ".2f")]))
    atomic_write_text(f"{args.out}.md", text)
    print(text)


if __name__ == "__main__":
    main()
