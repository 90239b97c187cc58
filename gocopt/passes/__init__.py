"""Graph passes: small functions from graph to graph."""

from gocopt.passes.insert_cache_sites import extract_site_graph, insert_cache_sites
from gocopt.passes.prune_conditioning import prune_site_conditioning, sites_only_reached

__all__ = ["extract_site_graph", "insert_cache_sites", "prune_site_conditioning", "sites_only_reached"]
