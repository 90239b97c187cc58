"""The compiled model: the user's DiT with its cache sites rewritten, run by step plans.

``cache_model(model, schedule)`` traces the model (never editing it), rewrites every site and
returns a :class:`CachedModel` — an ``nn.Module`` that is called exactly like the original and
whose parameters are the original ones. Without a schedule it computes everything (and equals
the original bit for bit); ``set_schedule`` switches schedules; ``cache_context`` separates the
conditional and unconditional calls of a guided sampler; ``reset`` starts a new run.

Execution is planned, not decided: setting a schedule turns each distinct step *shape* (which
sites compute) into its own straight-line graph (:func:`~gocopt.passes.specialize_plan`), with the
step's predictor coefficients as a tensor input, so a schedule has a handful of graphs whatever its
predictor. A call binds its arguments, asks the runtime which step of *its run* it is (host integers
only, no device reads) and runs that step's graph with the history slots its run kept and that
step's coefficients. Each graph can be compiled whole (:meth:`CachedModel.compile`, or plain
``torch.compile`` of the model) and captured as CUDA graphs, since nothing in it depends on the step.
Runs keep their own state, so one compiled model serves concurrent runs (threads, asyncio tasks,
pipelines sharing it), each exactly as alone.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
import torch
from torch import fx, nn

from gocopt.errors import GocoptError, ScheduleError, TraceError
from gocopt.passes import insert_cache_sites, specialize_plan
from gocopt.passes.prune_conditioning import ChunkPolicy
from gocopt.runtime.modules import BlockCacheSite, CacheSite, Program, TracedBlock, check_constants
from gocopt.runtime.runtime import CacheRuntime
from gocopt.runtime.state import Call
from gocopt.schedule.plan import RunPlan, StepPlan
from gocopt.schedule.schedule import Schedule
from gocopt.trace.sites import TracedModel, trace_sites
from gocopt.trace.tracer import CallBinder, has_tensor

logger = logging.getLogger(__name__)
TIMESTEP_ARGUMENTS = ("t", "timestep", "timesteps")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
_SPECIALIZED_CACHE_SIZE = 512  # step-plan graphs kept across set_schedule calls (a search tries many)


class CachedModel(nn.Module):
    """A DiT whose cache sites run the step plans of a schedule (see the module docstring).

    Attributes:
        sites: the site table (one row per schedule column), with FLOPs and kinds.
        runtime: per-run state; ``runtime.memory_bytes()`` is what the cache holds right now;
            ``runtime.plan`` the distinct step plans of the schedule.
    """

    def __init__(self, traced: TracedModel, schedule: Schedule | None = None) -> None:
        super().__init__()
        self.__dict__["_original"] = traced.model
        self.sites: pd.DataFrame = traced.table()
        graph_sites = {path: [s.index for s in traced.sites if s.granularity == "branch" and s.graph == path]
                       for path in traced.graphs}
        self.runtime = CacheRuntime(tuple(self.sites["site"]), graph_sites=graph_sites)
        self.mode = traced.mode
        self.module, self._graphs, self._blocks = _rewrite(traced, self.runtime)
        self._observed_layout: dict[str, list[tuple[int, int | None]]] = {
            key: sorted(outputs.items()) for key, (_, outputs) in self._graphs.items()}
        self._observed_layout.update({s.site_id: [(s.index, None)] for s in traced.sites if s.granularity == "block"})
        self._binder = CallBinder(traced.model)
        self._tensor_args = [k for k, v in traced.call.items() if has_tensor(v)]
        self._constants = {k: v for k, v in traced.call.items() if not has_tensor(v)}
        self._timestep_arg = next((a for a in TIMESTEP_ARGUMENTS if a in traced.call), None)
        self._device = next((v.device for v in traced.call.values() if isinstance(v, torch.Tensor)), None)
        self._output_type = getattr(self.module, "output_type", None)  # diffusers' Transformer2DModelOutput & co.
        self._compile_options: dict[str, Any] | None = None
        self._specialized: OrderedDict[tuple, Program] = OrderedDict()
        self._programs: list[Program] = []
        self.runtime.on_plan_change = self._build_programs
        self._build_programs(self.runtime.plan)
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

        Plans every step now (the distinct step plans are specialised into graphs, and compiled if
        :meth:`compile` was called). Logs at INFO what the schedule caches (and says so when it
        caches nothing); gocopt's own search switches schedules with ``log=False``.
        """
        self.runtime.set_schedule(schedule)
        if not log:
            return
        if schedule is None:
            logger.info("no schedule: every one of %d sites is computed at every step", len(self.sites))
            return
        reused = int((~schedule.mask).sum())
        logger.info("schedule %r: %d steps × %d sites, %d site-steps reused (%.1f%%), cost %.3f of site FLOPs, "
                    "%d step graphs%s", schedule.name, schedule.steps, schedule.num_sites, reused,
                    100 * reused / schedule.mask.size, schedule.cost(self.site_flops), len(self.runtime.plan.plans),
                    "" if reused else " — nothing is cached: this is a no-op")

    def compile(self, *args: Any, **kwargs: Any) -> CachedModel:  # type: ignore[override]
        """Deprecated name of :meth:`compile_graphs` (in gocopt, "compile" is the schedule search)."""
        warnings.warn("CachedModel.compile() is deprecated and will be removed in gocopt 0.3; write "
                      "compile_graphs() (\"compile\" is gocopt.compile, the schedule search)", DeprecationWarning,
                      stacklevel=2)
        return self.compile_graphs(*args, **kwargs)

    def compile_graphs(
        self, *, mode: str | None = None, backend: str = "inductor", fullgraph: bool = True,
        dynamic: bool | None = False, options: dict[str, Any] | None = None, disable: bool = False,
    ) -> CachedModel:
        """Compile each distinct step graph with ``torch.compile``; returns ``self``.

        The step lookup stays in Python (a host integer, no guards) and coefficients are tensor
        inputs, so a schedule compiles once per step shape and never recompiles from step to step.
        ``mode="reduce-overhead"`` captures every graph as CUDA graphs (needs the model on a CUDA
        device) and then serves one sampling run at a time (every run's kept values would share the
        graphs' static buffers): a run started while another is in progress is refused. Plain
        ``torch.compile(cached_model)`` works too (one graph per plan, the same way), this call
        only makes each plan ``fullgraph`` and sets the options in one place. ``disable=True`` goes
        back to eager step plans.
        """
        if disable:
            self._compile_options = None
            self._build_programs(self.runtime.plan)
            return self
        device = self._parameter_device()
        if mode in CUDA_GRAPH_MODES and device.type != "cuda":
            raise GocoptError(f"mode={mode!r} captures CUDA graphs, but the model is on {device}; move it to a CUDA "
                              "device first (model.to('cuda') before gocopt.load/compile), or use mode=None on CPU")
        self._compile_options = {"mode": mode, "backend": backend, "fullgraph": fullgraph, "dynamic": dynamic}
        if options:
            self._compile_options["options"] = options
        self._build_programs(self.runtime.plan)
        return self

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
        """Calls inside keep their own steps and kept values (``"cond"`` / ``"uncond"``)."""
        with self.runtime.context(name):
            yield

    @torch.compiler.disable(recursive=False)  # the dispatcher stays in Python; each step plan compiles whole
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        call, bound = self._begin(args, kwargs)
        try:
            if self.mode != "whole":
                return self._end(call, self.module(**bound), ())
            inputs, kept, coefficients, program = self._whole_inputs(call, bound)
            return self._end(call, *program(*inputs, kept, coefficients))
        except BaseException:
            self._abort(call)
            raise

    @torch.compiler.disable
    def _begin(self, args: tuple, kwargs: dict) -> tuple[Call, dict[str, Any]]:
        """Host bookkeeping before a call: bind, check, find this run's step and plan."""
        bound = self._binder.bind(args, kwargs)
        check_constants(type(self.original).__name__, bound, self._constants)
        self._check_device(bound)
        runtime = self.runtime
        call = runtime.begin_call(bound[self._timestep_arg] if self._timestep_arg else None)
        if self._compile_options and self._compile_options["mode"] in CUDA_GRAPH_MODES and call.step == 0:
            others = runtime.runs_in_progress()
            if others:
                runtime.abort_call(call)
                raise GocoptError(
                    f"mode={self._compile_options['mode']!r} serves one sampling run at a time, and {others} other "
                    "run(s) are in progress on this model: CUDA graphs write every run's kept values into the same "
                    "static buffers, so interleaved runs would overwrite each other's; for concurrent runs compile "
                    "with mode=None (inductor without CUDA graphs) or load one model per worker")
            torch.compiler.cudagraph_mark_step_begin()  # a new run: the previous run's kept values are dead
        return call, bound

    @torch.compiler.disable
    def _whole_inputs(self, call: Call, bound: dict[str, Any]) -> tuple[list, tuple, torch.Tensor | None, Program]:
        kept, coefficients = self.runtime.graph_inputs(call, "")
        return [bound[name] for name in self._tensor_args], kept, coefficients, self._programs[call.plan]

    @torch.compiler.disable
    def _end(self, call: Call, out: Any, kept: tuple, *observed: tuple) -> Any:
        """Host bookkeeping after a call: keep values, hand observations out, advance the run."""
        if self.mode == "whole":
            call.kept[""] = kept
            if observed:
                call.observations.append(("", observed[0]))
            if self._output_type is not None and isinstance(out, dict):
                out = self._output_type(**out)
        if call.observations:
            self._observe(call)
        return self.runtime.end_call(call, out)

    @torch.compiler.disable
    def _abort(self, call: Call) -> None:
        self.runtime.abort_call(call)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["_original"], name)  # config, num_classes, dtype, ...

    # -- step plans → programs ------------------------------------------------------------------

    def _build_programs(self, run: RunPlan) -> None:
        """Specialise (and compile) every distinct plan of ``run`` for every traced graph, and put
        the run's coefficients on the model's device."""
        device = self._parameter_device()
        policy: ChunkPolicy = "span" if device.type == "cuda" else "runs"
        self.runtime.coefficients.prepare(device, self._parameter_dtype())
        options = tuple(sorted((self._compile_options or {}).items(), key=str))
        for key, (gm, outputs) in self._graphs.items():
            programs = [self._program(key, gm, outputs, plan, policy, options) for plan in run.plans]
            if key == "":
                self._programs = programs
            else:
                self._blocks[key].programs = programs

    def _program(self, key: str, gm, outputs: dict[int, int], plan: StepPlan, policy: ChunkPolicy,
                 options: tuple) -> Program:
        cache_key = (key, plan.restrict(sorted(outputs)), policy, repr(options))
        program = self._specialized.get(cache_key)
        if program is None:
            graph = specialize_plan(gm, plan, outputs, chunk_policy=policy)
            program = graph.forward  # its own code object: torch.compile caches one entry per plan
            if self._compile_options is not None:
                program = torch.compile(program, **self._compile_options)
            self._specialized[cache_key] = program
            while len(self._specialized) > _SPECIALIZED_CACHE_SIZE:
                self._specialized.popitem(last=False)
        else:
            self._specialized.move_to_end(cache_key)
        return program

    def _observe(self, call: Call) -> None:
        observed = []
        for key, flat in call.observations:
            offset = 0
            for site, outputs in self._observed_layout[key]:
                count = len(flat) if outputs is None else outputs
                observed.append((site, tuple(flat[offset:offset + count])))
                offset += count
        self.runtime.observe(call.step, sorted(observed, key=lambda item: item[0]))

    def _parameter_device(self) -> torch.device:
        parameter = next(self.original.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    def _parameter_dtype(self) -> torch.dtype:
        parameter = next((p for p in self.original.parameters() if p.is_floating_point()), None)
        return parameter.dtype if parameter is not None else torch.float32

    def _check_device(self, call: dict[str, Any]) -> None:
        device = next((v.device for v in call.values() if isinstance(v, torch.Tensor) and v.is_floating_point()), None)
        if self._device is not None and device is not None and device.type != self._device.type:
            raise TraceError(f"model was compiled with inputs on {self._device} but is called on {device}; "
                             "compile on the device you sample on")


def cache_model(model: nn.Module, schedule: Schedule | None = None, example_inputs: Any = None) -> CachedModel:
    """Trace ``model``, rewrite its cache sites, and apply ``schedule`` (``None``: compute all).

    ``model`` is not modified; the result shares its parameters. How reused values are made is the
    schedule's own predictor (:mod:`gocopt.schedule.predictors`).
    """
    if isinstance(model, CachedModel):
        raise TraceError("model is already compiled by gocopt; use .set_schedule() or compile .original")
    return CachedModel(trace_sites(model, example_inputs), schedule)


Graphs = dict[str, tuple[fx.GraphModule, dict[int, int]]]  # graph path → (rewritten graph, site → outputs)


def _rewrite(traced: TracedModel, runtime: CacheRuntime) -> tuple[nn.Module, Graphs, dict[str, TracedBlock]]:
    """Insert the cache sites into every traced graph; in per-block mode, swap blocks in a copy."""
    by_graph: dict[str, list[int]] = {}
    for site in traced.sites:
        if site.granularity == "branch":
            by_graph.setdefault(site.graph, []).append(site.index)
    ids = {s.index: s.site_id for s in traced.sites}
    graphs: Graphs = {}
    for path, gm in traced.graphs.items():
        indices = by_graph.get(path, [])
        insert_cache_sites(gm, [traced.branch_of[i] for i in indices], indices,
                           lambda index, compute: CacheSite(index, ids[index], compute))
        graphs[path] = (gm, {i: traced.sites[i].outputs for i in indices})
    if traced.mode == "whole":
        return traced.graphs[""], graphs, {}
    blocks = {path: TracedBlock(path, gm, traced.model.get_submodule(path), traced.block_calls[path], runtime)
              for path, gm in traced.graphs.items()}
    replacements: dict[str, nn.Module] = dict(blocks)
    for site in traced.sites:
        if site.granularity == "block":
            replacements[site.graph] = BlockCacheSite(site.index, site.site_id, traced.model.get_submodule(site.graph),
                                                      runtime)
    return _copy_with_replacements(traced.model, replacements), graphs, blocks


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
            assert child is not None, f"{path}: no module at {part}"
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
