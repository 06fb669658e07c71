"""Train the MLP classifier on MNIST digits (or Fashion-MNIST clothes).

    python examples/mnist.py                      # 784-512-10, 10 epochs: >= 98% test accuracy
    python examples/mnist.py --preset seed        # the original program's recipe: >= 94%
    python examples/mnist.py --preset fashion     # Fashion-MNIST: >= 89%
    python examples/mnist.py --plot run.png       # and a figure of the run (needs matplotlib)
    python examples/mnist.py --help

Read it top to bottom: settings, data, model, the training loop, the report. The output follows
the original program: accuracy before training, the initial loss, one line per epoch, accuracy
after training. What surrounds the loop (flags, checkpoints for --save/--resume/--load, Ctrl-C,
divergence, --metrics, --plot) is tinygrad_mnist/lab/run.py, one call a line here.
"""

import signal
import sys


def stop_at_once(signum, frame):  # Ctrl-C before the loop starts, even while numpy imports
    print("\nStopped by Ctrl-C.", file=sys.stderr)
    sys.exit(130)


signal.signal(signal.SIGINT, stop_at_once)

import math  # noqa: E402  (after the Ctrl-C handler on purpose)
import time  # noqa: E402

import numpy as np  # noqa: E402

from tinygrad_mnist import Tensor, functional as F, optim
from tinygrad_mnist.lab import run  # noqa: E402
from tinygrad_mnist.lab.data import batches, normalize  # noqa: E402
from tinygrad_mnist.lab.datasets import DatasetNotFoundError, IDXError, load_dataset  # noqa: E402

# ----- settings: the defaults reach >= 98% test accuracy in well under 30 s on 2 cores ---------
DEFAULTS = {
    "epochs": 10,
    "batch_size": 64,
    "lr": 0.1,  # peak learning rate; the cosine schedule lowers it to 0 by the last step
    "momentum": 0.9,
    "hidden": "512",  # hidden layer sizes: "128,64" makes 784-128-64-10
    "init_scale": 1.0,  # He initialisation as is
    "negative_slope": 0.01,  # leaky ReLU slope below zero
    "clip_norm": None,
    "clip_value": None,
    "schedule": "cosine",
    "seed": 0,
    "dataset": "mnist",  # or "fashion-mnist": the same shapes, ten kinds of clothes
}
PRESETS = {
    # the original program: He init x 0.1, leaky ReLU, plain SGD (no momentum) with clipping,
    # a constant learning rate, 10 epochs
    "seed": {"hidden": "128", "init_scale": 0.1, "momentum": 0.0, "lr": 0.05, "batch_size": 32,
             "clip_value": 1.0, "schedule": "constant", "epochs": 10},
    # Fashion-MNIST: a wider layer and more epochs (the default recipe stops near 88.5%)
    "fashion": {"dataset": "fashion-mnist", "hidden": "1024", "epochs": 15},
}
INPUT_SHAPE = (-1, 784)  # an MLP takes each 28x28 image as one row of 784 pixels


def main(argv=None):
    start_time = time.perf_counter()
    args = run.parse_args(DEFAULTS, PRESETS, argv, description="Train an MLP on MNIST with tinygrad_mnist.")
    session = run.Session(args)  # reads --load/--resume, checks --save/--metrics, prints the settings

    rng = np.random.default_rng(args.seed)  # initial weights and batch order
    layer_sizes = [784, *(int(size) for size in args.hidden.split(",")), 10]
    spec = {"kind": "mlp", "layer_sizes": layer_sizes, "negative_slope": args.negative_slope}
    model = session.model(spec, rng=rng, init_scale=args.init_scale)  # the saved weights with --load/--resume
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                          clip_value=args.clip_value, clip_norm=args.clip_norm)
    first_epoch = session.restore(optimizer, rng)  # --resume: momentum, batch order and epoch as saved

    dataset = load_dataset(args.dataset, args.data_dir).subset(args.train_subset, args.test_subset)
    train_images, train_labels, test_images, test_labels = dataset

    if args.graph:  # the graph of one training step; --graph without --epochs only draws
        images = Tensor(normalize(train_images[: args.batch_size]).reshape(INPUT_SHAPE), name="images")
        session.draw_graph(F.cross_entropy(model(images), train_labels[: args.batch_size]), model)
        if args.graph_only:
            return

    train_set, test_set = (train_images, train_labels, INPUT_SHAPE), (test_images, test_labels, INPUT_SHAPE)
    _, initial_loss, _ = run.report("Model performance on training data before training:", model, *train_set)
    run.report("Model performance on test data before training:", model, *test_set)
    print(f"Initial loss: {initial_loss:.4f}")

    steps_per_epoch = math.ceil(len(train_images) / args.batch_size)
    total_steps = args.epochs * steps_per_epoch
    print("Training..." if first_epoch < args.epochs else "No training (0 epochs left).")
    with session.training():  # Ctrl-C stops after a step; --detect-anomaly checks every op
        for epoch in range(first_epoch, args.epochs):
            epoch_start, loss_sum = time.perf_counter(), 0.0
            epoch_batches = batches(train_images, train_labels, args.batch_size, shuffle=True, rng=rng)
            for step, (image_batch, label_batch) in session.steps(epoch_batches, epoch, steps_per_epoch):
                optimizer.lr = run.learning_rate(args, epoch * steps_per_epoch + step, total_steps)
                x = Tensor(normalize(image_batch).reshape(INPUT_SHAPE))  # (batch, 28, 28) uint8 -> (batch, 784) float32
                loss = F.cross_entropy(model(x), label_batch)
                loss_sum += session.check_loss(loss.item())  # NaN or inf: stop, say what to try
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            correct, test_loss, _ = run.evaluate(model, *test_set)
            seconds = time.perf_counter() - epoch_start
            print(f"Epoch {epoch + 1}/{args.epochs}  loss {loss_sum / steps_per_epoch:.4f}  "
                  f"test accuracy {100 * correct / len(test_images):.2f}%  time {seconds:.1f}s")
            session.end_epoch(epoch + 1, model, optimizer, rng, train_loss=loss_sum / steps_per_epoch, test_loss=test_loss,
                              test_accuracy=correct / len(test_images), lr=optimizer.lr, seconds=seconds)

    run.report("Model performance on training data after training:", model, *train_set)
    _, _, logits = run.report("Model performance on test data after training:", model, *test_set, dataset.classes)
    session.plot(test_images, test_labels, logits, dataset.classes)  # --plot: a figure of the run
    session.finish(model, optimizer, rng)  # --save with 0 epochs: the model as it is
    print(f"Total time: {time.perf_counter() - start_time:.1f}s")


if __name__ == "__main__":
    run.main(main, errors=(DatasetNotFoundError, IDXError))
