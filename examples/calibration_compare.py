"""The calibration picture of the two shipped models side by side, and what gocopt's defaults assume.

    python examples/calibration_compare.py --steps 20

For the reference (pixel, clipped) and the latent (autoencoder latents, unclipped) model, on the same
seeds: the per-step change of the branch outputs and their direction (the inflection rule), and the
span error profile — every reuse span measured end to end on 8 seeds, both with plain reuse and with
the fitted K = 3 forecast the search uses — then where the least-error path puts its computes against
FORA's evenly spaced ones, and whether the default compile's span table (3 seeds, ``lookahead``) places
them where 8 seeds end to end do. Writes docs/calibration/compare_ddim{steps}.{md,json,png}.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from gocopt.atomic import atomic_write_text
from gocopt.calibrate import calibrate, detect_inflections, direction_by_step
from gocopt.compiled import cache_model
from gocopt.driver import sampler_call
from gocopt.evaluate import SampleSet
from gocopt.models import CLIPS_DENOISED, REFERENCE_GUIDANCE_SCALE, model_by_name
from gocopt.models.convention import dit_spec
from gocopt.report import environment, markdown_table, write_json
from gocopt.sampling import DDIMSampler, initial_noise
from gocopt.schedule.named import interval_at_budget
from gocopt.search.effort import Effort
from gocopt.search.path import EdgeTable, best_path
from gocopt.search.spans import SPAN_SEEDS, max_gap_for, measure_spans

MODELS = ("reference", "latent")
BUDGETS = (0.25, 0.5)
CALIBRATION_SAMPLES = 64
SEED_BASE = 10_000  # the calibration reports' seeds (examples/calibration_report.py)


def path_error(table: EdgeTable, path: list[int]) -> float:
    """The table's estimate of a path's end-to-end error: the sum of its spans' errors."""
    ends = [*path, table.steps]
    return float(sum(table.weight(c, d) for c, d in zip(ends, ends[1:])))


def interval_path(steps: int, budget: float) -> list[int]:
    """FORA's compute steps at ``budget``: the rows of its interval mask that compute."""
    return [int(s) for s in np.flatnonzero(interval_at_budget(steps, 1, budget)[:, 0])]


@torch.no_grad()
def model_picture(name: str, steps: int) -> dict:
    model = model_by_name(name)
    spec = dit_spec(model)
    sampler = DDIMSampler(steps=steps, guidance_scale=REFERENCE_GUIDANCE_SCALE, clip_denoised=CLIPS_DENOISED[name])
    compiled = cache_model(model, None, sampler_call(model, sampler, spec))
    samples = SampleSet.make(CALIBRATION_SAMPLES, SEED_BASE, spec.num_classes)
    noise = initial_noise(samples.seeds, spec.latent_shape)
    calibration = calibrate(compiled, sampler, samples.labels, noise, num_classes=spec.num_classes,
                            seeds=samples.seeds)
    flops = np.asarray(compiled.site_flops, dtype=float)
    change = calibration.stats.groupby("step")["rel_change"].median()
    direction = direction_by_step(calibration.stats, flops)
    max_gap = max_gap_for(BUDGETS, steps)

    def spans(seeds: int, method: str, gram) -> tuple[EdgeTable, float]:
        started = time.perf_counter()
        table = measure_spans(compiled, sampler, samples.labels[:seeds], noise[:seeds], calibration.samples[:seeds],
                              max_gap=max_gap, gram=gram, num_classes=spec.num_classes, method=method, progress=True)
        return table, time.perf_counter() - started

    plain, _ = spans(SPAN_SEEDS, "end-to-end", None)
    fitted, seconds = spans(SPAN_SEEDS, "end-to-end", calibration.gram)
    default_effort = Effort()
    default, _ = spans(default_effort.span_seeds, default_effort.span_method, calibration.gram)
    placements = []
    for budget in BUDGETS:
        fora = interval_path(steps, budget)
        computes = len(fora)  # the same number of computes, placed by each
        best, cheap = best_path(fitted, computes), best_path(default, computes)
        placements.append({"budget": budget, "computes": computes, "best_path": best, "fora": fora,
                           "default_path": cheap, "fora_over_best": path_error(fitted, fora) / path_error(fitted, best),
                           "default_over_best": path_error(fitted, cheap) / path_error(fitted, best)})
    gap3 = {c: fitted.error.get((c, c + 3)) for c in range(steps - 2)}
    plain3 = {c: plain.error.get((c, c + 3)) for c in range(steps - 2)}
    return {"model": name, "clip_denoised": CLIPS_DENOISED[name], "steps": steps, "samples": CALIBRATION_SAMPLES,
            "span_seeds": SPAN_SEEDS, "max_gap": max_gap, "end_to_end_seconds": seconds,
            "inflections": detect_inflections(calibration.stats, flops),
            "rel_change": {int(s): float(v) for s, v in change.items() if np.isfinite(v)},
            "direction_cos": {int(s): float(v) for s, v in direction.items()},
            "span3_fitted": {c: e for c, e in gap3.items() if e is not None},
            "span3_plain": {c: e for c, e in plain3.items() if e is not None},
            "placements": placements}


def save_plot(pictures: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for picture in pictures:
        label = picture["model"]
        change = picture["rel_change"]
        axes[0].plot(list(change), list(change.values()), marker="o", label=label)
        direction = picture["direction_cos"]
        axes[1].plot(list(direction), list(direction.values()), marker="o", label=label)
        for key, style in (("span3_fitted", "-"), ("span3_plain", ":")):
            errors = picture[key]
            level = np.median(list(errors.values()))
            axes[2].semilogy(list(errors), [e / level for e in errors.values()], style, marker=".",
                             label=f"{label}, {'fitted K=3' if key == 'span3_fitted' else 'plain reuse'}")
    axes[0].set(title="branch output change per step (median over sites)", xlabel="step", ylabel="relative change")
    axes[1].set(title="direction cosine (inflection rule: < 0.3)", xlabel="step", ylabel="cosine")
    axes[2].set(title="end-to-end error of a 2-step reuse span (c, c+3)\n÷ the model's median",
                xlabel="span start c", ylabel="relative error")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(pictures: list[dict], stem: str) -> str:
    steps = pictures[0]["steps"]
    change_rows = [{"step": s, **{p["model"]: p["rel_change"].get(s) for p in pictures},
                    **{f"{p['model']} cos": p["direction_cos"].get(s) for p in pictures}} for s in range(1, steps)]
    columns = ([("step", "step", "")] + [(p["model"], f"{p['model']}: change", ".4f") for p in pictures]
               + [(f"{p['model']} cos", f"{p['model']}: direction cos", ".3f") for p in pictures])
    placement_rows = [{"model": p["model"], **row, "best_path": str(row["best_path"]), "fora": str(row["fora"]),
                       "default_path": str(row["default_path"])} for p in pictures for row in p["placements"]]
    placement_columns = [("model", "model", ""), ("budget", "budget", ".2f"),
                         ("best_path", "least-error path (8 seeds, end to end)", ""), ("fora", "FORA's steps", ""),
                         ("fora_over_best", "FORA's error ÷ best", ".2f"),
                         ("default_path", "default compile's path (3 seeds, lookahead)", ""),
                         ("default_over_best", "its error ÷ best", ".2f")]
    spread = {p["model"]: max(p["span3_fitted"].values()) / min(p["span3_fitted"].values()) for p in pictures}
    return (f"# Calibration: the reference model beside the latent model, DDIM-{steps}\n\n"
            f"Made by `python examples/calibration_compare.py --steps {steps}` on {pictures[0]['samples']} "
            f"calibration seeds from {SEED_BASE} (spans on the first {pictures[0]['span_seeds']}); every number is in "
            f"`{stem}.json`. ![calibration compared]({stem.rsplit('/', 1)[-1]}.png)\n\n"
            "Inflection points (FLOP-weighted direction cosine < 0.3): "
            + "; ".join(f"{p['model']} {p['inflections']}" for p in pictures) + ".\n\n"
            "## Per-step change of the branch outputs and its direction\n\n"
            + markdown_table(change_rows, columns) + "\n\n"
            "## Where the computes should sit\n\n"
            "Errors are the end-to-end span table's (fitted K = 3 forecast, 8 seeds): a path's error is the sum "
            "of its spans'. A 2-step span costs between its cheapest and dearest start: "
            + ", ".join(f"{m} {v:.0f}×" for m, v in spread.items()) + ".\n\n"
            + markdown_table(placement_rows, placement_columns) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default="docs/calibration/compare")
    args = parser.parse_args()
    pictures = [model_picture(name, args.steps) for name in MODELS]
    stem = f"{args.out}_ddim{args.steps}"
    write_json(f"{stem}.json", {"environment": environment(), "pictures": pictures})
    save_plot(pictures, f"{stem}.png")
    text = markdown(pictures, stem)
    atomic_write_text(f"{stem}.md", text)
    print(text)


if __name__ == "__main__":
    main()
