"""Train the MLP classifier on MNIST digits (or Fashion-MNIST clothes).

    python examples/mnist.py                      # 784-512-10, 10 epochs: >= 98% test accuracy
    python examples/mnist.py --preset seed        # the original program's recipe: >= 94%
    python examples/mnist.py --preset fashion     # Fashion-MNIST: >= 89%
    python examples/mnist.py --plot run.png       # and a figure of the run (needs matplotlib)
    python examples/mnist.py --help

Read it top to bottom: settings, the model, then main(): data, the training loop, the report.
The output follows the original program: accuracy before training, the initial loss, one line
per epoch, accuracy after training. examples/mnist_cnn.py states a CNN and its settings and runs
this same main(). What surrounds the loop (checkpoints for --save/--resume/--load, Ctrl-C,
divergence, --metrics, --plot) is tinygrad_mnist/lab/run.py, one call a line here; the flags and
what a valid value is are tinygrad_mnist/lab/settings.py.
"""

import math
import time

import numpy as np

from tinygrad_mnist import Tensor, functional as F, optim
from tinygrad_mnist.lab import run
from tinygrad_mnist.lab.data import batches, normalize, random_flip, random_shift
from tinygrad_mnist.lab.datasets import DatasetNotFoundError, load_dataset
from tinygrad_mnist.lab.idx import IDXError
from tinygrad_mnist.lab.settings import parse_args

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


def mlp(settings):
    """The model the settings describe, as a spec (lab/models.py rebuilds it from a checkpoint)
    and the builder's options."""
    layer_sizes = [784, *(int(size) for size in settings.hidden.split(",")), 10]
    spec = {"kind": "mlp", "layer_sizes": layer_sizes, "negative_slope": settings.negative_slope}
    return spec, {"init_scale": settings.init_scale}


def main(argv=None, defaults=DEFAULTS, presets=PRESETS, model_spec=mlp, input_shape=INPUT_SHAPE,
          description="Train an MLP on MNIST with tinygrad_mnist."):
    start_time = time.perf_counter()
    args = parse_args(defaults, presets, argv, description=description)
    session = run.Session(args)  # reads --load/--resume, checks --save/--metrics, prints the settings
    settings = session.settings  # the flags, the preset, the defaults, or the checkpoint's

    rng = np.random.default_rng(settings.seed)  # initial weights, batch order (and a CNN's dropout and flips)
    spec, options = model_spec(settings)
    model = session.model(spec, rng=rng, **options)  # the saved weights with --load/--resume
    if vars(settings).get("optimizer") == "adam":  # a CNN's setting (its bn preset)
        optimizer = optim.Adam(model.parameters(), lr=settings.lr)
    else:
        optimizer = optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                              clip_value=settings.clip_value, clip_norm=settings.clip_norm)

    dataset = load_dataset(settings.dataset, args.data_dir).subset(settings.train_subset, settings.test_subset)
    train_images, train_labels, test_images, test_labels = dataset
    steps_per_epoch = math.ceil(len(train_images) / settings.batch_size)
    scheduler = optim.CosineAnnealingLR(optimizer, T_max=settings.epochs * steps_per_epoch) \
        if settings.schedule == "cosine" else None  # from lr down to 0 by the last step
    first_epoch = session.start(model, optimizer, scheduler, rng)  # --resume: their states as saved

    if args.graph:  # the graph of one training step; --graph without --epochs only draws
        images = Tensor(normalize(train_images[: settings.batch_size]).reshape(input_shape), name="images")
        session.draw_graph(F.cross_entropy(model(images), train_labels[: settings.batch_size]))
        if args.graph_only:
            return

    train_set, test_set = (train_images, train_labels, input_shape), (test_images, test_labels, input_shape)
    _, initial_loss, _ = run.report("Model performance on training data before training:", model, *train_set)
    run.report("Model performance on test data before training:", model, *test_set)
    print(f"Initial loss: {initial_loss:.4f}")

    print("Training..." if first_epoch < settings.epochs else "No training (0 epochs left).")
    model.train()  # dropout on (evaluate switches to eval mode and back)
    with session.training():  # Ctrl-C stops after a step; --detect-anomaly checks every op
        for epoch in range(first_epoch, settings.epochs):
            epoch_start, loss_sum = time.perf_counter(), 0.0
            epoch_batches = batches(train_images, train_labels, settings.batch_size, shuffle=True, rng=rng)
            for step, (image_batch, label_batch) in session.steps(epoch_batches, epoch, steps_per_epoch):
                if vars(settings).get("augment") == "flip":  # a CNN's setting: a mirrored shoe is still a shoe
                    image_batch = random_flip(image_batch, rng)
                elif vars(settings).get("augment") == "shift":  # a digit 2 pixels to the left is the same digit
                    image_batch = random_shift(image_batch, rng)
                x = Tensor(normalize(image_batch).reshape(input_shape))  # (batch, 28, 28) uint8 -> float32 input_shape
                loss = F.cross_entropy(model(x), label_batch)
                loss_sum += session.check_loss(loss.item())  # NaN or inf: stop, say what to try
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()  # the next step's learning rate
            correct, test_loss, _ = run.evaluate(model, *test_set)
            seconds = time.perf_counter() - epoch_start
            print(f"Epoch {epoch + 1}/{settings.epochs}  loss {loss_sum / steps_per_epoch:.4f}  "
                  f"test accuracy {100 * correct / len(test_images):.2f}%  time {seconds:.1f}s")
            session.end_epoch(epoch + 1, train_loss=loss_sum / steps_per_epoch, test_loss=test_loss,
                              test_accuracy=correct / len(test_images), lr=optimizer.lr, seconds=seconds)

    run.report("Model performance on training data after training:", model, *train_set)
    _, _, logits = run.report("Model performance on test data after training:", model, *test_set, dataset.classes)
    session.finish(logits)  # --save with 0 epochs: the model as it is, if its outputs are finite (before the figure)
    session.plot(test_images, test_labels, logits, dataset.classes)  # --plot: a figure of the run
    print(f"Total time: {time.perf_counter() - start_time:.1f}s")


ERRORS = (DatasetNotFoundError, IDXError)  # a missing or damaged data file: one line, exit 1

if __name__ == "__main__":
    run.main(main, errors=ERRORS)
