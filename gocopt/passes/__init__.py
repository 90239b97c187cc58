"""Graph passes: small functions from graph to graph."""

from gocopt.passes.insert_cache_sites import extract_site_graph, insert_cache_sites
from gocopt.passes.prune_conditioning import prune_dead_chunks
from gocopt.passes.specialize import fuse_gated_residuals, specialize_plan

__all__ = ["extract_site_graph", "fuse_gated_residuals", "insert_cache_sites", "prune_dead_chunks", "specialize_plan"]
