"""Tracing and site discovery: model + one example call → cache sites (no rewriting here)."""

from gocopt.trace.sites import Site, TracedModel, find_sites, trace_sites

__all__ = ["Site", "TracedModel", "find_sites", "trace_sites"]
