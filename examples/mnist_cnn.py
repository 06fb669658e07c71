"""Train a LeNet-style convolutional network on MNIST digits (or Fashion-MNIST clothes).

    python examples/mnist_cnn.py                       # >= 99% test accuracy in under 3 minutes on 2 cores
    python examples/mnist_cnn.py --preset fashion  # Fashion-MNIST, a wider net: >= 91%
    python examples/mnist_cnn.py --help

The same run as examples/mnist.py (--save/--resume/--load, --metrics, --plot, --graph, Ctrl-C,
divergence, --detect-anomaly; all in tinygrad_mnist/lab/run.py): only the model and its settings
differ. The network (tinygrad_mnist/nn.py: lenet), for a batch of N images:
    (N, 1, 28, 28) -> conv 5x5, 16 channels -> ReLU -> max-pool 2 -> (N, 16, 12, 12)
                   -> conv 5x5, 32 channels -> ReLU -> max-pool 2 -> (N, 32, 4, 4)
                   -> flatten (N, 512) -> [dropout] -> linear -> (N, 10) logits
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
from tinygrad_mnist.lab.data import batches, normalize, random_flip  # noqa: E402
from tinygrad_mnist.lab.datasets import DatasetNotFoundError, IDXError, load_dataset  # noqa: E402

# ----- settings: the defaults reach >= 99% on MNIST in under 3 minutes on 2 cores -----------------
DEFAULTS = {
    "epochs": 5,
    "batch_size": 64,
    "lr": 0.05,  # peak learning rate; the cosine schedule lowers it to 0 by the last step
    "momentum": 0.9,
    "dropout": 0.0,  # dropout before the last layer (training only)
    "padding": 0,  # zeros around the image before the first convolution (2 keeps it 28x28)
    "channels": "16,32",  # output channels of the two convolutions
    "augment": "none",  # or "flip": mirror a random half of each batch (clothes, not digits)
    "clip_norm": None,
    "clip_value": None,
    "schedule": "cosine",
    "seed": 0,
    "dataset": "mnist",
}
PRESETS = {
    # Fashion-MNIST: twice the channels, LeNet-5's padding, dropout, mirrored clothes, 10 epochs
    "fashion": {"dataset": "fashion-mnist", "epochs": 10, "dropout": 0.25, "padding": 2, "channels": "32,64",
                "augment": "flip"},
}
INPUT_SHAPE = (-1, 1, 28, 28)  # a CNN takes each image as one channel of 28x28 pixels


def main(argv=None):
    start_time = time.perf_counter()
    args = run.parse_args(DEFAULTS, PRESETS, argv, description="Train a CNN on MNIST with tinygrad_mnist.")
    session = run.Session(args)  # reads --load/--resume, checks --save/--metrics, prints the settings

    rng = np.random.default_rng(args.seed)  # initial weights, batch order and dropout masks
    channels = [int(count) for count in args.channels.split(",")]
    spec = {"kind": "lenet", "dropout": args.dropout, "padding": args.padding, "channels": channels}
    model = session.model(spec, rng=rng)  # the saved weights with --load/--resume
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
    model.train()
    with session.training():  # Ctrl-C stops after a step; --detect-anomaly checks every op
        for epoch in range(first_epoch, args.epochs):
            epoch_start, loss_sum = time.perf_counter(), 0.0
            epoch_batches = batches(train_images, train_labels, args.batch_size, shuffle=True, rng=rng)
            for step, (image_batch, label_batch) in session.steps(epoch_batches, epoch, steps_per_epoch):
                if args.augment == "flip":  # a mirrored shoe is still a shoe: more varied examples
                    image_batch = random_flip(image_batch, rng)
                optimizer.lr = run.learning_rate(args, epoch * steps_per_epoch + step, total_steps)
                x = Tensor(normalize(image_batch).reshape(INPUT_SHAPE))  # (batch, 28, 28) -> (batch, 1, 28, 28)
                loss = F.cross_entropy(model(x), label_batch)
                loss_sum += session.check_loss(loss.item())  # NaN or inf: stop, say what to try
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            correct, test_loss, _ = run.evaluate(model, *test_set)  # in eval mode: no dropout
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
