"""gocopt 0.1's keyword arguments, kept working for one release, each with a warning saying what to write.

gocopt 0.1's ``compile`` took 22 loose keyword arguments. 0.2 groups them in the objects they
belong to: what a compile spends in :class:`Effort`, where its study lives in
:class:`StudyConfig`, what the model does not state in :class:`DiTSpec`, the step count in the
sampler. :class:`LegacyArguments` reads the old names off ``**legacy``, folds each into its
object (an old argument replaces the object's field, as it did in 0.1), and issues one
``DeprecationWarning`` per call listing every old name with its replacement. A name that was never
an argument is a ``TypeError``, as Python would raise; a model-only argument given with a pipeline,
or ``steps=`` beside ``sampler=``, is an :class:`~gocopt.errors.ArgumentError` naming it.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

from gocopt.driver import default_sampler
from gocopt.errors import ArgumentError
from gocopt.models.convention import DiTSpec
from gocopt.sampling import Sampler
from gocopt.search.effort import Effort
from gocopt.search.study_config import StudyConfig

REMOVED_IN = "0.3"
EFFORT_FIELDS = ("trials", "search_samples", "heldout_samples", "max_samples", "max_graphs", "seed")
STUDY_FIELDS = {"storage": "storage", "study_name": "name", "heartbeat": "heartbeat"}
SPEC_FIELDS = ("num_classes", "latent_shape", "example_inputs", "evaluator")
PIPELINE_ONLY = ("inputs", "call_kwargs")
OTHER = ("steps", "join")
EVERY_NAME = EFFORT_FIELDS + tuple(STUDY_FIELDS) + SPEC_FIELDS + PIPELINE_ONLY + OTHER


class LegacyArguments:
    """The old keyword arguments of one call, read and folded into 0.2's objects."""

    def __init__(self, verb: str, given: dict[str, Any], *, pipeline: bool,
                 allowed: tuple[str, ...] | None = None) -> None:
        unknown = [name for name in given if name not in (allowed or EVERY_NAME)]
        if unknown:
            raise ArgumentError(f"gocopt.{verb}() got an unexpected keyword argument {unknown[0]!r}")
        self.verb, self.given, self.pipeline = verb, dict(given), pipeline
        self.replacements: list[str] = []
        self.join = bool(given.get("join", False))  # a worker that only joins: its own function in 0.2
        if self.join and not pipeline:
            self._note("join=True", "gocopt.join_study(model, budget, study=...)")
        if not pipeline:
            self._refuse_pipeline_only()

    # -- the objects, each with the old arguments folded in

    def effort(self, effort: Effort | None, *, default: Effort | None = None) -> Effort | None:
        fields = {name: self.given[name] for name in EFFORT_FIELDS if name in self.given}
        if not fields:
            return effort
        base = effort if effort is not None else (default or Effort())
        self._note(", ".join(f"{k}={v!r}" for k, v in fields.items()),
                   "effort=Effort(" + ", ".join(f"{k}=..." for k in fields) + ")")
        # None meant "the default" in 0.1, except max_graphs=None: no limit
        return replace(base, **{k: v for k, v in fields.items() if v is not None or k == "max_graphs"})

    def study(self, study: StudyConfig | None) -> StudyConfig | None:
        fields = {new: self.given[old] for old, new in STUDY_FIELDS.items() if old in self.given}
        if not fields:
            return study
        self._note(", ".join(f"{old}=..." for old in STUDY_FIELDS if old in self.given),
                   "study=StudyConfig(" + ", ".join(f"{k}=..." for k in fields) + ")")
        return replace(study or StudyConfig(), **fields)

    def spec(self, spec: DiTSpec | None) -> DiTSpec | None:
        fields = {name: self.given[name] for name in SPEC_FIELDS if name in self.given and self.given[name] is not None}
        if not fields:
            return spec
        self._note(", ".join(f"{k}=..." for k in fields), "spec=DiTSpec(" + ", ".join(f"{k}=..." for k in fields) + ")")
        if "latent_shape" in fields:
            fields["latent_shape"] = tuple(int(v) for v in fields["latent_shape"])
        return replace(spec or DiTSpec(), **fields)

    def sampler(self, sampler: Sampler | None) -> Sampler | None:
        steps = self.given.get("steps")
        if steps is None:
            return sampler
        if sampler is not None:
            raise ArgumentError(f"gocopt.{self.verb}: steps={steps!r} and sampler= both given, and the sampler "
                                "decides the steps; drop steps=, or give sampler=gocopt.default_sampler(steps)")
        self._note(f"steps={steps!r}", f"sampler=gocopt.default_sampler({steps!r})")
        return default_sampler(steps)

    # -- plain values

    @property
    def steps(self) -> int | None:
        return self.given.get("steps")

    @property
    def inputs(self) -> Any:
        return self.given.get("inputs")

    @property
    def call_kwargs(self) -> Any:
        return self.given.get("call_kwargs")

    def model_only(self) -> dict[str, Any]:
        """The model-only arguments given (with a pipeline, each is refused by name)."""
        return {name: self.given[name] for name in SPEC_FIELDS if self.given.get(name) is not None}

    def warn(self, *, instead: str | None = None, stacklevel: int = 3) -> None:
        """One DeprecationWarning for the call, naming every old argument and what to write instead,
        attributed to the user's line (``stacklevel`` counts the frames of gocopt's entry point)."""
        if instead is not None:
            self.replacements.insert(0, f"{instead} instead of gocopt.{self.verb}(pipe, ...)")
        if not self.replacements:
            return
        warnings.warn(f"gocopt.{self.verb}: gocopt 0.1's form is deprecated and will be removed in {REMOVED_IN}; "
                      f"write {'; '.join(self.replacements)}", DeprecationWarning, stacklevel=stacklevel)

    def _note(self, old: str, new: str) -> None:
        self.replacements.append(f"{new} instead of {old}")

    def _refuse_pipeline_only(self) -> None:
        named = [name for name in PIPELINE_ONLY if self.given.get(name) is not None]
        if named:
            raise ArgumentError(f"gocopt.{self.verb}: {', '.join(named)} apply only to a diffusers pipeline "
                                "(gocopt.compile_pipeline); for a model, pass sampler= (its steps and guidance) and, "
                                "where the model does not state them, spec=DiTSpec(num_classes=..., latent_shape=...)")


__all__ = ["LegacyArguments"]
