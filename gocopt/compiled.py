"""The compiled model: the user's DiT with its cache sites rewritten, driven by a runtime.

``cache_model(model, schedule)`` traces the model (never editing it), rewrites every site and
returns a :class:`CachedModel` — an ``nn.Module`` that is called exactly like the original and
whose parameters are the original ones. Without a schedule it computes everything (and equals
the original bit for bit); ``set_schedule`` switches schedules; ``cache_context`` separates the
conditional and unconditional calls of a guided sampler; ``reset`` starts a new run.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
import torch
from torch import nn

from gocopt.errors import ScheduleError, TraceError
from gocopt.passes import insert_cache_sites, prune_site_conditioning
from gocopt.runtime.modules import BlockCacheSite, CacheSite, ConditioningChunks, TracedBlock, check_constants
from gocopt.runtime.runtime import CacheRuntime, timestep_value
from gocopt.schedule.schedule import Schedule
from gocopt.trace.sites import TracedModel, trace_sites
from gocopt.trace.tracer import bind_call, has_tensor

logger = logging.getLogger(__name__)
TIMESTEP_ARGUMENTS = ("t", "timestep", "timesteps")


class CachedModel(nn.Module):
    """A DiT whose cache sites consult a :class:`CacheRuntime` (see the module docstring).

    Attributes:
        sites: the site table (one row per schedule column), with FLOPs and kinds.
        runtime: per-run state; ``runtime.memory_bytes()`` is what the cache holds right now.
    """

    def __init__(self, traced: TracedModel, schedule: Schedule | None = None,
                 runtime_cls: type[CacheRuntime] = CacheRuntime) -> None:
        super().__init__()
        self.__dict__["_original"] = traced.model
        self.sites: pd.DataFrame = traced.table()
        self.runtime = runtime_cls(tuple(self.sites["site"]), None)
        self.mode = traced.mode
        self.module = _rewrite(traced, self.runtime)
        self._tensor_args = [k for k, v in traced.call.items() if has_tensor(v)]
        self._constants = {k: v for k, v in traced.call.items() if not has_tensor(v)}
        self._timestep_arg = next((a for a in TIMESTEP_ARGUMENTS if a in traced.call), None)
        self._device = next((v.device for v in traced.call.values() if isinstance(v, torch.Tensor)), None)
        if schedule is not None:
            self.set_schedule(schedule)

    # -- the user's API -------------------------------------------------------------------------

    @property
    def original(self) -> nn.Module:
        """The model this was compiled from (unchanged)."""
        return self.__dict__["_original"]

    @property
    def schedule(self) -> Schedule | None:
        return self.runtime.schedule

    @property
    def site_flops(self) -> list[int]:
        return [int(f) for f in self.sites["flops"]]

    def set_schedule(self, schedule: Schedule | None, *, log: bool = True) -> None:
        """Apply ``schedule`` from the next call on (``None`` computes every site).

        Logs at INFO what the schedule caches (and says so when it caches nothing); gocopt's own
        search switches schedules with ``log=False``.
        """
        self.runtime.set_schedule(schedule)
        if not log:
            return
        if schedule is None:
            logger.info("no schedule: every one of %d sites is computed at every step", len(self.sites))
            return
        reused = int((~schedule.mask).sum())
        logger.info("schedule %r: %d steps × %d sites, %d site-steps reused (%.1f%%), cost %.3f of site FLOPs%s",
                    schedule.name, schedule.steps, schedule.num_sites, reused, 100 * reused / schedule.mask.size,
                    schedule.cost(self.site_flops), "" if reused else " — nothing is cached: this is a no-op")

    def save(self, path) -> None:
        """Write the schedule file (atomically) to commit and load at deploy time."""
        from gocopt.schedule.io import save_schedule

        if self.schedule is None:
            raise ScheduleError("no schedule to save: compile with gocopt.compile or set one with set_schedule")
        save_schedule(self.schedule, path)

    def reset(self) -> None:
        """Drop all cached values: the next call is step 0 of a new run."""
        self.runtime.reset()

    @contextmanager
    def cache_context(self, name: str) -> Iterator[None]:
        """Calls inside keep their own steps and queues (``"cond"`` / ``"uncond"``)."""
        with self.runtime.context(name):
            yield

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        call = bind_call(self.original, args, kwargs)
        check_constants(type(self.original).__name__, call, self._constants)
        self._check_device(call)
        timestep = timestep_value(call[self._timestep_arg]) if self._timestep_arg else None
        self.runtime.begin_call(timestep)
        if self.mode == "whole":
            out = self.module(*[call[name] for name in self._tensor_args])
            output_type = getattr(self.module, "output_type", None)  # diffusers' Transformer2DModelOutput & co.
            out = output_type(**out) if output_type is not None and isinstance(out, dict) else out
        else:
            out = self.module(**call)
        self.runtime.end_call()
        return out

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["_original"], name)  # config, num_classes, dtype, ...

    def _check_device(self, call: dict[str, Any]) -> None:
        device = next((v.device for v in call.values() if isinstance(v, torch.Tensor) and v.is_floating_point()), None)
        if self._device is not None and device is not None and device.type != self._device.type:
            raise TraceError(f"model was compiled with inputs on {self._device} but is called on {device}; "
                             "compile on the device you sample on")


def cache_model(model: nn.Module, schedule: Schedule | None = None, example_inputs: Any = None, *,
                runtime_cls: type[CacheRuntime] = CacheRuntime) -> CachedModel:
    """Trace ``model``, rewrite its cache sites, and apply ``schedule`` (``None``: compute all).

    ``model`` is not modified; the result shares its parameters. ``runtime_cls`` swaps in another
    reuse rule (a :class:`CacheRuntime` subclass), e.g. a peer method for a benchmark.
    """
    if isinstance(model, CachedModel):
        raise TraceError("model is already compiled by gocopt; use .set_schedule() or compile .original")
    return CachedModel(trace_sites(model, example_inputs), schedule, runtime_cls)


def _rewrite(traced: TracedModel, runtime: CacheRuntime) -> nn.Module:
    by_graph: dict[str, list[int]] = {}
    for site in traced.sites:
        if site.granularity == "branch":
            by_graph.setdefault(site.graph, []).append(site.index)
    ids = {s.index: s.site_id for s in traced.sites}

    def make_site(index: int, compute) -> CacheSite:
        return CacheSite(index, ids[index], compute, runtime)

    def make_chunks(linear: nn.Linear, chunks: int, dim: int, consumers) -> ConditioningChunks:
        return ConditioningChunks(linear, chunks, dim, consumers, runtime)

    for path, gm in traced.graphs.items():
        indices = by_graph.get(path, [])
        insert_cache_sites(gm, [traced.branch_of[i] for i in indices], indices, make_site)
        prune_site_conditioning(gm, make_chunks)
    if traced.mode == "whole":
        return traced.graphs[""]
    replacements: dict[str, nn.Module] = {
        path: TracedBlock(path, gm, traced.model.get_submodule(path), traced.block_calls[path])
        for path, gm in traced.graphs.items()
    }
    for site in traced.sites:
        if site.granularity == "block":
            replacements[site.graph] = BlockCacheSite(site.index, site.site_id, traced.model.get_submodule(site.graph), runtime)
    return _copy_with_replacements(traced.model, replacements)


def _copy_with_replacements(model: nn.Module, replacements: dict[str, nn.Module]) -> nn.Module:
    """A shallow copy of ``model`` with some submodules swapped; the original is untouched.

    Only the modules on the paths to the replaced ones are copied (their ``_modules`` dicts),
    everything else — parameters included — is shared.
    """
    root = _shallow(model)
    copied = {id(root)}
    for path, replacement in replacements.items():
        parent = root
        parts = path.split(".")
        for part in parts[:-1]:
            child = parent._modules[part]
            if id(child) not in copied:
                child = _shallow(child)
                copied.add(id(child))
                parent._modules[part] = child
            parent = child
        parent._modules[parts[-1]] = replacement
    return root


def _shallow(module: nn.Module) -> nn.Module:
    clone = copy.copy(module)
    clone._modules = dict(module._modules)
    return clone


__all__ = ["CachedModel", "cache_model"]
