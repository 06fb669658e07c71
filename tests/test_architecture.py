"""The package's modules import each other in one direction only: no import cycles.

A cycle (function.py importing tensor.py, which imports ops.py, which imports function.py) works
only as long as the imports happen in a lucky order, and it hides which idea rests on which.
docs/architecture.md draws the layers; this test holds the code to them. Imports inside
functions count too: they are the usual way a cycle is smuggled past Python.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tinygrad_mnist"


def package_imports(path):
    """The names of the package modules that the module at `path` imports, anywhere in it."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:  # from . import x / from .x import y
            if node.module:
                imported.add(node.module.split(".")[0])
            else:
                imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tinygrad_mnist."):
            imported.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith("tinygrad_mnist."))
    return imported


def import_graph():
    modules = {path.stem: path for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    return {name: package_imports(path) & set(modules) for name, path in modules.items()}


def find_cycle(graph):
    """One import cycle as a list of module names, or None (depth-first search, colouring nodes)."""
    state = {}  # name -> "open" while its imports are being followed, "done" after

    def visit(name, path):
        state[name] = "open"
        for imported in sorted(graph[name]):
            if state.get(imported) == "open":
                return path[path.index(imported):] + [imported]
            if imported not in state:
                cycle = visit(imported, path + [imported])
                if cycle:
                    return cycle
        state[name] = "done"
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name, [name])
            if cycle:
                return cycle
    return None


def test_the_package_has_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize(
    "module, must_not_import",
    [
        ("function", {"tensor", "ops", "viz", "nn", "optim", "functional"}),
        ("ops", {"tensor", "viz", "nn", "optim", "functional"}),
        ("fused", {"tensor", "viz", "nn", "optim", "functional"}),
        ("tensor", {"viz", "nn", "optim", "functional"}),
    ],
)
def test_the_engine_does_not_know_the_layers_above_it(module, must_not_import):
    assert not import_graph()[module] & must_not_import


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"function": {"tensor"}, "tensor": {"ops"}, "ops": {"function"}}) == ["function", "tensor", "ops", "function"]
    assert find_cycle({"tensor": {"ops"}, "ops": {"function"}, "function": set()}) is None
