"""Draw two computation graphs: a scalar expression and one MLP training step.

    python examples/draw_graph.py                       # writes graphs/*.svg, prints each path
    python examples/draw_graph.py --out-dir docs/img    # regenerates the pictures in docs/graphs.md
    python examples/draw_graph.py --format png

Each graph is drawn after backward(), so every box shows its gradient too, and in both modes:
forward (data flow) and backward (gradient flow). The MLP step is also written as mlp_step.html,
the page that steps through its backward pass in a browser. Without graphviz's `dot` program the
DOT source is written instead (.dot files) and the install hint is printed on stderr.
No data files are needed: the MLP step runs on random images.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from tinygrad_mnist import Tensor, manual_seed, nn
from tinygrad_mnist import functional as F
from tinygrad_mnist.viz import INSTALL_HINT, draw_graph, render

SEED = 0
BATCH = 4  # a small batch keeps the numbers in the picture about one step you can follow
LAYER_SIZES = [784, 32, 10]  # a real MNIST input size with a small hidden layer


def scalar_expression():
    """L = (a * b + c) * f, the example from micrograd, with a name on every tensor."""
    a = Tensor(2.0, requires_grad=True, name="a")
    b = Tensor(-3.0, requires_grad=True, name="b")
    c = Tensor(10.0, requires_grad=True, name="c")
    e = a * b
    e.name = "e"
    d = e + c
    d.name = "d"
    f = Tensor(-2.0, requires_grad=True, name="f")
    loss = d * f
    loss.name = "L"
    loss.backward()
    return loss


def mlp_step():
    """One training step's graph: a small MLP on random 28x28 images, cross-entropy, backward.

    Returns the loss and the model, whose parameter names ("0.weight") label the picture."""
    manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    model = nn.mlp(LAYER_SIZES)
    images = Tensor(rng.random((BATCH, LAYER_SIZES[0]), dtype=np.float32), name="images")
    labels = rng.integers(0, LAYER_SIZES[-1], size=BATCH)
    logits = model(images)  # (BATCH, 784) -> (BATCH, 10)
    logits.name = "logits"
    loss = F.cross_entropy(logits, labels)  # (BATCH, 10) -> ()
    loss.name = "loss"
    loss.backward(retain_graph=True)  # keeps what the ops saved: the step-by-step page replays their backward
    return loss, model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out-dir", type=Path, default=Path("graphs"), help="folder for the pictures (default: graphs/)"
    )
    parser.add_argument("--format", choices=["svg", "png", "dot"], default="svg", help="file format (default: svg)")
    args = parser.parse_args(argv)

    loss, model = mlp_step()
    pictures = {
        "scalar_expression": draw_graph(scalar_expression()),
        "scalar_expression_backward": draw_graph(scalar_expression(), mode="backward"),
        "mlp_step": draw_graph(loss, names=model),
        "mlp_step_backward": draw_graph(loss, names=model, mode="backward"),
    }
    targets = [(picture, args.out_dir / f"{name}.{args.format}") for name, picture in pictures.items()]
    targets.append((pictures["mlp_step"], args.out_dir / "mlp_step.html"))  # the same drawing, as a page
    fell_back, printed = False, set()
    for picture, path in targets:
        written = render(picture, path)
        fell_back |= written.suffix != path.suffix
        if written not in printed:  # without `dot`, the page falls back to the .dot already written
            printed.add(written)
            print(written)
    if fell_back:
        print(INSTALL_HINT, file=sys.stderr)


if __name__ == "__main__":
    main()
