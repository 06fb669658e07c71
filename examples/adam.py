"""Train the original program's MLP with the built-in Adam optimizer (tinygrad_mnist.optim.Adam).

    python examples/adam.py                                   # all of MNIST, 3 epochs: ~97%
    python examples/adam.py --train-subset 2000 --epochs 1    # a quick run, a few seconds
    python examples/adam.py --help

Adam is SGD with two running averages per weight: of the gradient (momentum) and of the squared
gradient (how big this weight's gradients usually are). Each weight's step is the first divided by
the square root of the second, so every weight moves about `lr` per step, however large or small
its gradients are. The script checks that property first, then trains. Exercise 2 of
docs/extending.md asks you to write Adam yourself and compare it with this one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from tinygrad_mnist import Tensor, nn, no_grad
from tinygrad_mnist import functional as F
from tinygrad_mnist.lab.data import batches, normalize
from tinygrad_mnist.lab.datasets import DatasetNotFoundError, load_mnist
from tinygrad_mnist.lab.idx import IDXError
from tinygrad_mnist.optim import Adam


def check_first_step(lr=0.01):
    """On the first step m_hat = g and v_hat = g^2, so every weight moves by lr * sign(g), whatever
    the size of g. Returns the largest deviation from that as a fraction of lr (about eps / |g|)."""
    rng = np.random.default_rng(0)
    weight = Tensor(rng.standard_normal((3, 4)), requires_grad=True, dtype="float64")
    before = weight.data.copy()
    scales = np.array([1e-3, 1.0, 1e3])[:, None]  # gradients of very different sizes, row by row
    (weight * weight * Tensor(scales)).sum().backward()  # gradient 2 * scale * weight
    Adam([weight], lr=lr).step()
    expected = before - lr * np.sign(weight.grad)
    return float(np.abs(weight.data - expected).max()) / lr


def accuracy(model, images, labels):
    """The fraction of `images` (uint8 (N, 28, 28)) that `model` classifies as `labels`."""
    with no_grad():
        logits = model(Tensor(normalize(images, flatten=True)))  # (N, 784) -> (N, 10)
    return float((logits.data.argmax(axis=1) == labels).mean())


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Train the MLP on MNIST with the Adam optimizer.")
    parser.add_argument("--epochs", type=int, default=3, help="passes over the training set (default 3)")
    parser.add_argument("--batch-size", type=int, default=64, help="examples per step (default 64)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (default 0.001)")
    parser.add_argument("--hidden", type=int, default=128, help="hidden layer size (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="seed for initialisation and shuffling")
    parser.add_argument("--train-subset", type=int, metavar="N", help="train on the first N training images only")
    parser.add_argument("--test-subset", type=int, metavar="N", help="evaluate on the first N test images only")
    parser.add_argument("--data-dir", type=Path, help="folder with the MNIST files (else $TINYGRAD_MNIST_DATA, else data/mnist/)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    deviation = check_first_step()
    if deviation > 1e-3:
        sys.exit(f"Adam first step: FAILED (a weight's step is {deviation:.3g} * lr away from lr * sign(grad))")
    print(f"Adam first step: passed (every weight moved by lr against its gradient's sign, to {deviation:.1g} * lr)")

    try:
        mnist = load_mnist(args.data_dir).subset(args.train_subset, args.test_subset)
    except (DatasetNotFoundError, IDXError) as error:
        sys.exit(f"error: {error}")
    train_images, train_labels, test_images, test_labels = mnist

    rng = np.random.default_rng(args.seed)
    model = nn.mlp([784, args.hidden, 10], rng=rng)  # Linear, LeakyReLU, Linear
    optimizer = Adam(model.parameters(), lr=args.lr)
    for epoch in range(args.epochs):
        start, losses = time.perf_counter(), []
        for image_batch, label_batch in batches(train_images, train_labels, args.batch_size, rng=rng):
            x = Tensor(normalize(image_batch, flatten=True))  # (batch, 28, 28) uint8 -> (batch, 784)
            loss = F.cross_entropy(model(x), label_batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        print(f"epoch {epoch + 1}/{args.epochs}  loss {np.mean(losses):.4f}  time {time.perf_counter() - start:.1f}s")
    print(f"test accuracy: {100 * accuracy(model, test_images, test_labels):.2f}% on {len(test_images)} images")


if __name__ == "__main__":
    main()
