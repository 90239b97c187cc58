"""The class-conditional DiT calling convention, read off models nobody here wrote.

``gocopt.compile`` samples a model itself, so it needs two facts: how many classes (the null
class for guidance is the next index) and the latent shape ``(C, H, W)``. gocopt's DiTs state them
(``num_classes``, ``in_channels``, ``input_size``); the original facebookresearch DiT states them
in its embedders (``y_embedder.num_classes``, timm's ``x_embedder.img_size``); anything else says
so through keyword arguments — or gets an error listing exactly which ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from gocopt.errors import GocoptError


@dataclass(frozen=True)
class DiTSpec:
    """What gocopt needs to know about a class-conditional DiT that the model does not state itself.

    Every field is optional: gocopt's DiTs and the original DiT state their class count and latent
    shape, and the sampler's own first call is the example call to trace. A model that states
    neither gets an error naming the field to set here.

    Attributes:
        num_classes: classes, without the null class that guidance adds as the next index.
        latent_shape: ``(C, H, W)`` of one sample.
        example_inputs: ``(args, kwargs)`` of one real call to trace, in the model's device and
            dtype; ``None``: the sampler's first call.
        evaluator: a feature extractor with ``features(samples) -> (N, D)`` (gocopt's
            ``QualityEvaluator``), so the recorded quality includes the Fréchet distance to the
            uncached samples in its features; ``None``: PSNR and SSIM only.
        decode: for a latent model, the map from its samples to the images users look at (a VAE
            decoder, ``(N, C, h, w) -> (N, c, H, W)`` in [-1, 1]): the search and the held-out check
            then score PSNR on decoded images, where two schedules can rank otherwise than on
            latents; ``None``: on the samples themselves.
    """

    num_classes: int | None = None
    latent_shape: tuple[int, ...] | None = None
    example_inputs: Any = None
    evaluator: Any = None
    decode: Any = None

    def __post_init__(self) -> None:  # refused where it is made, not deep inside the first scoring
        if self.decode is not None and not callable(self.decode):
            raise GocoptError(f"DiTSpec.decode={self.decode!r}: give a callable from samples to images "
                              "(a VAE's decode), or None")
        if self.evaluator is not None and not callable(getattr(self.evaluator, "features", None)):
            raise GocoptError(f"DiTSpec.evaluator: {type(self.evaluator).__name__} has no features(samples) method; "
                              "give a feature extractor such as gocopt.metrics.quality.QualityEvaluator, or None")

    def __repr__(self) -> str:  # example tensors and a whole evaluator are not what a reader wants to see
        given = {"example_inputs": self.example_inputs, "evaluator": self.evaluator, "decode": self.decode}
        shown = [f"num_classes={self.num_classes!r}", f"latent_shape={self.latent_shape!r}"]
        shown += [f"{name}=<{type(value).__name__}>" for name, value in given.items() if value is not None]
        return f"DiTSpec({', '.join(shown)})"


@dataclass(frozen=True)
class ResolvedSpec:
    """A :class:`DiTSpec` with the class count and latent shape known: what sampling needs."""

    num_classes: int
    latent_shape: tuple[int, int, int]  # (C, H, W)


def _num_classes(model: nn.Module) -> int | None:
    for owner in (model, getattr(model, "y_embedder", None)):
        value = getattr(owner, "num_classes", None)
        if isinstance(value, int):
            return value
    return None


def _latent_shape(model: nn.Module) -> tuple[int, int, int] | None:
    channels = getattr(model, "in_channels", None)
    if not isinstance(channels, int):
        return None
    size = getattr(model, "input_size", None)
    if isinstance(size, int):
        return channels, size, size
    image = getattr(getattr(model, "x_embedder", None), "img_size", None)  # timm's PatchEmbed
    if isinstance(image, int):
        return channels, image, image
    if isinstance(image, Sequence) and len(image) == 2 and all(isinstance(v, int) for v in image):
        return channels, int(image[0]), int(image[1])
    return None


def dit_spec(model: nn.Module, spec: DiTSpec | None = None, *, num_classes: int | None = None,
             latent_shape: Sequence[int] | None = None) -> ResolvedSpec:
    """The model's class count and latent shape: given (in ``spec`` or as arguments), else read off
    the model, else an error naming what to pass."""
    spec = spec or DiTSpec()
    num_classes = num_classes if num_classes is not None else spec.num_classes
    latent_shape = latent_shape if latent_shape is not None else spec.latent_shape
    classes = num_classes if num_classes is not None else _num_classes(model)
    shape = tuple(int(v) for v in latent_shape) if latent_shape is not None else _latent_shape(model)
    missing = []
    if classes is None:
        missing.append("spec=DiTSpec(num_classes=<classes, without the null class>) (found neither "
                       "model.num_classes nor model.y_embedder.num_classes)")
    if shape is None:
        missing.append("spec=DiTSpec(latent_shape=(C, H, W)) (found neither model.in_channels with "
                       "model.input_size nor model.x_embedder.img_size)")
    if missing or classes is None or shape is None:
        raise GocoptError(f"gocopt.compile samples {type(model).__name__} as a class-conditional DiT, "
                          f"model(x, t, y), and cannot tell from the model: pass {'; and '.join(missing)}")
    if len(shape) != 3:
        raise GocoptError(f"latent_shape={shape}: expected (channels, height, width)")
    return ResolvedSpec(int(classes), (shape[0], shape[1], shape[2]))


def check_null_class(model: nn.Module, spec: ResolvedSpec, guidance: str | None) -> None:
    """Classifier-free guidance calls the model with the null class (label ``num_classes``): refuse a
    model whose label table has no row for it (DiT built with ``class_dropout_prob=0``), which would
    otherwise fail deep inside the first sampling run with an index error. Models whose label
    embedding gocopt cannot see are not judged."""
    table = getattr(getattr(model, "y_embedder", None), "embedding_table", None)
    rows = getattr(table, "num_embeddings", None)
    if guidance not in (None, "none") and isinstance(rows, int) and rows <= spec.num_classes:
        raise GocoptError(f"{type(model).__name__} has no null class (its label table has {rows} rows for "
                          f"{spec.num_classes} classes; built with class_dropout_prob=0?), and guidance={guidance!r} "
                          "samples it with the null class: pass a sampler without guidance, e.g. "
                          "sampler=DDIMSampler(steps=..., guidance='none')")


__all__ = ["DiTSpec", "ResolvedSpec", "check_null_class", "dit_spec"]
