"""gocopt in a tiny random Flux (`FluxPipeline`, true CFG in `cache_context("cond"/"uncond")` calls).

    python -m examples.diffusers.flux     # writes demo/examples/flux_tiny_b0.50.json

The components are real diffusers classes built from configs with random weights (no download);
the inputs are precomputed prompt embeddings, as a server that caches its text encoder would pass.
Swap in ``<Pipeline>.from_pretrained(...)`` and real prompts for production use.
"""

from pathlib import Path

from examples.diffusers.pipeline_demo import demo
from examples.diffusers.tiny import pipeline

if __name__ == "__main__":
    pipe, inputs, call_kwargs = pipeline("flux")
    demo(pipe, inputs, call_kwargs, steps=10, budget=0.5, out=Path("demo/examples/flux_tiny_b0.50.json"))
