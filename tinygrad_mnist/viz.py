"""Pictures of computation graphs: see what `backward()` walks.

    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    picture = draw_graph(loss)              # a graphviz.Digraph; needs no `dot` program
    render(picture, "step.svg")             # runs `dot`; writes step.dot instead without it
    render(picture, "step.html")            # a page that steps through backward() (backward_steps.py)

Boxes are tensors, ellipses are ops (Functions). In the default "forward" mode arrows follow the
data, input -> op -> output; `mode="backward"` reverses them to show the gradients flowing from
the loss back to the parameters, the order in which `backward()` applies the chain rule.

Colours tell the kinds of tensors apart:
  parameter      orange box      a leaf with requires_grad=True: the optimizer updates it with .grad
  input          grey dashed box a leaf without requires_grad (images, labels, constants)
  intermediate   blue round box  the result of an op
  root           red bold box    the tensor you drew (usually the loss)
"""

from __future__ import annotations

import html
import inspect
import shutil
from collections import deque
from pathlib import Path

import graphviz
import numpy as np

from . import backward_steps
from .atomic import write_atomically
from .function import forward_defaults
from .tensor import Tensor

INSTALL_HINT = (
    "graphviz's `dot` program is not installed, so the graph was saved as DOT source instead. "
    "Install it (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz; "
    "others: https://graphviz.org/download/), then render the .dot file with "
    "`dot -Tsvg graph.dot -o graph.svg` or run the command again."
)

FORMATS = ("svg", "png", "pdf", "html", "dot")
SMALL_TENSOR = 6  # tensors with at most this many elements show every value, larger ones min/mean/max
MAX_OPTION_CHARS = 24  # an op option longer than this (a long tuple, a string) is cut with "…"

# (fill colour, border colour, node shape, node style) for each kind of node
STYLES = {
    "parameter": ("#ffe0b2", "#e65100", "box", "filled"),
    "input": ("#eeeeee", "#757575", "box", "filled,dashed"),
    "intermediate": ("#e3f2fd", "#1565c0", "box", "filled,rounded"),
    "root": ("#ffcdd2", "#b71c1c", "box", "filled,rounded,bold"),
    "op": ("#fff9c4", "#9e8600", "ellipse", "filled"),
}
KIND_MEANING = {
    "parameter": "parameter: a leaf with requires_grad=True; the optimizer updates it with .grad",
    "input": "input or constant: a leaf without requires_grad; it gets no gradient",
    "intermediate": "intermediate: the output of an op",
    "root": "root: the tensor this graph was drawn from (usually the loss)",
}
GRAD_COLOUR = "#b71c1c"
FAINT_COLOUR = "#757575"
EDGE_COLOURS = {"forward": "#424242", "backward": GRAD_COLOUR}


def draw_graph(root, *, show_grad=True, rankdir="LR", max_nodes=200, mode="forward", legend=True, names=None):
    """Draw the graph that produced `root` as a graphviz.Digraph (DOT source; `dot` not needed).

    What it draws: every tensor `root` was computed from, found by following each op's inputs
    back from `root` (the walk backward() does, plus the leaves that need no gradient, such as
    input images and labels), and one node per op between them.

    How to read it:
      - a box is a tensor: its name (`tensor.name`, or for a parameter of the model passed as
        `names` its place in the model, "0.weight"), shape and dtype, its value (every element of a tensor of
        up to 6 elements, min/mean/max of a larger one), and in red, once `backward()` has run,
        its gradient d root / d tensor in the same form (hide it with show_grad=False).
      - an ellipse is an op: the name of its Function class and the options it was called with,
        `LeakyReLU(0.01)`, `Sum(axis=1)`. Hover over it in an SVG to read its derivative.
      - orange boxes are parameters, grey dashed boxes are inputs and constants, blue boxes are
        intermediate results, the red bold box is `root`.
      - mode="forward": arrows follow the data, input -> op -> output.
        mode="backward": arrows follow the gradient from `root` back through each op to the
        inputs that require grad, labelled with the gradient's shape (the shape of the tensor it
        belongs to). Inputs without requires_grad receive no gradient and are left out.
      - past `max_nodes` nodes (counted from `root` backwards, tensors and ops alike) the rest
        of the graph is collapsed into one "… N more nodes" marker.

    `rankdir` is graphviz's layout direction: "LR" (left to right), "TB", "RL" or "BT".
    `legend` adds a key to the colours under the picture.
    `names` labels tensors that have no `.name`: a Module (its parameters get their names from
    `named_parameters()`, "0.weight") or a dict {name: Tensor}.
    The result is a `Picture`, a graphviz.Digraph that remembers its graph for render(..., ".html").
    """
    if not isinstance(root, Tensor):
        raise TypeError(f"draw_graph needs a Tensor (for example the loss), not {type(root).__name__}")
    if mode not in EDGE_COLOURS:
        raise ValueError(f"draw_graph mode must be 'forward' or 'backward', not {mode!r}")
    if rankdir not in ("LR", "RL", "TB", "BT"):
        raise ValueError(f"draw_graph rankdir must be 'LR', 'RL', 'TB' or 'BT', not {rankdir!r}")
    if not isinstance(max_nodes, int) or max_nodes < 1:
        raise ValueError(f"draw_graph max_nodes must be a positive int, not {max_nodes!r}")
    labels = _labels(names)

    backward = mode == "backward"
    order = _walk(root, backward)
    kept = order[:max_nodes]
    node_ids = {}  # tensor or Context -> DOT node id, for the nodes that are drawn
    for item in kept:
        prefix = "t" if isinstance(item, Tensor) else "op"
        node_ids[item] = f"{prefix}{len(node_ids)}"
    hidden = len(order) - len(kept)

    graph = Picture("computation_graph")
    graph.drawn_from = (root, node_ids, labels)
    graph.attr(rankdir=rankdir, bgcolor="white", fontname="Helvetica", nodesep="0.25", ranksep="0.45")
    graph.attr("node", fontname="Helvetica", fontsize="10", margin="0.06,0.03")
    graph.attr("edge", color=EDGE_COLOURS[mode], fontname="Helvetica", fontsize="9", arrowsize="0.7")
    if legend:
        graph.attr(label=_legend_label(mode, root.name or "root"), labelloc="b", labeljust="l", fontsize="9")
    for item, node_id in node_ids.items():
        if isinstance(item, Tensor):
            name = item.name or labels.get(id(item))
            _add_tensor_node(graph, node_id, item, name, "root" if item is root else _tensor_kind(item), show_grad)
        else:
            _add_op_node(graph, node_id, item)
    if hidden:
        graph.node(
            "more", f"… {hidden} more nodes", shape="box", style="dashed,rounded", color="#9e9e9e",
            fontcolor="#616161", tooltip=f"max_nodes={max_nodes} reached: draw_graph(max_nodes=...) shows more",
        )
    for source, target, label in _edges(kept, node_ids, backward):
        graph.edge(source, target, label=label)
    return graph


class Picture(graphviz.Digraph):
    """What draw_graph returns: a graphviz.Digraph that also remembers the graph it was drawn from
    (`drawn_from`: the root, {tensor or Context: node id}, {id(tensor): name}), so that
    render(picture, "step.html") can replay its backward pass step by step."""

    drawn_from = None


def _labels(names):
    """{id(tensor): name} from draw_graph's `names`: a Module, a dict {name: Tensor}, or None."""
    if names is None:
        return {}
    if hasattr(names, "named_parameters"):  # a Module (viz does not import nn: it draws any graph)
        names = dict(names.named_parameters())
    if not isinstance(names, dict):
        raise TypeError(f"draw_graph names must be a Module or a dict {{name: Tensor}}, not {type(names).__name__}")
    labels = {}
    for name, tensor in names.items():
        if not isinstance(tensor, Tensor):
            raise TypeError(f"draw_graph names[{name!r}] must be a Tensor, not {type(tensor).__name__}")
        labels[id(tensor)] = str(name)
    return labels


def _walk(root, backward):
    """Tensors and op contexts reachable from `root`, nearest first (breadth first, no recursion).

    From a tensor the walk goes to the op that produced it (ctx), from an op to its inputs: all
    of them in forward mode, only those that require grad in backward mode (the others receive
    no gradient). So an op is always reached through its output, and drawn after it.
    """
    order, seen, queue = [], {root}, deque([root])
    while queue:
        item = queue.popleft()
        order.append(item)
        if isinstance(item, Tensor):
            parents = [] if item.grad_fn is None else [item.grad_fn]
        else:
            parents = [tensor for tensor in item.inputs if tensor.requires_grad or not backward]
        for parent in parents:
            if parent not in seen:
                seen.add(parent)
                queue.append(parent)
    return order


def _edges(kept, node_ids, backward):
    """(source id, target id, label) for every arrow between drawn nodes, and to the marker.

    Forward: input -> op and op -> output. Backward: output -> op and op -> input, each labelled
    with the shape of the gradient that travels along it. A tensor used twice by one op gets two
    arrows: in backward mode its two gradients are added up, as backward() does.
    """
    edges = []
    tensors = [item for item in kept if isinstance(item, Tensor)]
    output_of = {tensor.grad_fn: tensor for tensor in tensors if tensor.grad_fn is not None}
    for item in kept:
        if isinstance(item, Tensor):
            continue
        ctx, op_id = item, node_ids[item]
        output = output_of[ctx]  # the walk reaches an op only through its output, so it is drawn
        inputs = [tensor for tensor in ctx.inputs if tensor.requires_grad or not backward]
        if backward:
            edges.append((node_ids[output], op_id, _grad_label(output)))
        else:
            edges.append((op_id, node_ids[output], None))
        marker_used = False
        for tensor in inputs:
            if tensor in node_ids:
                pair = (op_id, node_ids[tensor]) if backward else (node_ids[tensor], op_id)
                edges.append((*pair, _grad_label(tensor) if backward else None))
            elif not marker_used:  # this input lies in the collapsed part of the graph
                marker_used = True
                edges.append((op_id, "more", None) if backward else ("more", op_id, None))
    for tensor in tensors:  # tensors whose op did not fit: their data comes from the marker
        if tensor.grad_fn is None or tensor.grad_fn in node_ids:
            continue
        edges.append((node_ids[tensor], "more", None) if backward else ("more", node_ids[tensor], None))
    return edges


def _tensor_kind(tensor):
    if tensor.grad_fn is not None:
        return "intermediate"
    return "parameter" if tensor.requires_grad else "input"


def _add_tensor_node(graph, node_id, tensor, name, kind, show_grad):
    rows = []  # an HTML-like table: name, shape and dtype, then a "data" row and a "grad" row
    if name:
        rows.append([_cell(f"<B>{_escape(name)}</B>", span=4)])
    rows.append([_cell(f"{_escape(_shape_text(tensor.shape))} {tensor.dtype}", span=4)])
    arrays = [("data", tensor.data, None)]
    if show_grad and tensor.grad is not None:
        arrays.append(("grad", tensor.grad, GRAD_COLOUR))
    large = tensor.data.size > SMALL_TENSOR
    if large:
        rows.append([_cell("")] + [_cell(word, FAINT_COLOUR) for word in ("min", "mean", "max")])
    for title, array, colour in arrays:
        if large:
            rows.append([_cell(title, colour, align="LEFT")] + [_cell(number, colour) for number in _summary(array)])
        else:
            rows.append([_cell(title, colour, align="LEFT"), _cell(_numbers_text(array), colour, span=3, align="LEFT")])
    table = "".join("<TR>" + "".join(row) + "</TR>" for row in rows)
    label = f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="2">{table}</TABLE>>'
    fill, border, shape, style = STYLES[kind]
    penwidth = "2.5" if kind == "root" else "1"
    graph.node(
        node_id, label, shape=shape, style=style, fillcolor=fill, color=border, penwidth=penwidth,
        tooltip=KIND_MEANING[kind],
    )


def _cell(markup, colour=None, span=1, align="CENTER"):
    """One cell of an HTML-like label; `markup` is already escaped."""
    if colour:
        markup = f'<FONT COLOR="{colour}">{markup}</FONT>'
    attributes = (f' COLSPAN="{span}"' if span > 1 else "") + (f' ALIGN="{align}"' if align != "CENTER" else "")
    return f"<TD{attributes}>{markup}</TD>"


def _add_op_node(graph, node_id, ctx):
    fill, border, shape, style = STYLES["op"]
    # the first line of the op's own docstring (not Function's) states its math: show it on hover
    doc = inspect.cleandoc(ctx.function.__doc__ or "").split("\n")[0].replace("\\", "/")
    label = graphviz.nohtml(op_label(ctx))  # plain text, even if an option looks like <html>
    graph.node(
        node_id, label, shape=shape, style=style, fillcolor=fill, color=border,
        tooltip=doc or ctx.function.__name__,
    )


def op_label(ctx):
    """The text of an op node: `Name(options)`, e.g. `LeakyReLU(0.01)`, `Sum(axis=1)`, `Exp`.

    A lone option is shown by value; several are shown as name=value, leaving out those that are
    None or False when that is forward's default (an unused axis, keepdims=False).
    """
    name = ctx.function.__name__
    options = ctx.options
    defaults = forward_defaults(ctx.function)
    shown = {
        key: value
        for key, value in options.items()
        if not ((value is None or value is False) and key in defaults and defaults[key] is value)
    }
    if not shown:
        return name
    if len(options) == 1:
        return f"{name}({_option_text(next(iter(shown.values())))})"
    return f"{name}(" + ", ".join(f"{key}={_option_text(value)}" for key, value in shown.items()) + ")"


def _option_text(value):
    """An op option, short: arrays by shape, slices as start:stop, numbers with 4 digits."""
    if isinstance(value, Tensor):
        text = f"Tensor{_shape_text(value.shape)}"
    elif isinstance(value, np.ndarray):
        text = f"array{_shape_text(value.shape)}"
    elif isinstance(value, slice):
        text = ":".join("" if part is None else str(part) for part in (value.start, value.stop))
        text += f":{value.step}" if value.step is not None else ""
    elif isinstance(value, tuple):
        text = "(" + ", ".join(_option_text(part) for part in value) + ("," if len(value) == 1 else "") + ")"
    elif isinstance(value, (float, np.floating)):
        text = f"{value:.4g}"
    else:
        text = repr(value)
    return text if len(text) <= MAX_OPTION_CHARS else text[: MAX_OPTION_CHARS - 1] + "…"


def _shape_text(shape):
    return str(tuple(int(size) for size in shape))


def _summary(array):
    """min, mean and max of a large array, 3 significant digits each (inf and NaN show as such)."""
    if array.size == 0:
        return ("-", "-", "-")
    with np.errstate(all="ignore"):
        low, mean, high = array.min(), array.mean(dtype=np.float64), array.max()
    # a mean that is zero up to rounding (a logits gradient's: each row sums to 0) reads as such, not as -7.9e-10
    mean_text = "≈0" if backward_steps.mean_is_noise(mean, array) else f"{mean:.3g}"
    return (f"{low:.3g}", mean_text, f"{high:.3g}")


def _numbers_text(array):
    """Every value of a small array, nested like the array: "[[1, -2.5], [0, 3]]"."""
    if array.size == 0:
        return "empty"
    if array.ndim == 0:
        return f"{array.item():.4g}"
    return "[" + ", ".join(_numbers_text(row) for row in array) + "]"


def _grad_label(tensor):
    return f"grad {_shape_text(tensor.shape)}"


def _escape(text):
    return html.escape(str(text), quote=False)


def _legend_label(mode, root_name):
    swatches = "".join(
        f'<TD BGCOLOR="{STYLES[kind][0]}" BORDER="1" COLOR="{STYLES[kind][1]}"> {kind} </TD><TD> </TD>'
        for kind in ("parameter", "input", "intermediate", "root", "op")
    )
    if mode == "forward":
        arrows = "arrows: data flow, input → op → output"
    else:
        arrows = (
            f'arrows: <FONT COLOR="{GRAD_COLOUR}">gradient flow</FONT> from the root back to each input, '
            "labelled with the gradient's shape"
        )
    grad_text = f'<FONT COLOR="{GRAD_COLOUR}">grad</FONT> = d {_escape(root_name)} / d tensor, filled in by backward()'
    return (
        '<<TABLE BORDER="0" CELLSPACING="2" CELLPADDING="2"><TR>'
        + swatches
        + f"<TD>{arrows};   {grad_text}</TD></TR></TABLE>>"
    )


def has_dot():
    """True when graphviz's `dot` program is on the PATH (render() then writes images)."""
    return shutil.which("dot") is not None


def render(digraph, path):
    """Write `digraph` to `path` and return the path written; the format comes from the suffix.

    .svg, .png and .pdf are drawn by graphviz's `dot` program; .dot writes the DOT source text.
    .html writes one self-contained page that steps through backward() on the drawing (a Picture
    from draw_graph, whose ops still hold their saved arrays: backward(retain_graph=True), or draw
    before backward()); see tinygrad_mnist/backward_steps.py.
    Without `dot` installed, the source is written next to the requested file with the suffix
    .dot, and that path is returned: compare its suffix to the one you asked for and show
    INSTALL_HINT to the user. Missing folders are created; the file appears whole or not at all.
    """
    path = Path(path)
    file_format = path.suffix.lower().lstrip(".")
    if file_format not in FORMATS:
        suffixes = ", ".join("." + name for name in FORMATS)
        raise ValueError(f"render: cannot tell the format from {path.name!r}; end the path with one of {suffixes}")
    source_path = path.with_suffix(".dot")
    steps = _backward_steps(digraph) if file_format == "html" else None  # its errors come first, with or without dot
    if file_format == "dot" or not has_dot():
        write_atomically(source_path, lambda file: file.write(digraph.source.encode("utf-8")))
        return source_path
    try:
        image = digraph.pipe(format="svg" if steps is not None else file_format)
    except graphviz.ExecutableNotFound:
        write_atomically(source_path, lambda file: file.write(digraph.source.encode("utf-8")))
        return source_path
    if steps is not None:
        image = backward_steps.step_page(image, *steps).encode("utf-8")
    write_atomically(path, lambda file: file.write(image))
    return path


def _backward_steps(picture):
    """(steps, tensors) for the step-by-step page of a Picture: the replayed walk and the drawn tensors."""
    if not isinstance(picture, Picture) or picture.drawn_from is None:
        raise TypeError("render(..., '.html') needs the picture draw_graph returned (it remembers the graph to step through)")
    root, node_ids, labels = picture.drawn_from
    steps = backward_steps.record_steps(root, node_ids, labels, op_label)
    tensors = {
        node_id: {"name": item.name or labels.get(id(item)), "kind": "root" if item is root else _tensor_kind(item),
                  "shape": list(item.shape)}
        for item, node_id in node_ids.items() if isinstance(item, Tensor)
    }
    return steps, tensors
