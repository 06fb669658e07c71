"""Names with one meaning, and only public ways in.

A Function never shares a class name with a Module (go-to-definition has one answer); no module
of the package reads another module's private names or the graph's private link `_ctx` (outside
tensor.py and function.py, which own it; `Tensor.grad_fn` is the public way in); and every import
of the package's top folder sits at the top of its file, where a reader looks for it.
"""

import ast
import importlib
import inspect
from pathlib import Path

import pytest

from tinygrad_mnist import Function, nn

ROOT = Path(__file__).resolve().parent.parent
TOP_MODULES = sorted(path for path in (ROOT / "tinygrad_mnist").glob("*.py") if path.name != "__init__.py")
CODE = sorted((ROOT / "tinygrad_mnist").rglob("*.py")) + sorted((ROOT / "examples").rglob("*.py"))


def _classes(predicate):
    found = {}
    for path in TOP_MODULES:
        module = importlib.import_module(f"tinygrad_mnist.{path.stem}")
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__ == module.__name__ and predicate(obj):
                found[name] = module.__name__
    return found


def test_no_function_shares_a_class_name_with_a_module():
    functions = _classes(lambda cls: issubclass(cls, Function))
    modules = _classes(lambda cls: issubclass(cls, nn.Module))
    shared = sorted(set(functions) & set(modules))
    assert not shared, [f"{name}: {functions[name]} and {modules[name]}" for name in shared]


@pytest.mark.parametrize("path", TOP_MODULES, ids=lambda path: path.name)
def test_every_import_sits_at_the_top_of_the_file(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    first_definition = next((node.lineno for node in tree.body if not isinstance(node, (ast.Import, ast.ImportFrom, ast.Expr))), None)
    late = [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom)) and (node not in tree.body or (first_definition and node.lineno > first_definition))
    ]
    assert not late, f"{path.name} imports after its first definition or inside a function:\n  " + "\n  ".join(late)


def _private_module_uses(tree):
    """`alias._name` where alias is a module imported from the package, and `from .x import _name`."""
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("tinygrad_mnist")):
            aliases.update(alias.asname or alias.name for alias in node.names if not alias.name.startswith("_"))
            yield from (f"from {'.' * node.level}{node.module or ''} import {alias.name}" for alias in node.names if alias.name.startswith("_"))
        elif isinstance(node, ast.Import):
            aliases.update(alias.asname or alias.name.split(".")[0] for alias in node.names if alias.name.startswith("tinygrad_mnist"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            if node.attr.startswith("_") and not node.attr.startswith("__"):
                yield f"{node.value.id}.{node.attr}"


@pytest.mark.parametrize("path", CODE, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_file_reads_another_module_s_private_names_or_the_graph_s_private_link(path):
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    problems = list(_private_module_uses(tree))
    if path.name not in ("tensor.py", "function.py") or path.parent.name != "tinygrad_mnist":
        problems += [f"line {node.lineno}: .{node.attr}" for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "_ctx"]
    assert not problems, f"{path.relative_to(ROOT)} reaches into private names (make the helper public, or use grad_fn): {problems}"
