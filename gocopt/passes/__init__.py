"""Graph passes: small functions from graph to graph."""

from gocopt.passes.insert_cache_sites import extract_site_graph, insert_cache_sites

__all__ = ["extract_site_graph", "insert_cache_sites"]
