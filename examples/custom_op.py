"""Add your own op: Softplus, defined here, outside the package, the way the built-in ops are.

    python examples/custom_op.py                                   # all of MNIST, 3 epochs: ~97%
    python examples/custom_op.py --train-subset 2000 --epochs 1    # a quick run, a few seconds
    python examples/custom_op.py --help

Three steps, as in docs/extending.md, which derives every line of this file:
  1. define the op: a Function with forward and backward on numpy arrays (Softplus below);
  2. check it: gradcheck compares backward() with central differences, and this script stops
     if they disagree;
  3. use it: a layer (SoftplusLayer) in an MLP, trained on MNIST with SGD.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from tinygrad_mnist import Function, GradcheckError, Tensor, gradcheck, nn, no_grad, optim
from tinygrad_mnist import functional as F
from tinygrad_mnist.lab.data import batches, normalize
from tinygrad_mnist.lab.datasets import DatasetNotFoundError, load_mnist
from tinygrad_mnist.lab.idx import IDXError


# ----- 1. the op ---------------------------------------------------------------------------------
class Softplus(Function):
    """out = ln(1 + e^x), a smooth ReLU.   d out/d x = e^x / (1 + e^x) = sigmoid(x).

    Any shape in, the same shape out.
    """

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        # ln(1 + e^x) written as logaddexp(0, x) never forms e^x, so x = 1000 gives 1000, not inf
        return np.logaddexp(0, x)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved
        sigmoid = np.exp(-np.logaddexp(0, -x))  # 1 / (1 + e^-x), again without overflow
        return grad_out * sigmoid  # chain rule: upstream gradient times the local derivative


class SoftplusLayer(nn.Module):
    """Softplus as a layer to put between Linear layers: (batch, features) -> (batch, features)."""

    def forward(self, x):
        return Softplus.apply(x)


# ----- 2. the check ------------------------------------------------------------------------------
def check_softplus(seed=0):
    """gradcheck Softplus on random inputs plus both tails; raises GradcheckError on a mismatch."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.standard_normal(20), [-30.0, -5.0, 0.0, 5.0, 30.0]]).reshape(5, 5)
    return gradcheck(Softplus.apply, [Tensor(x, requires_grad=True)])


# ----- 3. the use --------------------------------------------------------------------------------
def softplus_mlp(hidden, rng):
    """784 -> hidden -> 10 with Softplus between: (batch, 784) -> (batch, 10) raw logits."""
    return nn.Sequential(nn.Linear(784, hidden, rng=rng), SoftplusLayer(), nn.Linear(hidden, 10, rng=rng))


def accuracy(model, images, labels):
    """The fraction of `images` (uint8 (N, 28, 28)) that `model` classifies as `labels`."""
    with no_grad():
        logits = model(Tensor(normalize(images, flatten=True)))  # (N, 784) -> (N, 10)
    return float((logits.data.argmax(axis=1) == labels).mean())


def train(model, images, labels, args, rng):
    """SGD with momentum over `images` for args.epochs epochs; prints the mean loss of each."""
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    for epoch in range(args.epochs):
        start, losses = time.perf_counter(), []
        for image_batch, label_batch in batches(images, labels, args.batch_size, rng=rng):
            x = Tensor(normalize(image_batch, flatten=True))  # (batch, 28, 28) uint8 -> (batch, 784)
            loss = F.cross_entropy(model(x), label_batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        print(f"epoch {epoch + 1}/{args.epochs}  loss {np.mean(losses):.4f}  time {time.perf_counter() - start:.1f}s")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Train an MLP with a custom Softplus op on MNIST.")
    parser.add_argument("--epochs", type=int, default=3, help="passes over the training set (default 3)")
    parser.add_argument("--batch-size", type=int, default=64, help="examples per step (default 64)")
    parser.add_argument("--lr", type=float, default=0.05, help="learning rate (default 0.05)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    parser.add_argument("--hidden", type=int, default=128, help="hidden layer size (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="seed for initialisation and shuffling")
    parser.add_argument("--train-subset", type=int, metavar="N", help="train on the first N training images only")
    parser.add_argument("--test-subset", type=int, metavar="N", help="evaluate on the first N test images only")
    parser.add_argument("--data-dir", type=Path, help="folder with the MNIST files (else $TINYGRAD_MNIST_DATA, else data/mnist/)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        check_softplus()
    except GradcheckError as error:
        sys.exit(f"gradcheck Softplus: FAILED\n{error}")
    print("gradcheck Softplus: passed (backward matches central differences)")

    try:
        mnist = load_mnist(args.data_dir).subset(args.train_subset, args.test_subset)
    except (DatasetNotFoundError, IDXError) as error:
        sys.exit(f"error: {error}")
    train_images, train_labels, test_images, test_labels = mnist

    rng = np.random.default_rng(args.seed)
    model = softplus_mlp(args.hidden, rng)
    print(model)
    print(f"test accuracy before training: {100 * accuracy(model, test_images, test_labels):.2f}%")
    train(model, train_images, train_labels, args, rng)
    print(f"test accuracy: {100 * accuracy(model, test_images, test_labels):.2f}% on {len(test_images)} images")


if __name__ == "__main__":
    main()
