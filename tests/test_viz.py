"""Graph pictures: the DOT source has the right nodes, edges, labels and styles; rendering works
with graphviz's `dot` and falls back to DOT source without it."""

import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import graphviz
import numpy as np
import pytest

from tinygrad_mnist import Function, Tensor, nn
from tinygrad_mnist import functional as F
from tinygrad_mnist import viz
from tinygrad_mnist.viz import INSTALL_HINT, draw_graph, render

REPO = Path(__file__).resolve().parent.parent
NODE_LINE = re.compile(r"^\t(\w+) \[(.*)\]$")
EDGE_LINE = re.compile(r'^\t(\w+) -> (\w+)(?: \[label="(.*)"\])?$')
LABEL = re.compile(r'label=(<<TABLE.*?</TABLE>>|"(?:[^"\\]|\\.)*"|[^\s\]]+)')
ATTRIBUTE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^\s\]]+)')


# ----- reading the DOT source back ---------------------------------------------------------------
def nodes_of(graph):
    """{node id: {"text": label as plain text, attribute: value, ...}} from the DOT source."""
    nodes = {}
    for line in graph.body:
        match = NODE_LINE.match(line.rstrip("\n"))
        if not match or " -> " in line or match.group(1) in ("graph", "node", "edge"):
            continue  # an edge, or default attributes for all nodes or edges
        node_id, attributes = match.groups()
        label = LABEL.search(attributes)
        rest = attributes[: label.start()] + attributes[label.end() :]
        node = {key: value.strip('"') for key, value in ATTRIBUTE.findall(rest)}
        markup = label.group(1)
        if markup[0] in '"<':
            markup = markup[1:-1]  # without the quotes, or the <> around an HTML-like label
        node["text"] = " ".join(re.sub(r"<[^>]*>", " ", markup).split())
        nodes[node_id] = node
    return nodes


def edges_of(graph):
    """[(source id, target id, label or None)] in the order of the DOT source."""
    return [match.groups() for line in graph.body if (match := EDGE_LINE.match(line.rstrip("\n")))]


def named(graph):
    """Edges written with readable names: a tensor by its name, an op by its label."""
    nodes = nodes_of(graph)

    def name(node_id):
        text = nodes[node_id]["text"]
        return text.split()[0] if node_id.startswith("t") else text

    return sorted((name(source), name(target), label) for source, target, label in edges_of(graph))


def op_names(graph):
    return sorted(node["text"] for node_id, node in nodes_of(graph).items() if node_id.startswith("op"))


def scalar(value, name):
    return Tensor(value, requires_grad=True, name=name)


def micrograd_expression():
    """L = (a * b + c) * f with a=2, b=-3, c=10, f=-2, after backward()."""
    a, b, c, f = scalar(2.0, "a"), scalar(-3.0, "b"), scalar(10.0, "c"), scalar(-2.0, "f")
    e = a * b
    e.name = "e"
    d = e + c
    d.name = "d"
    loss = d * f
    loss.name = "L"
    loss.backward()
    return loss


def mlp_step(sizes=(784, 32, 10), batch=4):
    """The loss of one training step after backward(), and the model (for draw_graph's names)."""
    rng = np.random.default_rng(0)
    model = nn.mlp(list(sizes), rng=rng)
    images = Tensor(rng.random((batch, sizes[0]), dtype=np.float32), name="images")
    loss = F.cross_entropy(model(images), rng.integers(0, sizes[-1], size=batch))
    loss.name = "loss"
    loss.backward()
    return loss, model


def draw_mlp_step(**options):
    loss, model = mlp_step()
    return draw_graph(loss, names=model, **options)


# ----- what is drawn -----------------------------------------------------------------------------
def test_scalar_expression_draws_one_node_per_op_and_edges_along_the_data():
    graph = draw_graph(micrograd_expression())
    assert op_names(graph) == ["Add", "Mul", "Mul"]
    assert named(graph) == sorted([
        ("a", "Mul", None), ("b", "Mul", None), ("Mul", "e", None),
        ("e", "Add", None), ("c", "Add", None), ("Add", "d", None),
        ("d", "Mul", None), ("f", "Mul", None), ("Mul", "L", None),
    ])
    assert len(nodes_of(graph)) == 7 + 3  # seven tensors, three ops


def test_tensor_nodes_show_name_shape_dtype_value_and_gradient():
    texts = {node["text"].split()[0]: node["text"] for node in nodes_of(draw_graph(micrograd_expression())).values()}
    # dL/da = b * f = 6, dL/db = a * f = -4, dL/dc = dL/dd = f = -2, dL/df = d = 4
    assert texts["a"] == "a () float32 data 2 grad 6"
    assert texts["b"] == "b () float32 data -3 grad -4"
    assert texts["c"] == "c () float32 data 10 grad -2"
    assert texts["e"] == "e () float32 data -6 grad -2"
    assert texts["f"] == "f () float32 data -2 grad 4"
    assert texts["L"] == "L () float32 data -8 grad 1"


def test_gradients_appear_only_after_backward_and_only_when_asked_for():
    a = scalar(3.0, "a")
    square = a * a
    before = " ".join(node["text"] for node in nodes_of(draw_graph(square)).values())
    square.backward()
    after = " ".join(node["text"] for node in nodes_of(draw_graph(square)).values())
    hidden = " ".join(node["text"] for node in nodes_of(draw_graph(square, show_grad=False)).values())
    assert "grad" not in before and "grad" not in hidden
    assert "a () float32 data 3 grad 6" in after  # d(a*a)/da = 2a, both uses added up


def test_small_tensors_show_every_value_and_large_ones_min_mean_max():
    small = Tensor([[1.0, -2.5, 0.125], [4.0, 5.0, 6.0]], requires_grad=True, name="small")
    large = Tensor(np.arange(12, dtype=np.float32).reshape(3, 4), requires_grad=True, name="large")
    total = small.sum() + large.sum()
    total.backward()
    texts = {node["text"].split()[0]: node["text"] for node in nodes_of(draw_graph(total)).values()}
    assert texts["small"] == "small (2, 3) float32 data [[1, -2.5, 0.125], [4, 5, 6]] grad [[1, 1, 1], [1, 1, 1]]"
    assert texts["large"] == "large (3, 4) float32 min mean max data 0 5.5 11 grad 1 1 1"


def test_mlp_step_shows_parameters_by_name_and_the_inputs_that_need_no_grad():
    nodes = nodes_of(draw_mlp_step())
    texts = [node["text"] for node_id, node in nodes.items() if node_id.startswith("t")]
    for expected in ("0.weight (32, 784) float32", "0.bias (32,) float32", "2.weight (10, 32) float32",
                     "2.bias (10,) float32", "images (4, 784) float32", "loss () float32"):
        assert any(text.startswith(expected) for text in texts), expected
    assert any(text.startswith("(4,) float32 data [") for text in texts)  # the class labels
    assert len(texts) == 10
    # every tensor backward() reached has its gradient; the images and labels got none
    assert [text.startswith(("images", "(4,)")) for text in texts] == ["grad" not in text for text in texts]
    assert op_names(draw_mlp_step()) == ["CrossEntropy", "LeakyReLUOp(0.01)", "LinearOp", "LinearOp"]


def test_parameters_inputs_intermediates_and_root_look_different():
    nodes = nodes_of(draw_mlp_step())

    def style_of(text_start):
        node = next(node for node in nodes.values() if node["text"].startswith(text_start))
        return node["shape"], node["style"], node["fillcolor"], node["color"]

    parameter, data, intermediate, root = style_of("0.weight"), style_of("images"), style_of("(4, 32)"), style_of("loss")
    assert len({parameter, data, intermediate, root}) == 4
    assert style_of("0.bias") == parameter and style_of("(4,)") == data  # labels are an input too
    assert "bold" in root[1] and "dashed" in data[1]
    op = next(node for node_id, node in nodes.items() if node_id.startswith("op"))
    assert op["shape"] == "ellipse" and op["shape"] != parameter[0]


def test_op_labels_show_options_compactly():
    x = Tensor(np.ones((2, 3)), requires_grad=True)

    def label(tensor):
        return viz.op_label(tensor.grad_fn)

    assert label(x.leaky_relu(0.01)) == "LeakyReLUOp(0.01)"
    assert label(x.sum(axis=1)) == "Sum(axis=1)"
    assert label(x.sum()) == "Sum"  # axis=None and keepdims=False are forward's defaults
    assert label(x.sum(axis=0, keepdims=True)) == "Sum(axis=0, keepdims=True)"
    assert label(x**2) == "Pow(2)"
    assert label(x.reshape(3, 2)) == "Reshape((3, 2))"
    assert label(x[0:1]) == "Index(0:1)"
    assert label(x[np.array([0, 1, 1])]) == "Index(array(3,))"  # arrays are summarized by shape
    assert label(x.exp()) == "Exp"
    long_shape = label(Tensor(np.ones(2**12), requires_grad=True).reshape(*([2] * 12)))
    assert long_shape.startswith("Reshape((2, 2, 2,") and long_shape.endswith("…)") and len(long_shape) < 40


def test_custom_function_appears_with_its_own_class_name_and_options():
    class ScaleBy(Function):
        """out = factor * x.   d out/d x = factor."""

        @staticmethod
        def forward(ctx, x, factor):
            return x * factor

        @staticmethod
        def backward(ctx, grad_out):
            return grad_out * ctx.options["factor"]

    x = scalar(1.5, "x")
    out = ScaleBy.apply(x, factor=3.0)
    out.backward()
    nodes = nodes_of(draw_graph(out))
    assert op_names(draw_graph(out)) == ["ScaleBy(3)"]
    op = next(node for node_id, node in nodes.items() if node_id.startswith("op"))
    assert op["tooltip"] == "out = factor * x.   d out/d x = factor."  # the docstring's math, on hover


def test_custom_function_without_docstring_gets_its_name_as_tooltip():
    class Twice(Function):
        @staticmethod
        def forward(ctx, x):
            return 2 * x

        @staticmethod
        def backward(ctx, grad_out):
            return 2 * grad_out

    nodes = nodes_of(draw_graph(Twice.apply(scalar(1.0, "x"))))
    assert nodes["op1"]["text"] == "Twice" and nodes["op1"]["tooltip"] == "Twice"  # not Function's docstring


def test_a_tensor_used_twice_gets_two_arrows_in_both_modes():
    x = scalar(3.0, "x")
    square = x * x
    square.name = "square"
    square.backward()
    assert named(draw_graph(square)) == [("Mul", "square", None), ("x", "Mul", None), ("x", "Mul", None)]
    assert named(draw_graph(square, mode="backward")) == [
        ("Mul", "x", "grad ()"), ("Mul", "x", "grad ()"), ("square", "Mul", "grad ()"),
    ]


def test_backward_mode_reverses_edges_labels_gradient_shapes_and_skips_inputs_without_grad():
    weight = Tensor(np.ones((2, 3)), requires_grad=True, name="weight")
    data = Tensor(np.ones((4, 3)), name="data")
    product = data @ weight.T  # (4, 3) @ (3, 2) -> (4, 2)
    product.name = "product"
    total = product.sum()
    total.name = "total"
    total.backward()
    forward = named(draw_graph(total))
    backward = named(draw_graph(total, mode="backward"))
    assert ("data", "MatMul", None) in forward
    assert backward == sorted([
        ("total", "Sum", "grad ()"), ("Sum", "product", "grad (4, 2)"), ("product", "MatMul", "grad (4, 2)"),
        ("MatMul", "(3,", "grad (3, 2)"),  # the transposed weight, unnamed: its text starts with its shape
        ("(3,", "Transpose", "grad (3, 2)"), ("Transpose", "weight", "grad (2, 3)"),
    ])
    assert not any(node["text"].startswith("data") for node in nodes_of(draw_graph(total, mode="backward")).values())


def test_max_nodes_collapses_the_rest_into_one_marker():
    x = scalar(1.0, "x")
    y = x
    for _ in range(50):
        y = y.tanh()  # 50 ops and 50 results, plus x: 101 nodes
    graph = draw_graph(y, max_nodes=10)
    nodes = nodes_of(graph)
    assert len(nodes) == 10 + 1
    assert nodes["more"]["text"] == "… 91 more nodes"
    # nodes alternate t0 (root), op1, t2, ...: the last one drawn, op9, gets its input from the marker
    assert [edge for edge in edges_of(graph) if "more" in edge] == [("more", "op9", None)]
    backward = draw_graph(y, max_nodes=11, mode="backward")
    assert nodes_of(backward)["more"]["text"] == "… 90 more nodes"
    assert [edge for edge in edges_of(backward) if "more" in edge] == [("t10", "more", None)]
    assert "more" not in nodes_of(draw_graph(y))  # 101 nodes fit in the default 200


def test_a_long_chain_is_walked_without_recursion():
    x = scalar(1.0, "x")
    y = x
    for _ in range(3000):  # far past Python's recursion limit of 1000
        y = y * 1.0
    graph = draw_graph(y, max_nodes=10**6, legend=False)
    assert len(nodes_of(graph)) == 3 * 3000 + 1  # per step: the constant 1.0, Mul, its result


def test_mlp_training_step_784_256_10_builds_its_dot_source_quickly():
    loss, model = mlp_step((784, 256, 10), batch=64)
    start = time.perf_counter()
    source = draw_graph(loss, names=model).source
    seconds = time.perf_counter() - start
    print(f"DOT source of a 784-256-10 step on 64 images built in {seconds * 1000:.1f} ms")
    assert seconds < 5  # a sanity bound only; it takes about a millisecond
    assert "0.weight" in source and "(256, 784) float32" in source and "(64, 784) float32" in source


def test_legend_names_the_root_and_can_be_left_out():
    loss = micrograd_expression()
    assert "d L / d tensor" in draw_graph(loss).source
    assert "gradient flow" in draw_graph(loss, mode="backward").source
    assert "d L / d tensor" not in draw_graph(loss, legend=False).source


def test_parameters_have_no_names_unless_the_drawing_is_given_the_model():
    loss, model = mlp_step()
    assert "0.weight" not in draw_graph(loss).source
    assert "0.weight" in draw_graph(loss, names=model).source
    assert "first" in draw_graph(loss, names={"first": model[0].weight}).source


def test_a_name_the_user_set_wins_over_the_models_and_is_never_overwritten():
    model = nn.mlp([4, 3, 2], rng=np.random.default_rng(0))
    model[0].weight.name = "W1"
    model.extra = nn.Linear(2, 2)  # attaching a module once relabelled every parameter
    assert model[0].weight.name == "W1" and model[2].weight.name is None
    loss = model(Tensor(np.ones((1, 4), dtype=np.float32))).sum()
    source = draw_graph(loss, names=model).source
    assert "W1" in source and "0.weight" not in source and "2.weight" in source


def test_draw_graph_refuses_names_that_are_not_a_module_or_a_dict_of_tensors():
    loss = micrograd_expression()
    with pytest.raises(TypeError, match="Module or a dict"):
        draw_graph(loss, names=["a"])
    with pytest.raises(TypeError, match=r"names\['a'\] must be a Tensor"):
        draw_graph(loss, names={"a": 1.0})


@pytest.mark.parametrize(
    "options, message",
    [({"mode": "sideways"}, "mode"), ({"rankdir": "up"}, "rankdir"), ({"max_nodes": 0}, "max_nodes")],
)
def test_draw_graph_explains_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        draw_graph(micrograd_expression(), **options)


def test_draw_graph_needs_a_tensor():
    with pytest.raises(TypeError, match="needs a Tensor"):
        draw_graph(np.ones(3))


def test_nan_and_inf_values_are_shown_as_such():
    x = Tensor(np.array([np.nan, np.inf, 1, 2, 3, 4, 5], dtype=np.float32), requires_grad=True, name="x")
    text = next(node["text"] for node in nodes_of(draw_graph(x.sum())).values() if node["text"].startswith("x"))
    assert text == "x (7,) float32 min mean max data nan nan nan"


# ----- rendering ---------------------------------------------------------------------------------
def test_render_svg_with_dot_is_valid_xml(dot_program, tmp_path):
    written = render(draw_mlp_step(), tmp_path / "step.svg")
    assert written == tmp_path / "step.svg"
    root = ElementTree.parse(written).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    text = " ".join(root.itertext())
    assert "0.weight" in text and "CrossEntropy" in text
    assert written.stat().st_size < 100_000
    assert list(tmp_path.iterdir()) == [written]  # no temporary files left behind


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF")])
def test_render_picks_the_format_from_the_suffix(dot_program, tmp_path, suffix, magic):
    written = render(draw_graph(micrograd_expression()), tmp_path / "sub" / f"graph{suffix}")
    assert written.suffix == suffix and written.read_bytes().startswith(magic)


def test_render_dot_suffix_writes_the_source(tmp_path):
    graph = draw_graph(micrograd_expression())
    written = render(graph, tmp_path / "graph.dot")
    assert written == tmp_path / "graph.dot" and written.read_text(encoding="utf-8") == graph.source


def test_render_refuses_a_suffix_it_cannot_write(tmp_path):
    with pytest.raises(ValueError, match=r"\.svg"):
        render(draw_graph(micrograd_expression()), tmp_path / "graph.jpeg")


def test_render_writes_dot_source_when_dot_is_not_installed(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)
    graph = draw_graph(micrograd_expression())
    written = render(graph, tmp_path / "graph.svg")
    assert written == tmp_path / "graph.dot"
    assert written.read_text(encoding="utf-8") == graph.source
    assert not (tmp_path / "graph.svg").exists()
    assert "apt-get install graphviz" in INSTALL_HINT and "brew install graphviz" in INSTALL_HINT
    assert "https://graphviz.org/download/" in INSTALL_HINT


def test_render_writes_dot_source_when_dot_cannot_be_run(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: "/nowhere/dot")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # so running `dot` fails
    written = render(draw_graph(micrograd_expression()), tmp_path / "graph.png")
    assert written == tmp_path / "graph.dot" and written.exists()
    assert not (tmp_path / "graph.png").exists()


def test_render_leaves_no_half_written_file_when_dot_fails(dot_program, tmp_path, monkeypatch):
    def failing_pipe(*args, **kwargs):
        raise graphviz.CalledProcessError(1, ["dot"], output=b"", stderr=b"syntax error")

    graph = draw_graph(micrograd_expression())
    monkeypatch.setattr(graph, "pipe", failing_pipe)
    with pytest.raises(graphviz.CalledProcessError):
        render(graph, tmp_path / "graph.svg")
    assert list(tmp_path.iterdir()) == []


def test_render_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "graph.dot"
    target.write_text("old")

    def failing_fsync(descriptor):  # the bytes reached the temporary file, then the disk filled up
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        render(draw_graph(micrograd_expression()), target)
    assert target.read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["graph.dot"]


# ----- the example script ------------------------------------------------------------------------
def run_example(tmp_path, *arguments, env=None):
    return subprocess.run(
        [sys.executable, str(REPO / "examples" / "draw_graph.py"), "--out-dir", str(tmp_path / "out"), *arguments],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env, check=True,
    )


def test_example_script_writes_the_pictures_it_prints(dot_program, tmp_path):
    result = run_example(tmp_path, "--format", "svg")
    paths = [Path(line) for line in result.stdout.splitlines()]
    assert [path.name for path in paths] == [
        "scalar_expression.svg", "scalar_expression_backward.svg", "mlp_step.svg", "mlp_step_backward.svg",
        "mlp_step.html",
    ]
    for path in paths[:4]:
        assert path.exists() and ElementTree.parse(path).getroot().tag.endswith("svg")
    assert 'id="backward-steps"' in paths[4].read_text(encoding="utf-8")


def test_example_script_writes_dot_files_and_the_install_hint_without_dot(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {"PATH": str(empty), "PYTHONPATH": str(REPO)}
    result = run_example(tmp_path, env=env)
    paths = [Path(line) for line in result.stdout.splitlines()]
    assert len(paths) == 4 and all(path.suffix == ".dot" and path.exists() for path in paths)
    assert "apt-get install graphviz" in result.stderr
