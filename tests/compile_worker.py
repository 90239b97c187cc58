"""A compile in a process of its own, for tests that must see an abort as an abort.

Reads one JSON request per line on stdin, answers one JSON line on stdout, for as long as stdin is
open, so a fuzzing test pays for importing torch once, not once per example. A request:

    {"name": "DiT-Tiny", "config": {DiTConfig fields}, "init": "zero" | "random", "budget": 0.5, "steps": 4,
     "seed": 0}

``init="zero"`` keeps the original DiT's initialisation (final layer and adaLN at zero: the output
ignores the input); ``"random"`` draws every weight, so caching changes the samples. The answer is
``{"outcome": "schedule", "cost": …, "budget": …, "note": …}``, or ``{"outcome": "error", "type": …,
"gocopt": true|false, "message": …}``. A crash of the interpreter is seen by the caller as this
process exiting without an answer.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback

import torch


def tiny_effort():
    from gocopt.search.effort import Effort

    return Effort(search_samples=2, span_seeds=1, heldout_samples=2, surrogate_trials=20, trials=2)


def build(name: str, config: dict, init: str, seed: int) -> torch.nn.Module:
    from gocopt.models import dit

    torch.manual_seed(seed)
    model = dit(name, **config).eval()
    if init == "random":
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model


def answer(request: dict) -> dict:
    from dataclasses import replace

    import gocopt
    from gocopt.errors import GocoptError

    try:
        model = build(request.get("name", "DiT-Tiny"), request.get("config", {}), request.get("init", "zero"),
                      request.get("seed", 0))
        effort = replace(tiny_effort(), max_graphs=request.get("max_graphs", 6))
        compiled = gocopt.compile(model, request["budget"], sampler=gocopt.default_sampler(request["steps"]),
                                  effort=effort, progress=False)
        schedule = compiled.schedule
        return {"outcome": "schedule", "cost": schedule.cost(compiled.site_flops), "budget": schedule.budget,
                "note": schedule.provenance["search"].get("note"),
                "psnr": schedule.provenance["quality"]["heldout"]["psnr_vs_uncached"]}
    except Exception as e:  # noqa: BLE001 - every failure is the answer, classified for the test
        return {"outcome": "error", "type": type(e).__name__, "gocopt": isinstance(e, GocoptError),
                "message": str(e), "traceback": "" if isinstance(e, GocoptError) else traceback.format_exc()}


def main() -> None:
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.ERROR)
    for line in sys.stdin:
        request = json.loads(line)
        if isinstance(request.get("budget"), str):  # sent as repr(float): nan and inf pass through
            request["budget"] = float(request["budget"])
        reply = answer(request)
        print(json.dumps(reply), flush=True)  # NaN and Infinity pass as Python's json writes them


if __name__ == "__main__":
    main()
