"""One backward pass, step by step: the walk `Tensor.backward()` makes, recorded op by op, and the
page that plays it back in a browser.

    loss.backward(retain_graph=True)    # the page replays each op's backward: keep what the ops saved
    render(draw_graph(loss, names=model), "step.html")       # viz.render calls the two functions below

`record_steps` walks the graph as the engine does: the same order (`Tensor.graph_order()`,
reversed), each op's own `backward` (`grad_fn.function.backward`), the same sums where a tensor is
used twice. It reaches the graph only through the public API (`grad_fn`: `.function`, `.inputs`,
`.saved`), so what the page shows is what `backward()` computes, step for step.
`step_page` writes one self-contained HTML file (the SVG, the steps as JSON, a small script): it
needs no network and no server, and opens from disk in any browser.
"""

from __future__ import annotations

import html
import inspect
import json
import re
from pathlib import Path

import numpy as np

SMALL_TENSOR = 6  # a gradient of at most this many elements is shown value by value, larger ones as statistics
NOISE_ROUNDING_UNITS = 16  # a mean below this many rounding units of the largest |element| is shown as ~0
PAGE_TEMPLATE = Path(__file__).with_name("backward_steps.html")
TITLE = "One backward pass, step by step"


def record_steps(root, node_ids=None, names=None, op_label=None):
    """The backward pass of `root` as a list, one entry per op visit, in the order backward() visits.

    Each entry: {"op": class name, "label": op_label(ctx), "node": the op's node id, "doc": its
    docstring, "output": {"node", "name", "grad"}, "inputs": [{"node", "name", "index",
    "needs_grad", "sent", "total", "count"}, ...]}: the gradient that arrived at the op's output,
    and for each input what the op sent it, the sum it holds after this step, and how many
    gradients that sum has added up. Gradients are summaries (`summary`): values of a small one,
    statistics of a large one. `node_ids` maps tensors and Contexts to the ids of a drawing,
    `names` maps id(tensor) to a name; the seed is d root / d root = 1 (ones for a non-scalar root).

    Needs the arrays the ops saved: after backward() without retain_graph=True they are gone, and
    this raises a ValueError saying so.
    """
    node_ids, names = node_ids or {}, names or {}
    op_label = op_label or (lambda ctx: ctx.function.__name__)
    order = root.graph_order()
    released = [t.grad_fn.function.__name__ for t in order if t.grad_fn is not None and t.grad_fn.saved is None]
    if released:
        raise ValueError(f"the step-by-step page replays each op's backward, but {released[0]}'s saved arrays were "
                         "released by backward(); call loss.backward(retain_graph=True), or draw before backward()")

    def tensor_info(tensor):
        return {"node": node_ids.get(tensor), "name": tensor.name or names.get(id(tensor))}

    grads = {root: np.ones_like(root.data)}  # tensor -> the gradient summed so far, as in Tensor.backward
    counts = {}  # tensor -> how many gradients have been added into it
    steps = []
    for tensor in reversed(order):
        grad = grads.pop(tensor, None)
        ctx = tensor.grad_fn
        if grad is None or ctx is None:
            continue  # no gradient reached it, or a leaf: backward() visits no op here either
        sent = ctx.function.backward(ctx, grad)
        sent = sent if type(sent) is tuple else (sent,)
        inputs = []
        for index, (parent, parent_grad) in enumerate(zip(ctx.inputs, sent)):
            entry = {**tensor_info(parent), "index": index, "needs_grad": parent.requires_grad,
                     "sent": None, "total": None, "count": counts.get(parent, 0)}
            if parent_grad is not None and parent.requires_grad:
                parent_grad = np.asarray(parent_grad, dtype=parent.data.dtype)  # as the engine casts it
                grads[parent] = grads[parent] + parent_grad if parent in grads else parent_grad
                counts[parent] = entry["count"] = counts.get(parent, 0) + 1
                entry["sent"], entry["total"] = summary(parent_grad), summary(grads[parent])
            inputs.append(entry)
        steps.append({
            "op": ctx.function.__name__, "label": op_label(ctx), "node": node_ids.get(ctx),
            "doc": _paragraphs(ctx.function.__doc__),
            "output": {**tensor_info(tensor), "grad": summary(grad)}, "inputs": inputs,
        })
    return steps


def _paragraphs(doc):
    """A docstring with each paragraph on one line, for the page to wrap at its own width."""
    return "\n\n".join(" ".join(part.split()) for part in inspect.cleandoc(doc or "").split("\n\n"))


def summary(array):
    """A gradient for the page: {"shape", "values"} for a small array, else {"shape", "min", "mean",
    "max", "norm", "mean_is_noise"}. Numbers that JSON cannot hold (inf, NaN) become strings."""
    array = np.asarray(array)
    shape = [int(size) for size in array.shape]
    if array.size <= SMALL_TENSOR:
        return {"shape": shape, "values": _plain(array.tolist())}
    with np.errstate(all="ignore"):
        low, mean, high = array.min(), array.mean(dtype=np.float64), array.max()
        norm = np.sqrt(np.square(array, dtype=np.float64).sum())
    return {"shape": shape, "min": _plain(float(low)), "mean": _plain(float(mean)), "max": _plain(float(high)),
            "norm": _plain(float(norm)), "mean_is_noise": bool(mean_is_noise(mean, array))}


def mean_is_noise(mean, array):
    """True when `mean` is zero up to rounding: below 16 rounding units (of the array's dtype) of its
    largest |element|. The mean of a logits gradient, whose rows sum to exactly 0 on paper, is one."""
    if mean == 0 or not np.issubdtype(array.dtype, np.floating) or array.size == 0:  # an exact 0 reads as 0
        return False
    with np.errstate(all="ignore"):
        scale = float(np.abs(array).max())
    return bool(np.isfinite(scale) and abs(mean) <= NOISE_ROUNDING_UNITS * np.finfo(array.dtype).eps * scale)


def _plain(value):
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, float) and not np.isfinite(value):
        return "NaN" if np.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def step_page(svg, steps, tensors, title=TITLE):
    """The HTML of the page: `svg` (the drawing, bytes or text), `steps` (from record_steps) and
    `tensors` ({node id: {"name", "kind", "shape"}} for the tensors drawn) embedded as JSON in
    <script type="application/json"> elements with the ids backward-steps and backward-graph."""
    if isinstance(svg, bytes):
        svg = svg.decode("utf-8")
    svg = svg[svg.index("<svg"):]  # without the XML declaration and doctype: the page is HTML
    parts = {"title": html.escape(title), "svg": svg, "steps": _script_json(steps),
             "graph": _script_json({"tensors": tensors, "small_tensor": SMALL_TENSOR})}
    # one pass, so a tensor named "{{steps}}" in the SVG stays a name
    return re.sub(r"\{\{(\w+)\}\}", lambda match: parts[match.group(1)], PAGE_TEMPLATE.read_text(encoding="utf-8"))


def _script_json(data):
    # "</" inside a <script> would end it early; JSON lets the slash be escaped
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
