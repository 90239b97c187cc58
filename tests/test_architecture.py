"""The rule of dependencies: each layer of gocopt imports only the layers below it.

Read off the source (every ``from gocopt.… import``, also inside functions), so a cycle or an
upward import fails here before anyone has to untangle it. docs/architecture.md explains the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gocopt"
LAYERS = [  # bottom to top; a unit may import units of lower layers only
    {"errors", "atomic", "timing", "work"},
    {"numerics"},  # guarded solves: below every package that fits anything
    {"data", "models", "sampling", "schedule"},  # schedule: pure data (mask, GOC, step plans, file)
    {"metrics", "trace"},
    {"passes"},
    {"runtime"},
    {"compiled"},
    {"calibrate", "search", "evaluate", "report", "plots", "compiled_budgets"},  # compiled_budgets: one per budget
    {"driver"},  # calibrate → search → score → stamp, for models and pipelines alike
    {"integrations", "legacy"},  # legacy: gocopt 0.1's keyword arguments, folded into 0.2's objects
    {"api"},
    {"cli"},
    {"__main__"},
]
LAYER = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def _unit(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0].removesuffix(".py")


def _imports() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "__init__.py":
            continue  # the lazy public names
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gocopt."):
                found.append((_unit(path), node.module.split(".")[1], f"{path.relative_to(PACKAGE)}:{node.lineno}"))
            elif isinstance(node, ast.Import):
                found += [(_unit(path), a.name.split(".")[1], f"{path.relative_to(PACKAGE)}:{node.lineno}")
                          for a in node.names if a.name.startswith("gocopt.")]
    return found


def test_every_unit_has_a_layer():
    units = {_unit(p) for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py"}
    assert units <= set(LAYER), f"place {sorted(units - set(LAYER))} in LAYERS (and docs/architecture.md)"


def test_imports_only_go_down():
    upward = [f"{where}: {source} imports {target}" for source, target, where in _imports()
              if source != target and LAYER[target] >= LAYER[source]]
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)
