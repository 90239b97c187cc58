"""Speed where DiT users run: eager and compiled, uncached and cached, every row in one run.

    python -m benchmarks.gpu_speed              # on a GPU: DiT-XL/2, bf16 and fp32, 1 / 8 / 32 images
    python -m benchmarks.gpu_speed              # on CPU: DiT-S/2, fp32, 1 image (same rows, smaller)
    python -m benchmarks.gpu_speed --quick      # CI size: the tiny DiT, aot_eager

Rows per (dtype, images): the uncached model eagerly and under ``torch.compile`` (mode
``reduce-overhead``, i.e. CUDA graphs, on a GPU; inductor's default on CPU), then gocopt eager and
gocopt compiled (:meth:`~gocopt.compiled.CachedModel.compile`, one graph per distinct step shape) at
all-compute and at budgets 0.75 / 0.5 / 0.25, for two schedule shapes: ``interval`` — FORA's mask
at the budget with GOC at every step from 2 (what gocopt first compiled to on the reference model)
— and ``fitted`` — the search's globally placed computes plus site-by-site fill under the graph
limit, with a fitted K=3 forecast (synthetic statistics: the shape, not the numbers, sets the
speed). Both include their predictor's cost; every row's realised cost is recorded, ≤ its budget;
``graphs`` is the number of step graphs the row compiles.

DiT-XL/2 with random weights (adaLN re-initialised, so no gate is zero), DDIM-20, CFG batched
(model batch = 2 × images). Rounds are interleaved (every row once, then again) after one warm-up
round that also compiles; each timing is synchronised. Speedups are against the uncached eager
and the uncached compiled model of the same run. Writes ``docs/benchmarks/gpu_speed.{json,md}``.
"""

from __future__ import annotations

import argparse
import functools
import logging
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from benchmarks.kept_memory import searched_shape
from benchmarks.speed_table import gocopt_shaped
from benchmarks.threads import bench_threads
from gocopt.atomic import atomic_write_text
from gocopt.compiled import cache_model
from gocopt.models import model_by_name
from gocopt.report import environment, markdown_table, write_json
from gocopt.sampling import DDIMSampler, initial_noise
from gocopt.schedule.plan import plan_run
from gocopt.timing import summary, timed

BUDGETS = (1.0, 0.75, 0.5, 0.25)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def random_dit(name: str, dtype: torch.dtype, device: torch.device, seed: int = 0) -> nn.Module:
    """A named DiT with random weights. ``model_by_name`` already gives the adaLN layers random weights
    (DiT zero-inits them); here their biases are random too, from a seeded generator, so no gate
    sits near zero and reuse really changes the stream."""
    model = model_by_name(name, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "adaLN_modulation"):
                linear = module.adaLN_modulation[-1]
                linear.weight.copy_(torch.randn(linear.weight.shape, generator=g) * 0.02)
                linear.bias.copy_(torch.randn(linear.bias.shape, generator=g) * 0.02)
    return model.to(device=device, dtype=dtype).eval()


def speed_rows(model_name: str, dtypes: list[str], images: list[int], *, steps: int = 20, rounds: int = 5,
               budgets: tuple[float, ...] = BUDGETS, compile_mode: str | None = None, backend: str = "inductor",
               device: torch.device | None = None, progress: bool = True,
               shapes: tuple[str, ...] = ("interval", "fitted")) -> list[dict]:
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sampler = DDIMSampler(steps=steps, guidance_scale=4.0, clip_denoised=False)
    rows = []
    for dtype_name in dtypes:
        dtype = DTYPES[dtype_name]
        model = random_dit(model_name, dtype, device)
        shape, num_classes = (model.in_channels, model.input_size, model.input_size), model.num_classes
        example = model.example_inputs(2)  # on the model's device, in its dtype
        eager = cache_model(model, None, example)
        compiled = cache_model(model, None, example).compile_graphs(mode=compile_mode, backend=backend)
        schedules = {("interval", b): gocopt_shaped(eager, steps, b, sampler.timesteps) for b in budgets}
        schedules |= {("fitted", b): searched_shape(eager, steps, b) for b in budgets if b < 1.0 and "fitted" in shapes}
        over = {k: s.cost(eager.site_flops) for k, s in schedules.items() if s.cost(eager.site_flops) > k[1] + 1e-9}
        if over:
            raise ValueError(f"at {steps} steps the interval schedules cost more than their budgets ({over}); "
                             "pick a step count divisible by the intervals (e.g. 8 or 20)")
        uncached_compiled = torch.compile(model, mode=compile_mode, backend=backend)
        runners = {("uncached", "eager", 1.0): (model, None), ("uncached", "compiled", 1.0): (uncached_compiled, None)}
        for (shape_name, budget), schedule in schedules.items():
            runners[(f"gocopt {shape_name}", "eager", budget)] = (eager, schedule)
            runners[(f"gocopt {shape_name}", "compiled", budget)] = (compiled, schedule)
        for n in images:
            noise = initial_noise(range(n), shape, device).to(dtype)
            labels = torch.arange(n, device=device) % model.num_classes
            times: dict[tuple, list[float]] = {key: [] for key in runners}
            with torch.no_grad():
                for round_ in tqdm(range(rounds + 1), desc=f"{model_name} {dtype_name} {n} image(s)",
                                   disable=not progress):
                    for key, (runner, schedule) in runners.items():
                        if schedule is not None:
                            runner.set_schedule(schedule, log=False)
                        run = functools.partial(sampler.sample, runner, labels, noise, num_classes=num_classes)
                        _, seconds = timed(run, device)
                        if round_ > 0:  # round 0 warms up and compiles
                            times[key].append(seconds)
            base_eager = summary(times[("uncached", "eager", 1.0)])["best_s"]
            base_compiled = summary(times[("uncached", "compiled", 1.0)])["best_s"]
            for (method, execution, budget), seconds in times.items():
                stats = summary(seconds)
                schedule = None if method == "uncached" else schedules[method.removeprefix("gocopt "), budget]
                cost = 1.0 if schedule is None else schedule.cost(eager.site_flops)
                graphs = 1 if schedule is None else len(plan_run(schedule).plans)
                rows.append({"model": model_name, "dtype": dtype_name, "images": n, "method": method,
                             "execution": execution, "budget": budget, "cost": cost, "graphs": graphs, **stats,
                             "speedup_vs_uncached_eager": base_eager / stats["best_s"],
                             "speedup_vs_uncached_compiled": base_compiled / stats["best_s"]})
        del model, eager, compiled, uncached_compiled
        torch._dynamo.reset()
    return rows


def write(rows: list[dict], out: str | Path, settings: dict) -> str:
    env = environment()
    write_json(f"{out}.json", {"rows": rows, "settings": settings, "environment": env})
    text = (f"# Speed, eager and compiled: {settings['model']}, DDIM-{settings['steps']}, CFG batched\n\n"
            f"Device: {env['device']}; torch {env['torch']}; compile mode {settings['compile_mode']!r}, backend "
            f"{settings['backend']!r}. Best and median of {settings['rounds']} interleaved rounds after a warm-up "
            "round; every timing synchronised. `vs compiled`: speedup over the uncached model under torch.compile "
            "in the same run — the baseline a user already has.\n\n"
            + markdown_table(rows, [("dtype", "dtype", ""), ("images", "images", ""), ("method", "method", ""),
                                    ("execution", "execution", ""), ("budget", "budget", "g"), ("cost", "cost", ".3f"),
                                    ("graphs", "graphs", ""),
                                    ("best_s", "best s", ".4f"), ("median_s", "median s", ".4f"),
                                    ("speedup_vs_uncached_eager", "vs eager", ".2f"),
                                    ("speedup_vs_uncached_compiled", "vs compiled", ".2f")]))
    atomic_write_text(f"{out}.md", text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cuda = torch.cuda.is_available()
    parser.add_argument("--model", default="DiT-XL/2" if cuda else "DiT-S/2")
    parser.add_argument("--dtypes", default="bf16,fp32" if cuda else "fp32")
    parser.add_argument("--images", default="1,8,32" if cuda else "1,4")
    parser.add_argument("--steps", type=int, default=20, help="sampling steps (50: the DDIM-50 fitted schedules)")
    parser.add_argument("--rounds", type=int, default=5 if cuda else 3)
    parser.add_argument("--compile-mode", default="reduce-overhead" if cuda else None)
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--threads", type=int, default=bench_threads())
    parser.add_argument("--quick", action="store_true", help="CI size: DiT-Tiny, 8 steps, one round, aot_eager")
    parser.add_argument("--out", default="docs/benchmarks/gpu_speed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not cuda:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.model, args.dtypes, args.images, args.steps, args.rounds = "DiT-Tiny", "fp32", "1", 8, 1
        args.backend, args.compile_mode = "aot_eager", None
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 rows as a GPU user runs them
        torch.backends.cudnn.allow_tf32 = True
    settings = {"model": args.model, "steps": args.steps, "rounds": args.rounds, "compile_mode": args.compile_mode,
                "backend": args.backend, "budgets": list(BUDGETS)}
    rows = speed_rows(args.model, args.dtypes.split(","), [int(n) for n in args.images.split(",")], steps=args.steps,
                      rounds=args.rounds, compile_mode=args.compile_mode, backend=args.backend)
    print(write(rows, args.out, settings))


if __name__ == "__main__":
    main()
