"""The rewrite: move each site's nodes into a submodule that the runtime calls or skips.

``insert_cache_sites`` mutates the GraphModule it is given (one that gocopt traced and owns —
never the user's module) and returns it. For each site:

* the site's nodes are copied into a new graph whose placeholders are the site's inputs and
  whose output is the tuple of the site's outputs (a ``GraphModule`` sharing the original
  submodules and parameters: no copies);
* one ``call_module`` node to a wrapper (made by ``make_site``) takes their place, right after
  the last of the inputs; every use of a site output reads ``getitem(call, j)`` instead;
* the original nodes are erased.

With every site computed, the graph performs exactly the original operations in the original
order within each site, so the output is bit-identical.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

from torch import fx, nn

from gocopt.errors import PassError
from gocopt.trace.branches import BranchSite

SiteFactory = Callable[[int, fx.GraphModule], nn.Module]
SITE_PREFIX = "gocopt_site_"


def extract_site_graph(gm: fx.GraphModule, site: BranchSite) -> fx.GraphModule:
    """A new GraphModule computing ``site.outputs`` from ``site.inputs`` (``gm`` is not changed)."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in site.inputs:
        env[node] = graph.placeholder(node.name)
        env[node].meta = dict(node.meta)
    for node in site.nodes:
        for arg in node.all_input_nodes:
            if arg not in env and arg.op == "get_attr":
                env[arg] = graph.get_attr(str(arg.target))
        env[node] = graph.node_copy(node, lambda a: env[a])
    graph.output(tuple(env[o] for o in site.outputs))
    graph.lint()
    return fx.GraphModule(gm, graph, class_name="SiteCompute")


def insert_cache_sites(gm: fx.GraphModule, sites: Sequence[BranchSite], indices: Sequence[int],
                       make_site: SiteFactory) -> fx.GraphModule:
    """Replace each of ``sites`` in ``gm`` by a call of ``make_site(index, compute)``; mutates ``gm``."""
    if len(sites) != len(indices):
        raise PassError(f"insert_cache_sites: {len(sites)} sites but {len(indices)} indices")
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    for site, index in zip(sites, indices):
        missing = [n.name for n in site.nodes if n.graph is not gm.graph]
        if missing:
            raise PassError(f"insert_cache_sites: site {index} refers to nodes not in this graph: {missing[:3]}")
        compute = extract_site_graph(gm, site)
        name = f"{SITE_PREFIX}{index}"
        gm.add_submodule(name, make_site(index, compute))
        anchor = max(site.inputs, key=order.__getitem__) if site.inputs else next(iter(gm.graph.nodes))
        with gm.graph.inserting_after(anchor):
            call = gm.graph.call_module(name, tuple(site.inputs))
        call.meta["gocopt"] = {"site": index}
        getters = []
        with gm.graph.inserting_after(call):
            for j, output in reversed(list(enumerate(site.outputs))):
                getters.append((output, gm.graph.call_function(operator.getitem, (call, j))))
        for output, getter in getters:
            getter.meta = dict(output.meta)
            output.replace_all_uses_with(getter)
        for node in reversed(site.nodes):
            if node.users:
                raise PassError(f"insert_cache_sites: node {node.format_node()} of site {index} is still used "
                                f"by {[u.name for u in node.users]}")
            gm.graph.erase_node(node)
    for node in list(gm.graph.nodes):
        if node.op == "get_attr" and not node.users:
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()
    return gm
