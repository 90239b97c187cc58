"""gocopt in a real ``DiTPipeline`` running the shipped, trained reference DiT (converted weights).

    python -m examples.diffusers.dit      # writes demo/examples/dit_reference_ddim20_b0.50.json
"""

from pathlib import Path

from examples.diffusers.pipeline_demo import demo
from gocopt.integrations.reference_pipeline import reference_pipeline

if __name__ == "__main__":
    demo(reference_pipeline(), [{"class_labels": c} for c in range(10)], {"guidance_scale": 4.0}, steps=20, budget=0.5,
         out=Path("demo/examples/dit_reference_ddim20_b0.50.json"))
