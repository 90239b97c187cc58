"""What every pipeline example does: compile at a budget, commit the file, load it at deploy time.

Shared by the per-family scripts next to this file; each builds its pipeline and calls ``demo``.
"""

from __future__ import annotations

from pathlib import Path

import torch

import gocopt
from gocopt.integrations.diffusers import PipelineSampler, merge_inputs
from gocopt.timing import timed


def demo(pipe, inputs: list[dict], call_kwargs: dict, *, steps: int, budget: float, out: Path,
         trials: int = 20) -> None:
    pipe.set_progress_bar_config(disable=True)
    generators = lambda: [torch.Generator().manual_seed(i) for i in range(len(inputs))]  # noqa: E731
    output_type = PipelineSampler(pipe, inputs, steps).output_type

    @torch.no_grad()
    def images() -> torch.Tensor:
        return torch.as_tensor(pipe(**merge_inputs(inputs), **call_kwargs, generator=generators(),
                                    num_inference_steps=steps, output_type=output_type, return_dict=False)[0])

    def run() -> tuple[torch.Tensor, float]:
        return timed(images)

    plain, plain_seconds = run()
    compiled = gocopt.compile_pipeline(pipe, budget, inputs=inputs, steps=steps, call_kwargs=call_kwargs,
                                       effort=gocopt.Effort.for_pipeline().with_overrides(trials=trials))
    compiled.save(out)  # commit this file
    gocopt.remove(pipe)  # the original transformer again, exactly

    gocopt.load_pipeline(pipe, out, inputs=inputs[:1])  # deploy: refuses another model, scheduler or step count
    cached, seconds = run()
    schedule = pipe.transformer.schedule
    error = float((cached - plain).norm() / plain.norm())
    print(f"{type(pipe).__name__} with {type(pipe.scheduler).__name__}, {steps} steps: schedule {out} costs "
          f"{schedule.cost(pipe.transformer.site_flops):.3f} of the transformer-site FLOPs (budget {budget}); "
          f"relative L2 to the uncached output {error:.2e}; {plain_seconds / seconds:.2f}x wall-clock "
          "(on models this small, Python overhead dominates)")
