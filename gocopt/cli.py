"""The ``gocopt`` command line: a thin layer over the library.

    gocopt compile --model reference --budget 0.5 --steps 20 --out schedules/NAME.json
    gocopt sample --model reference --steps 20 --n 64 --seed 0 --out grid.png
    gocopt eval   --model reference --steps 20 --n 1000 --seed 0 --json [--schedule interval:2 --correction goc]
    gocopt sites  --model DiT-XL/2
    gocopt show   schedules/NAME.json --plot heatmap.png
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import torch

logger = logging.getLogger("gocopt.cli")


def _device(name: str | None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="reference",
                   help="'reference' (the shipped digits DiT), 'latent' (the shipped latent DiT, scored on its decoded "
                        "pixels), 'patch1' (the shipped digits DiT at patch size 1: 64 tokens, 4 blocks) or a DiT "
                        "config such as DiT-XL/2 (random weights)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")


def _add_sampler_args(p: argparse.ArgumentParser) -> None:
    from gocopt.models.reference import REFERENCE_GUIDANCE_SCALE

    p.add_argument("--steps", type=int, default=20, help="DDIM steps")
    p.add_argument("--guidance-scale", type=float, default=REFERENCE_GUIDANCE_SCALE)
    p.add_argument("--guidance", choices=("batched", "separate", "none"), default="batched")
    p.add_argument("--n", type=int, default=1000, help="number of samples")
    p.add_argument("--seed", type=int, default=0, help="seed set: sample i uses seed seed*1000003 + i")
    p.add_argument("--batch-size", type=int, default=500)


def _add_schedule_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--schedule", default="none",
                   help="none | interval:K | l2c:B (B = budget) | PATH to a schedule file")
    p.add_argument("--correction", choices=("none", "goc"), default="none", help="reuse plainly or with GOC")
    p.add_argument("--goc-w", type=float, default=1.2, help="GOC step size w (the paper's 1.2 by default)")
    p.add_argument("--goc-steps", default="paper",
                   help="steps (0-based, comma-separated) where reused sites are corrected; 'paper' = every step "
                        "from 2 except the inflection step at 85%% of the run (17 of 20), 'all' = every step")


def _model(name: str, device: torch.device):
    from gocopt.models import model_by_name

    return model_by_name(name, device=device)


def _sampler(args):
    from gocopt.models import CLIPS_DENOISED
    from gocopt.sampling import DDIMSampler

    return DDIMSampler(steps=args.steps, guidance_scale=args.guidance_scale, guidance=args.guidance,
                       clip_denoised=CLIPS_DENOISED.get(args.model, False))


def _evaluator(name: str, device: torch.device):
    from gocopt.metrics.decoded import evaluator_for

    return evaluator_for(name, device)


def _is_file(spec: str) -> bool:
    return spec.endswith(".json") or Path(spec).exists()


def _cached_model(args, model):
    """The compiled model running ``--schedule``: a schedule file (checked against the model and
    sampler), or a named schedule with the ``--correction`` options."""
    from gocopt.api import load
    from gocopt.compiled import cache_model

    if _is_file(args.schedule):
        if args.correction != "none":
            raise SystemExit("gocopt: error: --correction applies to named schedules; a schedule file carries "
                             "its own GOC")
        return load(model, args.schedule, sampler=_sampler(args))
    cached = cache_model(model)
    cached.set_schedule(_schedule(args, cached))
    return cached


def _schedule(args, cached):
    from gocopt.schedule.goc import GOCConfig
    from gocopt.schedule.named import named_schedule, paper_goc

    goc = GOCConfig()
    if args.correction == "goc":
        if args.goc_steps == "paper":
            steps = sorted(paper_goc(args.steps).correction_steps)
        elif args.goc_steps == "all":
            steps = list(range(args.steps))
        else:
            steps = [int(s) for s in args.goc_steps.split(",") if s.strip()]
        goc = GOCConfig.at_steps(args.goc_w, steps)
    sampler = _sampler(args)
    return named_schedule(args.schedule, tuple(cached.sites["site"]), steps=args.steps, site_flops=cached.site_flops,
                          site_blocks=list(cached.sites["block"]), timesteps=sampler.timesteps, predictor=goc)


def cmd_sample(args) -> int:
    from gocopt.evaluate import SampleSet, sample_batches
    from gocopt.plots import save_image_grid

    device = _device(args.device)
    model = _model(args.model, device)
    runner = model if args.schedule == "none" else _cached_model(args, model)
    samples = SampleSet.make(args.n, args.seed, model.num_classes)
    shape = (model.in_channels, model.input_size, model.input_size)
    images, seconds = sample_batches(runner, _sampler(args), samples, shape=shape, num_classes=model.num_classes,
                                     batch_size=args.batch_size, device=device)
    evaluator = _evaluator(args.model, device)
    if evaluator is not None:  # the pixels they are judged by (latents: decoded)
        images = evaluator.images(images)
    save_image_grid(images, args.out, labels=samples.labels)
    print(f"wrote {args.n} samples to {args.out} ({seconds:.1f} s)")
    return 0


def cmd_eval(args) -> int:
    from gocopt.evaluate import SampleSet, compare, sample_batches

    device = _device(args.device)
    model = _model(args.model, device)
    evaluator = _evaluator(args.model, device)
    samples = SampleSet.make(args.n, args.seed, model.num_classes)
    sampler = _sampler(args)
    shape = (model.in_channels, model.input_size, model.input_size)
    uncached = sample_batches(model, sampler, samples, shape=shape, num_classes=model.num_classes,
                              batch_size=args.batch_size, device=device, desc="uncached")
    result: dict = {"model": args.model, "steps": args.steps, "guidance_scale": args.guidance_scale, "n": args.n,
                    "seed": args.seed}
    uncached_scores = evaluator.score(uncached[0], samples.labels) if evaluator else {}
    if args.schedule == "none" and args.correction == "none":
        result.update(uncached_scores, seconds=uncached[1], cost=1.0, schedule="none")
    else:
        cached = _cached_model(args, model)
        schedule = cached.schedule
        result.update(compare(cached, sampler, samples, evaluator=evaluator, reference=uncached,
                              batch_size=args.batch_size, device=device))
        result.update(schedule=schedule.name, correction=args.correction, predictor=repr(schedule.predictor),
                      uncached={**uncached_scores, "seconds": uncached[1]})
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True, default=float))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
    return 0


def cmd_compile(args) -> int:
    from gocopt.api import compile as gocopt_compile
    from gocopt.api import join_study
    from gocopt.atomic import atomic_write_text
    from gocopt.models.convention import DiTSpec
    from gocopt.plots import save_schedule_heatmap
    from gocopt.report import compile_report
    from gocopt.search.effort import Effort
    from gocopt.search.study_config import StudyConfig

    device = _device(args.device)
    model = _model(args.model, device)
    budgets = [float(b) for b in args.budgets.split(",")] if args.budgets else [args.budget]
    sampler = _sampler(args)
    effort = Effort.full() if args.effort == "full" else Effort()
    effort = effort.with_overrides(
        baselines=args.baselines or None, surrogate_trials=args.surrogate_trials, trials=args.trials,
        search_samples=args.search_samples, heldout_samples=args.heldout_samples, finalists=args.finalists,
        max_samples=args.max_samples, seed=args.seed)
    effort = dataclasses.replace(effort, max_graphs=args.max_graphs)
    spec = DiTSpec(evaluator=_evaluator(args.model, device))  # the trained models: FD too
    study = StudyConfig(storage=args.storage, name=args.study_name, heartbeat=args.heartbeat)
    if args.workers_join:
        join_study(model, budgets, study=study, sampler=sampler, spec=spec, effort=effort)
        print(f"worker done: the studies of budgets {', '.join(f'{b:g}' for b in budgets)} hold their planned "
              "trials; the leader (the same command without --workers-join) writes the schedules")
        return 0
    compiled = gocopt_compile(model, budgets, sampler=sampler, spec=spec, effort=effort, study=study)
    for budget, result in zip(budgets, compiled):
        out = Path((args.out or "schedules/{model}_ddim{steps}_b{budget}.json").format(
            model=args.model.replace("/", "_"), steps=args.steps, budget=f"{budget:.2f}"))
        if len(budgets) > 1 and "{budget}" not in (args.out or "{budget}"):
            out = out.with_name(f"{out.stem}_b{budget:.2f}{out.suffix}")
        result.save(out)
        stem = str(out.with_suffix(""))
        save_schedule_heatmap(result.schedule, f"{stem}.png")
        report = compile_report(result.schedule, stem)
        atomic_write_text(f"{stem}.md", report)
        print(report)
        print(f"wrote {out}, {stem}.md, {stem}.png")
    return 0


def cmd_show(args) -> int:
    from gocopt.plots import save_schedule_heatmap
    from gocopt.schedule.io import load_schedule

    schedule = load_schedule(args.path)
    fingerprint = schedule.fingerprint or {}  # the file format requires one
    sites = fingerprint["sites"]
    shares = [s["flops_share"] for s in sites]
    cost = schedule.cost(shares)
    kinds: dict[str, int] = {}
    for s in sites:
        kinds[s["kind"]] = kinds.get(s["kind"], 0) + 1
    sampler = {**(schedule.sampler or {}), "steps": schedule.steps, "guidance": schedule.guidance}
    print(f"schedule   {schedule.name}  ({args.path})")
    counts = ", ".join(f"{v} {k}" for k, v in kinds.items())
    print(f"model      {fingerprint['class']}, {len(sites)} sites ({counts})")
    print(f"sampler    {', '.join(f'{k}={v}' for k, v in sampler.items())}")
    print(f"budget     {schedule.budget if schedule.budget is not None else '—'}   cost {cost:.4f} of site FLOPs   "
          f"ideal speedup {1 / cost:.2f}x")
    print(f"predictor  {schedule.predictor!r}   inflection points {schedule.provenance.get('inflection_points', [])}")
    print("reused per step " + " ".join(f"{r:.2f}" for r in schedule.reuse_fraction_per_step()))
    for section in ("quality", "search", "calibration"):
        if section in schedule.provenance:
            values = schedule.provenance[section]
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
            print(f"{section:<10} {shown}")
    if args.plot:
        save_schedule_heatmap(schedule, args.plot)
        print(f"heatmap    {args.plot}")
    return 0


def cmd_sites(args) -> int:
    import pandas as pd

    from gocopt.trace.sites import find_sites

    model = _model(args.model, _device(args.device))
    table = find_sites(model)
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(table.drop(columns=["nodes"]).to_string())
    attrs = table.attrs
    print(f"\n{len(table)} sites, traced {attrs['mode'].replace('_', ' ')}; sites cover "
          f"{100 * attrs['coverage']:.1f}% of the blocks' {attrs['block_flops'] / 1e9:.2f} GFLOPs per call")
    for note in attrs["notes"]:
        print(f"note: {note}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gocopt", description="Cache schedules for Diffusion Transformers.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sample", help="sample an image grid")
    _add_model_args(p)
    _add_sampler_args(p)
    _add_schedule_args(p)
    p.add_argument("--out", type=Path, default=Path("grid.png"))
    p.set_defaults(func=cmd_sample, n=64)

    p = sub.add_parser("eval", help="sample and score: FID, IS, accuracy; with --schedule, fidelity to uncached")
    _add_model_args(p)
    _add_sampler_args(p)
    _add_schedule_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)

    from gocopt.search.effort import Effort, default_max_samples
    from gocopt.search.study_config import StudyConfig

    effort, study = Effort(), StudyConfig()  # the CLI's defaults are the library's, read off its objects
    p = sub.add_parser("compile", help="search the best schedule at a budget; write it with a report and a heatmap")
    _add_model_args(p)
    _add_sampler_args(p)
    p.add_argument("--budget", type=float, default=0.5, help="fraction of site FLOPs to compute, in (0, 1]")
    p.add_argument("--budgets", default=None, help="comma-separated budgets: one schedule each (e.g. 0.25,0.5,0.75)")
    p.add_argument("--max-samples", type=float, default=None,
                   help="cap on the compile's model work in uncached-sample equivalents, held-out scoring included "
                        f"(default {default_max_samples(1):g} for one budget, "
                        f"+{default_max_samples(2) - default_max_samples(1):g} per extra budget); the search runs the "
                        "trials it pays for")
    p.add_argument("--trials", type=int, default=None, help="Optuna trials per budget (default: what the cap pays for)")
    p.add_argument("--search-samples", type=int, default=None,
                   help="calibration samples, also the search's inputs: every trial is scored on all of them "
                        f"(default {effort.search_samples})")
    p.add_argument("--surrogate-trials", type=int, default=None,
                   help="candidates per budget ranked by the model-free surrogate before any sampled trial; its best "
                        f"are the first trials (default {effort.surrogate_trials}; 0: none, the search starts from its "
                        "seed candidates)")
    p.add_argument("--heldout-samples", type=int, default=None,
                   help=f"held-out samples the result is scored on (default {effort.heldout_samples}, with its "
                        "standard error)")
    p.add_argument("--finalists", type=int, default=None,
                   help="the search's best this many trials are also scored on the held-out samples, and the best "
                        f"over both seed sets is kept (default {effort.finalists}: the search's best; each more costs "
                        "one trial's work)")
    p.add_argument("--effort", choices=("default", "full"), default="default",
                   help="full: gocopt 0.1's settings (40 trials × 64 samples, spans end to end, 256 held-out samples "
                        "and both baselines; ~4,000 sample equivalents per budget at DDIM-20)")
    p.add_argument("--baselines", action="store_true",
                   help="also score FORA + GOC (paper) and the L2C-like schedule on the held-out samples")
    p.add_argument("--storage", default=None, help="Optuna storage URL (sqlite:///study.db, postgresql://...) to "
                                                   "share or resume the study")
    p.add_argument("--study-name", default=None)
    p.add_argument("--workers-join", action="store_true",
                   help="be one more worker of the study in --storage: run trials, write nothing (the command "
                        "started without this flag writes the schedule)")
    p.add_argument("--heartbeat", type=int, default=study.heartbeat,
                   help="seconds between a running trial's heartbeats in a database storage; a worker silent for "
                        f"three is taken for dead and its trial is run again (default {study.heartbeat})")
    p.add_argument("--max-graphs", type=int, default=effort.max_graphs,
                   help="at most this many distinct step graphs per schedule: torch.compile compilations and CUDA "
                        f"graph sets before the first image (default {effort.max_graphs})")
    p.add_argument("--out", default=None, help="schedule path (default schedules/{model}_ddim{steps}_b{budget}.json)")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("show", help="summarise a schedule file; --plot draws its step × site heatmap")
    p.add_argument("path", type=Path)
    p.add_argument("--plot", type=Path, default=None, help="write a PNG heatmap here")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("sites", help="list the cache sites found in a model's graph")
    _add_model_args(p)
    p.set_defaults(func=cmd_sites)
    return parser


class UsageError(ValueError):
    """A command-line argument that cannot work; the message names it and the fix."""


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse bad arguments before any work (no model is built, nothing is sampled)."""
    from gocopt.models import DIT_CONFIGS, TRAINED_MODELS

    model = getattr(args, "model", None)
    if model is not None and model not in TRAINED_MODELS and model not in DIT_CONFIGS:
        raise UsageError(f"--model {model}: unknown model; use one of {', '.join(TRAINED_MODELS)} (trained) or "
                         f"{', '.join(DIT_CONFIGS)}")
    device = getattr(args, "device", None)
    if device is not None:
        try:
            kind = torch.device(device).type
        except RuntimeError as e:
            raise UsageError(f"--device {device}: not a device name; use cpu or cuda") from e
        if kind == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"--device {device}: this machine has no CUDA device (torch {torch.__version__}); "
                             "use --device cpu, or install a CUDA build of torch (README, GPU)")
    for name, least in (("steps", 2), ("n", 1), ("batch_size", 1), ("trials", 1), ("search_samples", 1),
                        ("heldout_samples", 1), ("finalists", 1), ("heartbeat", 1), ("max_graphs", 2),
                        ("max_samples", 1), ("surrogate_trials", 0)):
        value = getattr(args, name, None)
        if value is not None and value < least:
            raise UsageError(f"--{name.replace('_', '-')} {value}: must be at least {least}")
    budgets = [args.budget] if getattr(args, "budget", None) is not None else []
    if getattr(args, "budgets", None):
        try:
            budgets = [float(b) for b in args.budgets.split(",")]
        except ValueError as e:
            raise UsageError(f"--budgets {args.budgets}: write comma-separated numbers, e.g. 0.25,0.5,0.75") from e
    for budget in budgets:
        if not 0 < budget <= 1:
            raise UsageError(f"budget {budget:g}: a budget is the fraction of site FLOPs computed, in (0, 1]")
    schedule = getattr(args, "schedule", None)
    if schedule is not None:
        _check_schedule_spec(schedule)
    path = getattr(args, "path", None)
    if path is not None and not Path(path).is_file():
        raise UsageError(f"{path}: no such schedule file")
    storage = getattr(args, "storage", None)
    if storage:
        _check_storage(storage)
    if getattr(args, "workers_join", False) and not storage:
        raise UsageError("--workers-join needs --storage: workers share a study through a database or journal file")


def _check_schedule_spec(spec: str) -> None:
    name, _, arg = spec.partition(":")
    if _is_file(spec):
        if not Path(spec).is_file():
            raise UsageError(f"--schedule {spec}: no such schedule file")
        return
    valid = (name == "none" and not arg) or (name == "interval" and arg.isdigit() and int(arg) >= 1)
    if name == "l2c":
        try:
            valid = 0 < float(arg) <= 1
        except ValueError:
            valid = False
    if not valid:
        raise UsageError(f"--schedule {spec}: unknown schedule {spec!r}; use none, interval:K (K >= 1), l2c:B "
                         "(0 < B <= 1) or the path of a schedule file")


def _check_storage(url: str) -> None:
    """An Optuna storage that can be opened: a journal file's or SQLite's folder must exist; other
    databases must connect."""
    import sqlalchemy

    if url.endswith((".log", ".journal")):
        if not Path(url).parent.is_dir():
            raise UsageError(f"--storage {url}: the folder {Path(url).parent} does not exist; create it first")
        return
    try:
        shown = sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception as e:  # noqa: BLE001 - not a URL at all
        raise UsageError(f"--storage: {url!r} is not a database URL; e.g. sqlite:///study.db or "
                         "postgresql://user@host/db") from e
    if url.startswith("sqlite:///"):
        folder = Path(url[len("sqlite:///"):]).parent
        if not folder.is_dir():
            raise UsageError(f"--storage {shown}: the folder {folder} does not exist; create it or give another path")
        return
    try:
        sqlalchemy.create_engine(url).connect().close()
    except Exception as e:  # noqa: BLE001 - any failure to reach the database is the same answer
        raise UsageError(f"--storage {shown}: cannot connect ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:160]}); check the URL and that the server is up, then re-run "
                         "the same command (nothing was written; a study already there resumes)") from e


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from gocopt.errors import GocoptError

    try:
        check_arguments(args)
        return args.func(args)
    except (GocoptError, UsageError) as e:
        print(f"gocopt: error: {e}", file=sys.stderr)
        return 2
