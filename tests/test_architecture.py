"""Every module of the package imports only what docs/architecture.md allows it, in one direction.

A cycle (function.py importing tensor.py, which imports ops.py, which imports function.py) works
only as long as the imports happen in a lucky order, and it hides which idea rests on which.
docs/architecture.md lists each module and what it may import; ALLOWED below is that table, and
these tests hold every module to its row. Imports inside functions count too: they are the usual
way a cycle is smuggled past Python.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "tinygrad_mnist"

ENGINE = {"tensor", "function", "ops", "fused", "conv", "modes"}
LAYERS = ENGINE | {"randomness", "functional", "module", "nn", "optim", "gradcheck"}
# module -> the package modules it may import (as dotted names inside tinygrad_mnist)
ALLOWED = {
    "__init__": LAYERS,
    "modes": set(),
    "function": {"modes"},
    "ops": {"function"},
    "fused": {"function"},
    "conv": {"function"},
    "tensor": {"function", "fused", "modes", "ops"},
    "randomness": set(),
    "functional": {"conv", "fused", "ops", "tensor", "modes", "randomness"},
    "nn": {"functional", "fused", "tensor", "function", "randomness", "module"},
    "module": {"tensor"},
    "optim": set(),
    "gradcheck": {"tensor", "modes"},
    "reference": set(),
    "atomic": set(),
    "backward_steps": set(),  # reaches the graph through the Tensors it is given: graph_order, grad_fn
    "viz": {"atomic", "backward_steps", "tensor", "function"},
    # the kit: uses the engine and the layers, never the other way round
    "lab.__init__": set(),
    "lab.extras": set(),
    "lab.idx": set(),
    "lab.data": set(),
    "lab.datasets": {"lab.idx"},
    "lab.digits": {"lab.extras"},
    "lab.plots": {"atomic", "lab.extras"},
    "lab.interop": {"nn", "tensor", "lab.extras"},
    "lab.checkpoint": {"atomic"},
    "lab.command": {"atomic"},
    "lab.settings": {"lab.datasets", "lab.plots"},
    "lab.models": {"modes", "nn", "tensor", "lab.checkpoint", "lab.data", "lab.settings"},
    "lab.run": {"atomic", "functional", "modes", "tensor", "viz", "lab.checkpoint", "lab.command", "lab.data",
                "lab.datasets", "lab.models", "lab.plots", "lab.settings"},
}
# the exercise checker: its modules use the layers, the gradient check and the checker's common part
EXERCISE_ALLOWED = LAYERS | {"exercises", "exercises.common", "exercises.check", "exercises.exercise",
                               "exercises.probes", "exercises.process"}
ALLOWED["exercises.common"] = LAYERS | {"lab.data", "lab.datasets", "lab.idx"}


def modules():
    """Dotted name inside the package ("tensor", "lab.run", "exercises.common") -> path."""
    return {".".join(path.relative_to(PACKAGE).with_suffix("").parts): path for path in PACKAGE.rglob("*.py")}


def package_imports(name, path, known):
    """The package modules that the module `name` at `path` imports, anywhere in it."""
    package = name.split(".")[:-1]  # the package a module (or an __init__) sits in
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:  # from . import x, from ..x import y
            base = package[: len(package) - node.level + 1]
            target = base + (node.module.split(".") if node.module else [])
            for alias in node.names:  # `from . import nn` imports the module nn
                submodule = ".".join(target + [alias.name])
                imported.add(submodule if submodule in known or f"{submodule}.__init__" in known else ".".join(target))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tinygrad_mnist"):
            imported.add(node.module.removeprefix("tinygrad_mnist").lstrip("."))
        elif isinstance(node, ast.Import):
            imported.update(alias.name.removeprefix("tinygrad_mnist.") for alias in node.names
                            if alias.name.startswith("tinygrad_mnist."))
    return {module.removesuffix(".__init__") for module in imported} - {"", name, name.removesuffix(".__init__")}


def import_graph():
    known = modules()
    return {name: package_imports(name, path, known) for name, path in known.items()}


def allowed(name):
    if name in ALLOWED:
        return ALLOWED[name]
    if name.startswith("exercises."):
        return EXERCISE_ALLOWED
    return None


def find_cycle(graph):
    """One import cycle as a list of module names, or None (depth-first search, colouring nodes)."""
    state = {}  # name -> "open" while its imports are being followed, "done" after

    def visit(name, path):
        state[name] = "open"
        for imported in sorted(graph.get(name, ())):
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


def test_every_module_has_a_row_in_the_table():
    missing = sorted(name for name in modules() if allowed(name) is None)
    assert not missing, f"add these modules to ALLOWED here and to docs/architecture.md: {missing}"


def test_every_module_imports_only_what_its_row_allows():
    problems = [f"{name} imports {sorted(imports - allowed(name))}"
                for name, imports in sorted(import_graph().items()) if imports - allowed(name)]
    assert not problems, "; ".join(problems)


def test_the_engine_never_imports_the_kit_the_graph_drawer_or_the_exercises():
    for name, imports in import_graph().items():
        if not name.startswith(("lab.", "exercises.")):
            assert not {module for module in imports if module.startswith(("lab", "exercises"))}, name


def test_the_package_has_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_architecture_md_names_every_module():
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = {name for name in modules() if not name.endswith("__init__") and not name.startswith("exercises.")}
    missing = sorted(name for name in named if f"tinygrad_mnist/{name.replace('.', '/')}.py" not in text)
    assert not missing, f"docs/architecture.md does not list {missing}"


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"function": {"tensor"}, "tensor": {"ops"}, "ops": {"function"}}) == ["function", "tensor", "ops", "function"]
    assert find_cycle({"tensor": {"ops"}, "ops": {"function"}, "function": set()}) is None
