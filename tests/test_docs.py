"""The docs stay true: their snippets run, their code pointers exist, api.md lists every public name.

Snippets. Every fenced block that opens with ```python in README.md and in docs/*.md (found by
glob, so a new page is tested the day it is added) runs here. A file's blocks run in order in one
namespace, so a later block may use names from an earlier one, in a fresh temporary working
directory, with the repo root on sys.path (so `import examples...` and `tinygrad_mnist` work
without installing). Snippets check what the text claims with plain `assert` lines. A failure
names the file, the block number and the line in the .md file.

To show code that must not run (it needs a shell, the network, or the MNIST files), open the
block with ```python no-run instead. GitHub still highlights it as Python. Use it sparingly:
a block that does not run is a block that can silently go stale.

Code pointers. Docs point at code as `tinygrad_mnist/fused.py: CrossEntropy.backward`: a file,
then a dotted name defined in it. Every such pointer (and every bare `path/to/file.py`) must
exist, so a rename cannot leave the docs pointing at nothing.

API reference. docs/api.md has a section per module, headed ## `tinygrad_mnist.<module>`, with
a table whose first column is a signature in backticks, such as `linear(x, weight, bias=None)`
or `Tensor.sum(axis=None, keepdims=False)`. Every public function, class, method and property
must have a row, with the parameter names of the code (and its defaults, where they are plain
literals), and every public name must have a docstring.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import re
import traceback
from pathlib import Path

import pytest

import tinygrad_mnist
from tinygrad_mnist import Function

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = sorted(ROOT.glob("docs/*.md")) + ([ROOT / "README.md"] if (ROOT / "README.md").exists() else [])
SKIP_MARKER = "no-run"
SUBMODULES = [
    "tensor", "function", "ops", "fused", "functional", "module", "nn", "optim",
    "gradcheck", "modes", "randomness", "reference", "viz", "backward_steps", "conv",
    "atomic", "lab.checkpoint", "lab.data", "lab.datasets", "lab.idx", "lab.plots", "lab.digits", "lab.interop",
    "lab.extras", "lab.settings", "lab.models", "lab.run",
]


# ----- snippets ----------------------------------------------------------------------------------
def python_blocks(text):
    """[(line number of the first code line, code)] for each ```python block, no-run ones left out.

    Fences may be indented (inside a list item); the code is dedented by the fence's indent.
    """
    blocks, lines, index = [], text.splitlines(), 0
    while index < len(lines):
        match = re.match(r"^(\s*)(`{3,}|~{3,})\s*(\S*)(.*)$", lines[index])
        index += 1
        if not match:
            continue
        indent, fence, language, rest = match.groups()
        start, body = index, []
        while index < len(lines) and not re.match(rf"^\s*{re.escape(fence)}\s*$", lines[index]):
            line = lines[index]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            index += 1
        index += 1  # the closing fence
        if language.lower() in ("python", "py") and SKIP_MARKER not in rest.split():
            blocks.append((start + 1, "\n".join(body) + "\n"))
    return blocks


def test_python_blocks_finds_runnable_blocks_and_skips_no_run_and_other_languages():
    text = "\n".join([
        "intro",
        "```python",
        "a = 1",
        "```",
        "```python no-run",
        "import this_does_not_exist",
        "```",
        "```sh",
        "echo hi",
        "```",
        "1. a list item:",
        "   ```python",
        "   b = a + 1",
        "   ```",
    ])
    assert python_blocks(text) == [(3, "a = 1\n"), (13, "b = a + 1\n")]


def relative(path):
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", DOC_FILES, ids=relative)
def test_every_python_snippet_runs(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    namespace = {"__name__": f"docs_snippets_{path.stem.replace('-', '_')}"}
    blocks = python_blocks(path.read_text(encoding="utf-8"))
    for number, (line, code) in enumerate(blocks, start=1):
        # pad with blank lines so a traceback's line numbers are those of the .md file
        compiled = compile("\n" * (line - 1) + code, str(path), "exec")
        failure = None
        try:
            exec(compiled, namespace)
        except Exception:  # noqa: BLE001 - any failure of a snippet is a failure of the docs
            failure = traceback.format_exc(limit=-3)
        if failure:
            pytest.fail(
                f"{relative(path)}: python block {number} of {len(blocks)} (starting at line {line}) "
                f"failed:\n{failure}",
                pytrace=False,
            )


# ----- code pointers -----------------------------------------------------------------------------
POINTER = re.compile(r"`((?:tinygrad_mnist|examples|tests|benchmarks)/[\w/.-]+\.py)(?::\s*([\w.]+))?`")


@functools.lru_cache(maxsize=None)
def defined_names(path):
    """Every dotted name defined in a Python file: functions, classes, their methods, constants."""
    names = set()

    def visit(body, prefix):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(prefix + node.name)
                if isinstance(node, ast.ClassDef):
                    visit(node.body, prefix + node.name + ".")
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(prefix + target.id for target in targets if isinstance(target, ast.Name))

    visit(ast.parse(path.read_text(encoding="utf-8")).body, "")
    return names


@pytest.mark.parametrize("path", DOC_FILES, ids=relative)
def test_every_code_pointer_names_a_file_and_a_definition_that_exist(path):
    text = path.read_text(encoding="utf-8")
    broken = []
    for file_name, dotted in POINTER.findall(text):
        target = ROOT / file_name
        if not target.is_file():
            broken.append(f"`{file_name}`: no such file")
        elif dotted and dotted not in defined_names(target):
            broken.append(f"`{file_name}: {dotted}`: {file_name} defines no {dotted}")
    assert not broken, f"{relative(path)} points at code that is not there:\n  " + "\n  ".join(broken)


# ----- links -------------------------------------------------------------------------------------
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def prose(text, keep_inline_code=False):
    """The text without fenced blocks, and without inline code (where `f(x)` is code, not a
    link) unless keep_inline_code, which keeps the code but drops its backticks."""
    kept, fence = [], None
    for line in text.splitlines():
        marker = re.match(r"^\s*(`{3,}|~{3,})", line)
        if fence is None and marker:
            fence = marker.group(1)
        elif fence is not None and re.match(rf"^\s*{re.escape(fence)}\s*$", line):
            fence = None
        elif fence is None:
            kept.append(line.replace("`", "") if keep_inline_code else re.sub(r"`[^`]*`", "", line))
    return "\n".join(kept)


def heading_anchors(path):
    """The anchors GitHub makes for a page's headings: lower case, punctuation dropped, - for space."""
    anchors = set()
    for line in prose(path.read_text(encoding="utf-8"), keep_inline_code=True).splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            anchors.add(re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("path", DOC_FILES, ids=relative)
def test_every_relative_link_reaches_a_file_and_heading_that_exist(path):
    broken = []
    for target in LINK.findall(prose(path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            shown = relative(linked) if linked.is_relative_to(ROOT) else linked
            broken.append(f"({target}): no file {shown}")
        elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
            broken.append(f"({target}): {relative(linked)} has no heading with the anchor #{anchor}")
    assert not broken, f"{relative(path)} has broken links:\n  " + "\n  ".join(broken)


# ----- the public API ----------------------------------------------------------------------------
def public_names(module):
    """(qualified name, object) for the public functions and classes defined in `module`, and for
    the public methods and properties of those classes that do not override a documented base."""
    found = []
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        found.append((name, obj))
        if not inspect.isclass(obj):
            continue
        for attribute, value in vars(obj).items():
            if attribute.startswith("_"):
                continue
            if not isinstance(value, (property, staticmethod, classmethod)) and not inspect.isfunction(value):
                continue
            if any(attribute in vars(base) for base in obj.__mro__[1:]):
                continue  # forward/backward of an op, forward of a layer: documented on the base
            found.append((f"{name}.{attribute}", value))
    return found


def api_sections():
    """{module name: {entry name: parameter text or None}} from the tables of docs/api.md."""
    sections, current = {}, None
    for line in (ROOT / "docs" / "api.md").read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^##\s+`([\w.]+)`", line)
        if heading:
            current = sections.setdefault(heading.group(1), {})
            continue
        entry = re.match(r"^\|\s*`([\w.]+)(?:\(([^`]*)\))?`", line)
        if entry and current is not None:
            current[entry.group(1)] = entry.group(2)
    return sections


def documented_parameters(text):
    """[(name, default text or None)] from a signature's parameter text, e.g. 'x, axis=-1'."""
    parameters, depth, piece = [], 0, ""
    for character in text + ",":
        if character == "," and depth == 0:
            if piece.strip():
                name, _, default = piece.strip().partition("=")
                parameters.append((name.strip(), default.strip() or None))
            piece = ""
            continue
        depth += character in "([{"
        depth -= character in ")]}"
        piece += character
    return parameters


def code_parameters(obj):
    """[(name, parameter)] as a doc row should list them: no self, '*' before keyword-only ones.

    An op (a Function subclass) is listed as `Op.apply(...)` with the parameters of its forward
    after `ctx`: the Tensor inputs, then the keyword options.
    """
    skipped = ("self", "cls")
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if inspect.isclass(obj) and issubclass(obj, Function):
        obj, skipped = obj.forward, ("ctx",)
    signature = inspect.signature(obj)
    result, star_shown = [], False
    for parameter in signature.parameters.values():
        if parameter.name in skipped:
            continue
        if parameter.kind is parameter.VAR_POSITIONAL:
            result.append(("*" + parameter.name, parameter))
            star_shown = True
        elif parameter.kind is parameter.VAR_KEYWORD:
            result.append(("**" + parameter.name, parameter))
        else:
            if parameter.kind is parameter.KEYWORD_ONLY and not star_shown:
                result.append(("*", None))
                star_shown = True
            result.append((parameter.name, parameter))
    return result


def test_api_md_lists_everything_tinygrad_mnist_exports():
    top_level = api_sections().get("tinygrad_mnist", {})
    missing = [name for name in tinygrad_mnist.__all__ if name not in top_level]
    assert not missing, f"docs/api.md, section `tinygrad_mnist`, lacks rows for {missing}"


@pytest.mark.parametrize("module_name", SUBMODULES)
def test_api_md_lists_every_public_name_with_the_code_s_parameters(module_name):
    module = importlib.import_module(f"tinygrad_mnist.{module_name}")
    section = api_sections().get(f"tinygrad_mnist.{module_name}")
    assert section is not None, f"docs/api.md has no section ## `tinygrad_mnist.{module_name}`"
    problems = []
    for name, obj in public_names(module):
        is_op = module_name in ("ops", "conv", "fused") and inspect.isclass(obj) and issubclass(obj, Function)
        entry_name = f"{name}.apply" if is_op else name
        if entry_name not in section:
            problems.append(f"no row for `{entry_name}`")
            continue
        text = section[entry_name]
        if text is None or isinstance(obj, property):
            continue  # a property, or a name shown without its parameters (exceptions)
        try:
            expected = code_parameters(obj)
        except (TypeError, ValueError):
            continue  # no signature to compare (a builtin)
        written = documented_parameters(text)
        if [name for name, _ in written] != [name for name, _ in expected]:
            problems.append(
                f"`{entry_name}({text})` lists parameters {[n for n, _ in written]}; "
                f"the code has {[n for n, _ in expected]}"
            )
            continue
        for (parameter_name, default_text), (_, parameter) in zip(written, expected):
            if default_text is None or parameter is None:
                continue
            try:
                default = ast.literal_eval(default_text)
            except (ValueError, SyntaxError):
                continue  # np.float32 and other names: not compared
            if parameter.default is parameter.empty or default != parameter.default:
                shown = "none" if parameter.default is parameter.empty else repr(parameter.default)
                problems.append(
                    f"`{entry_name}`: {parameter_name}={default_text} in api.md, default {shown} in the code"
                )
    assert not problems, f"docs/api.md is out of date for tinygrad_mnist.{module_name}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("module_name", SUBMODULES)
def test_every_public_name_has_a_docstring(module_name):
    module = importlib.import_module(f"tinygrad_mnist.{module_name}")
    undocumented = []
    for name, obj in public_names(module):
        target = obj.__func__ if isinstance(obj, (staticmethod, classmethod)) else obj
        doc = target.__doc__ if isinstance(target, property) else inspect.getdoc(target)
        # a NamedTuple without a docstring of its own gets one like "MNIST(train_images, ...)"
        if not doc or doc.startswith(f"{name}("):
            undocumented.append(name)
    assert not undocumented, f"tinygrad_mnist.{module_name}: add a docstring to {undocumented}"


def test_every_op_docstring_states_its_gradient_rule():
    from tinygrad_mnist import conv, fused, ops

    silent = [
        name for module in (ops, conv, fused) for name, obj in public_names(module)
        if inspect.isclass(obj) and issubclass(obj, Function)
        and not re.search(r"d (out|loss)\s*/\s*d|gradient", inspect.getdoc(obj) or "")
    ]
    assert not silent, f"these ops' docstrings give no gradient rule: {silent}"
