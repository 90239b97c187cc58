"""What a loaded schedule keeps between steps, counted, next to the least any runtime could keep.

    python -m benchmarks.kept_memory                       # DiT-XL/2 shapes (256 tokens), DDIM-50, fitted K=3
    python -m benchmarks.kept_memory --model DiT-S/2       # smaller, same rows

The schedule is what gocopt's search builds for the model (globally placed computes, the rest
spent site by site, at most 6 step graphs, coefficients fitted over the last 3 computed values);
its statistics are synthetic (random-walk trajectories), since no weights of the big model are at
hand — memory depends on the mask and predictor shapes, not on the numbers. After every step of
one sampling run it records the bytes the runtime keeps (distinct tensors, ``memory_bytes()``)
and the *floor*: the distinct values (a site's fresh or predicted outputs) that a later step of
the plan still reads. Fixed slots keep a value until it rotates out, so kept ≥ floor; the ratio
says what fixed slots cost over perfect liveness. Also: the coefficient tables, the step graphs,
and the process's peak resident memory before and after the run. No timing; writes
``docs/benchmarks/kept_memory.{json,md}``.
"""

from __future__ import annotations

import argparse
import resource

import numpy as np
import torch

from benchmarks.threads import bench_threads
from gocopt.atomic import atomic_write_text
from gocopt.compiled import cache_model
from gocopt.models import model_by_name
from gocopt.report import environment, write_json
from gocopt.sampling import DDIMSampler, initial_noise
from gocopt.schedule import Schedule
from gocopt.schedule.plan import plan_run
from gocopt.search import Candidate, SpaceContext, build_mask
from gocopt.search.path import measure_edges
from gocopt.search.space import build_predictor


def synthetic_context(compiled, steps: int, budget: float, seed: int = 0, max_graphs: int | None = 6) -> SpaceContext:
    """The search's view of ``compiled`` with synthetic statistics: random reuse errors growing
    toward the end, span errors growing with the span, random-walk trajectories for the fits."""
    rng = np.random.default_rng(seed)
    flops = np.asarray(compiled.site_flops, float)
    sites = len(flops)
    is_mlp = compiled.sites["kind"].eq("mlp").to_numpy()
    error = rng.uniform(0.05, 0.3, (steps, sites)) * np.linspace(0.5, 2.0, steps)[:, None]
    error[0] = np.nan
    edges = measure_edges(lambda row: float(np.sum((np.flatnonzero(~row) / steps) ** 3)), steps,
                          max_gap=max(3, int(2 / budget) + 1))
    walk = rng.standard_normal((sites, steps, 256)).cumsum(axis=1)
    return SpaceContext(steps, flops, compiled.sites["block"].to_numpy(), is_mlp, error, (), np.einsum(
        "isk,itk->ist", walk, walk), edges, max_graphs)


def searched_shape(compiled, steps: int, budget: float, seed: int = 0) -> Schedule:
    """A path + fitted-K=3 schedule as the search builds it, on synthetic statistics."""
    ctx = synthetic_context(compiled, steps, budget, seed)
    candidate = Candidate(family="path", predictor="fitted3", path_share=0.9, alpha=1.0)
    mask = build_mask(candidate, ctx, budget)
    sampler = DDIMSampler(steps=steps)
    return Schedule(mask, tuple(compiled.sites["site"]), tuple(sampler.timesteps),
                    build_predictor(candidate, ctx, mask), f"path+fitted3@{budget:g}", budget=budget)


def floor_values(schedule: Schedule) -> list[int]:
    """After each step: how many distinct site values a later step reads (the least to keep)."""
    actions = schedule.predictor.actions(schedule.mask)
    steps, sites = schedule.mask.shape
    source = np.tile(np.arange(steps)[:, None], (1, sites))  # the step whose value (s, i) uses
    last_read = {}
    for s in range(steps):
        for i in range(sites):
            action = actions[s][i]
            if action is not None and action.terms == ((1, 1.0),):
                source[s, i] = source[s - 1, i]  # plain reuse: the same value
                continue
            for age, _ in action.terms if action is not None else ():
                key = (int(source[s - age, i]), i)
                last_read[key] = max(last_read.get(key, -1), s)
    return [sum(1 for (made, _), read in last_read.items() if made <= s < read) for s in range(steps)]


@torch.no_grad()
def measure(model_name: str, steps: int, budget: float, images: int) -> dict:
    model = model_by_name(model_name).eval()
    compiled = cache_model(model, None, model.example_inputs(2 * images))
    schedule = searched_shape(compiled, steps, budget)
    compiled.set_schedule(schedule, log=False)
    plan = plan_run(schedule)
    sampler = DDIMSampler(steps=steps, guidance_scale=4.0)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    kept: list[int] = []
    value_bytes = [0]

    def model_call(*args, **kwargs):
        out = compiled(*args, **kwargs)
        kept.append(compiled.runtime.memory_bytes())
        values = compiled.runtime.state.kept.get("", ())
        if values and not value_bytes[0]:
            value_bytes[0] = values[0].numel() * values[0].element_size()  # one site output
        return out

    shape = (model.in_channels, model.input_size, model.input_size)
    sampler.sample(model_call, torch.arange(images) % model.num_classes, initial_noise(range(images), shape),
                   num_classes=model.num_classes)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tokens = int(model.pos_embed.shape[1])
    floor = [n * value_bytes[0] for n in floor_values(schedule)]
    # the last step's kept bytes are taken after the run ended (freed): compare steps 0 .. steps-2
    rows = [{"step": s, "kept_bytes": k, "floor_bytes": f} for s, (k, f) in enumerate(zip(kept, floor))]
    return {
        "model": model_name, "steps": steps, "budget": budget, "images": images, "tokens": tokens,
        "sites": len(compiled.sites), "cost": schedule.cost(compiled.site_flops), "graphs": len(plan.plans),
        "slots_per_site": sorted({h.slots for h in plan.plans[0].history}),
        "value_bytes": value_bytes[0], "peak_kept_bytes": max(kept[:-1]), "peak_floor_bytes": max(floor[:-1]),
        "kept_after_run_bytes": compiled.runtime.memory_bytes(),
        "coefficient_bytes": compiled.runtime.coefficients.memory_bytes(),
        "rss_peak_before_run_bytes": rss_before, "rss_peak_after_run_bytes": rss_after, "per_step": rows,
    }


def write(result: dict, out: str) -> str:
    write_json(f"{out}.json", {**result, "environment": environment()})
    gib = 2**30
    text = (
        f"# Kept values of a loaded schedule: {result['model']} ({result['tokens']} tokens, {result['sites']} sites), "
        f"DDIM-{result['steps']}, budget {result['budget']:g}, {result['images']} image(s) with CFG\n\n"
        "Counted, not timed (`python -m benchmarks.kept_memory`). The schedule is the search's path + fitted K=3 "
        f"shape on synthetic statistics; realised cost {result['cost']:.3f}, {result['graphs']} step graphs, "
        f"history slots per site {result['slots_per_site']}. *Floor*: the distinct site values a later step "
        "still reads — what perfect liveness would keep.\n\n"
        "| | bytes | GiB | in site values |\n|---|---|---|---|\n"
        f"| peak kept between steps | {result['peak_kept_bytes']:,} | {result['peak_kept_bytes'] / gib:.3f} | "
        f"{result['peak_kept_bytes'] / result['value_bytes']:.0f} |\n"
        f"| peak floor (what the predictor reads) | {result['peak_floor_bytes']:,} | "
        f"{result['peak_floor_bytes'] / gib:.3f} | {result['peak_floor_bytes'] / result['value_bytes']:.0f} |\n"
        f"| kept after the run | {result['kept_after_run_bytes']:,} | | |\n"
        f"| coefficient tables (all steps) | {result['coefficient_bytes']:,} | | |\n"
        f"| process peak RSS before → after the run | {result['rss_peak_before_run_bytes']:,} → "
        f"{result['rss_peak_after_run_bytes']:,} | {result['rss_peak_before_run_bytes'] / gib:.2f} → "
        f"{result['rss_peak_after_run_bytes'] / gib:.2f} | |\n"
    )
    atomic_write_text(f"{out}.md", text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="DiT-XL/2")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--budget", type=float, default=0.25)
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--out", default="docs/benchmarks/kept_memory")
    args = parser.parse_args(argv)
    torch.set_num_threads(bench_threads())
    print(write(measure(args.model, args.steps, args.budget, args.images), args.out))


if __name__ == "__main__":
    main()
