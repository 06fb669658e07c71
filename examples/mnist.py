"""Train the MLP digit classifier on MNIST.

    python examples/mnist.py                  # 784-512-10, 10 epochs: >= 98% test accuracy
    python examples/mnist.py --preset seed    # the original program's recipe: >= 94%
    python examples/mnist.py --help

The output follows the original program: accuracy before training, the initial loss, one line
per epoch, accuracy after training. `--save PATH` writes a checkpoint after every epoch;
`--resume PATH` continues it exactly; Ctrl-C stops cleanly after keeping the last full epoch.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

import tinygrad_mnist as tg
from tinygrad_mnist import Tensor, functional as F, nn, optim
from tinygrad_mnist.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tinygrad_mnist.data import IDXError, MNISTNotFoundError, batches, load_mnist, normalize

# ----- configuration: the defaults reach >= 98% test accuracy in well under 30 s on 2 cores ------
DEFAULTS = {
    "epochs": 10,
    "batch_size": 64,
    "lr": 0.1,  # peak learning rate; the cosine schedule lowers it to 0 by the last step
    "momentum": 0.9,
    "hidden": "512",
    "init_scale": 1.0,  # He initialisation as is
    "negative_slope": 0.01,  # leaky ReLU slope below zero
    "clip_norm": None,
    "clip_value": None,
    "schedule": "cosine",
    "seed": 0,
}
PRESETS = {
    # the original program: He init x 0.1, leaky ReLU, plain SGD (no momentum) with clipping,
    # a constant learning rate, 10 epochs
    "seed": {
        "hidden": "128",
        "init_scale": 0.1,
        "momentum": 0.0,
        "lr": 0.05,
        "batch_size": 32,
        "clip_value": 1.0,
        "schedule": "constant",
        "epochs": 10,
    },
}
TRAINING_FLAGS = tuple(DEFAULTS)  # the settings a checkpoint carries, fixed on --resume
RUN_RECORD = ("settings", "layer_sizes", "epoch", "rng_state")  # what else --save records
EVAL_CHUNK = 5000  # evaluate this many images at a time: bounded memory


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument gets one line (the reason), not the whole usage text."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(argv=None):
    parser = ArgumentParser(
        description="Train an MLP on MNIST with tinygrad_mnist.",
        epilog="Flags left out take their value from --preset, else from the defaults shown.",
    )
    add = parser.add_argument
    add("--epochs", type=int, help=f"passes over the training set (default {DEFAULTS['epochs']})")
    add("--batch-size", type=int, help=f"examples per step (default {DEFAULTS['batch_size']})")
    add("--lr", type=float, help=f"learning rate (default {DEFAULTS['lr']})")
    add("--momentum", type=float, help=f"SGD momentum (default {DEFAULTS['momentum']})")
    add("--hidden", help=f"hidden layer sizes, e.g. 256 or 128,64 (default {DEFAULTS['hidden']})")
    add("--init-scale", type=float, help="multiplier of the He initialisation (default 1.0)")
    add("--negative-slope", type=float, help="leaky ReLU slope below zero (default 0.01)")
    add("--clip-norm", type=float, help="clip the gradients' joint L2 norm to this")
    add("--clip-value", type=float, help="clip every gradient element to [-v, v]")
    add("--schedule", choices=("cosine", "constant"), help="learning-rate schedule (default cosine)")
    add("--seed", type=int, help="seed for initialisation and shuffling (default 0)")
    add("--preset", choices=sorted(PRESETS), help="a named recipe; 'seed' is the original program's")
    add("--data-dir", type=Path, help="folder with the MNIST files (else $TINYGRAD_MNIST_DATA, else data/mnist)")
    add("--save", type=Path, metavar="PATH", help="write a checkpoint here after every epoch")
    add("--load", type=Path, metavar="PATH", help="start from a saved model (evaluates only unless --epochs is given)")
    add("--resume", type=Path, metavar="PATH", help="continue a --save checkpoint exactly where it stopped")
    add("--graph", type=Path, metavar="PATH", help="draw one training step's graph to PATH (.svg, .png or .dot)")
    add("--detect-anomaly", action="store_true", help="check every op for NaN/Inf (slower)")
    add("--train-subset", type=int, metavar="N", help="train on the first N training images only")
    add("--test-subset", type=int, metavar="N", help="evaluate on the first N test images only")
    add("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    given = {flag for flag in TRAINING_FLAGS if getattr(args, flag) is not None}
    args.given = given
    if args.resume is not None:
        if given or args.load or args.preset:
            flags = ", ".join("--" + flag.replace("_", "-") for flag in sorted(given)) or "--load/--preset"
            parser.error(f"--resume continues the saved run with its own settings; drop {flags}")
    else:
        settings = {**DEFAULTS, **PRESETS.get(args.preset, {})}
        if args.load is not None and "epochs" not in given:
            settings["epochs"] = 0  # --load alone evaluates the saved model
        for flag, value in settings.items():
            if getattr(args, flag) is None:
                setattr(args, flag, value)
        _validate(parser.error, args)
    if args.data_dir is not None and not args.data_dir.is_dir():
        parser.error(f"--data-dir {args.data_dir} is not a folder")
    return args


def _validate(fail, args):
    """Reject settings that cannot train: call `fail` with a one-line reason (parser.error exits 2)."""
    checks = [
        (args.epochs >= 0, f"--epochs must be 0 or more, got {args.epochs}"),
        (args.batch_size >= 1, f"--batch-size must be at least 1, got {args.batch_size}"),
        (args.lr > 0 and math.isfinite(args.lr), f"--lr must be a positive number, got {args.lr}"),
        (0 <= args.momentum < 1, f"--momentum must be in [0, 1), got {args.momentum}"),
        (args.init_scale > 0, f"--init-scale must be positive, got {args.init_scale}"),
        (args.clip_norm is None or args.clip_norm > 0, f"--clip-norm must be positive, got {args.clip_norm}"),
        (args.clip_value is None or args.clip_value > 0, f"--clip-value must be positive, got {args.clip_value}"),
        (args.train_subset is None or args.train_subset >= 1, "--train-subset must be at least 1"),
        (args.test_subset is None or args.test_subset >= 1, "--test-subset must be at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            fail(message)
    try:
        args.hidden_sizes = [int(size) for size in str(args.hidden).split(",")]
    except ValueError:
        fail(f"--hidden takes sizes separated by commas, like 256 or 128,64; got {args.hidden!r}")
    if any(size < 1 for size in args.hidden_sizes):
        fail(f"--hidden sizes must be at least 1, got {args.hidden!r}")


# ----- evaluation ----------------------------------------------------------------------------
def evaluate(model, images, labels):
    """(number correct, mean loss) over a whole set, in chunks, without recording a graph."""
    correct, total_loss = 0, 0.0
    with tg.no_grad():
        for start in range(0, len(images), EVAL_CHUNK):
            chunk = Tensor(normalize(images[start : start + EVAL_CHUNK]).reshape(-1, 784))
            chunk_labels = labels[start : start + EVAL_CHUNK]
            logits = model(chunk)
            correct += int((logits.data.argmax(axis=1) == chunk_labels).sum())
            total_loss += F.cross_entropy(logits, chunk_labels).item() * len(chunk_labels)
    return correct, total_loss / len(images)


def report(title, model, images, labels):
    """Print the original program's performance lines for one set; return (correct, mean loss)."""
    correct, loss = evaluate(model, images, labels)
    print(title)
    print(f"Correct: {correct}  Incorrect: {len(images) - correct} Accuracy: {100 * correct / len(images):.2f}%")
    return correct, loss


# ----- training ------------------------------------------------------------------------------
class StopRequest:
    """Ctrl-C sets a flag that the loop checks after each step, so a checkpoint is never cut
    half-written; a second Ctrl-C stops at once."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self.previous)


def learning_rate(args, step, total_steps):
    if args.schedule == "constant" or total_steps == 0:
        return args.lr
    return args.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))  # cosine from lr to 0


def settings_of(args):
    return {flag: getattr(args, flag) for flag in TRAINING_FLAGS}


def main(argv=None):
    args = parse_args(argv)
    start_time = time.perf_counter()

    checkpoint = None
    if args.resume or args.load:
        try:
            checkpoint = load_checkpoint(args.resume or args.load)
        except (CheckpointError, FileNotFoundError) as error:
            sys.exit(f"error: {error}")
        missing = [key for key in RUN_RECORD if key not in checkpoint.meta]
        missing += [f"settings.{flag}" for flag in TRAINING_FLAGS if flag not in checkpoint.meta.get("settings", {})]
        if missing:
            sys.exit(f"error: {args.resume or args.load} is not a checkpoint of this script: its record lacks {', '.join(missing)}")
        if args.resume:
            for flag in TRAINING_FLAGS:
                setattr(args, flag, checkpoint.meta["settings"][flag])
            args.train_subset = checkpoint.meta.get("train_subset")
            args.test_subset = checkpoint.meta.get("test_subset")
            _validate(lambda message: sys.exit(f"error: {args.resume} holds invalid settings: {message}"), args)
            args.hidden_sizes = checkpoint.meta["layer_sizes"][1:-1]
            args.save = args.save or args.resume
        elif "hidden" in args.given and args.hidden_sizes != checkpoint.meta["layer_sizes"][1:-1]:
            sys.exit(f"error: --hidden {args.hidden} does not match the saved model's layers {checkpoint.meta['layer_sizes']}")
        else:
            args.hidden_sizes = checkpoint.meta["layer_sizes"][1:-1]  # the saved architecture

    try:
        mnist = load_mnist(args.data_dir).subset(args.train_subset, args.test_subset)
    except (MNISTNotFoundError, IDXError) as error:
        sys.exit(f"error: {error}")
    train_images, train_labels, test_images, test_labels = mnist

    rng = np.random.default_rng(args.seed)
    layer_sizes = [784, *args.hidden_sizes, 10]
    model = nn.mlp(layer_sizes, negative_slope=args.negative_slope, init_scale=args.init_scale, rng=rng)
    optimizer = optim.SGD(
        model.parameters(), lr=args.lr, momentum=args.momentum, clip_value=args.clip_value, clip_norm=args.clip_norm
    )
    first_epoch = 0
    if checkpoint is not None:
        try:
            model.load_state_dict(checkpoint.model_state)
            if args.resume:
                optimizer.load_state_dict(checkpoint.optimizer_state)
                rng.bit_generator.state = checkpoint.meta["rng_state"]
                first_epoch = checkpoint.meta["epoch"]
        except (KeyError, ValueError, TypeError) as error:
            sys.exit(f"error: {args.resume or args.load} does not fit this model: {error}")

    if args.graph:
        draw_step_graph(model, train_images, train_labels, args)

    _, initial_loss = report("Model performance on training data before training:", model, train_images, train_labels)
    report("Model performance on test data before training:", model, test_images, test_labels)
    print(f"Initial loss: {initial_loss:.4f}")
    # what every checkpoint of this run records besides the arrays, the epoch and the RNG state
    record = dict(layer_sizes=layer_sizes, settings=settings_of(args), train_subset=args.train_subset,
                  test_subset=args.test_subset)

    steps_per_epoch = math.ceil(len(train_images) / args.batch_size)
    total_steps = args.epochs * steps_per_epoch
    print("Training..." if first_epoch < args.epochs else "No training (0 epochs left).")
    anomaly = tg.detect_anomaly() if args.detect_anomaly else contextlib.nullcontext()
    with StopRequest() as stop, anomaly:
        for epoch in range(first_epoch, args.epochs):
            epoch_start = time.perf_counter()
            loss_sum = 0.0
            progress = tqdm(
                batches(train_images, train_labels, args.batch_size, shuffle=True, rng=rng),
                total=steps_per_epoch, desc=f"Epoch {epoch + 1}/{args.epochs}", leave=False,
                disable=args.quiet, unit="step",
            )
            for step, (image_batch, label_batch) in enumerate(progress):
                optimizer.lr = learning_rate(args, epoch * steps_per_epoch + step, total_steps)
                x = Tensor(normalize(image_batch).reshape(-1, 784))  # (batch, 28, 28) uint8 -> (batch, 784) float32
                try:
                    loss = F.cross_entropy(model(x), label_batch)
                    loss_value = loss.item()
                    if not math.isfinite(loss_value):
                        progress.close()
                        sys.exit(_diverged_message(epoch, step, steps_per_epoch, loss_value, args))
                    optimizer.zero_grad()
                    loss.backward()
                except tg.AnomalyError as error:  # only raised under --detect-anomaly
                    progress.close()
                    sys.exit(f"error: in epoch {epoch + 1}, step {step + 1}: {error}")
                optimizer.step()
                loss_sum += loss_value
                if stop.requested:
                    progress.close()
                    _stopped(epoch, step, steps_per_epoch, args)
            progress.close()
            correct, _ = evaluate(model, test_images, test_labels)
            print(
                f"Epoch {epoch + 1}/{args.epochs}  loss {loss_sum / steps_per_epoch:.4f}  "
                f"test accuracy {100 * correct / len(test_images):.2f}%  time {time.perf_counter() - epoch_start:.1f}s"
            )
            if args.save:
                save_checkpoint(args.save, model.state_dict(), optimizer.state_dict(), epoch=epoch + 1,
                                rng_state=rng.bit_generator.state, **record)

    report("Model performance on training data after training:", model, train_images, train_labels)
    report("Model performance on test data after training:", model, test_images, test_labels)
    if args.save and args.epochs == 0:
        save_checkpoint(args.save, model.state_dict(), optimizer.state_dict(), epoch=0,
                        rng_state=rng.bit_generator.state, **record)
    print(f"Total time: {time.perf_counter() - start_time:.1f}s")


def _diverged_message(epoch, step, steps_per_epoch, loss_value, args):
    kept = f"; {args.save} keeps the last good epoch" if args.save and epoch > 0 else ""
    return (
        f"error: the loss became {loss_value} in epoch {epoch + 1}, step {step + 1}/{steps_per_epoch}: "
        f"training diverged{kept}. Try a lower --lr (now {args.lr}), --clip-norm 1.0, or find the "
        f"op where it starts with --detect-anomaly."
    )


def _stopped(epoch, step, steps_per_epoch, args):
    if args.save and epoch > 0:
        kept = f"{args.save} holds epoch {epoch}; continue with --resume {args.save}"
    elif args.save:
        kept = "no epoch finished, so there is no checkpoint yet"
    else:
        kept = "nothing was saved (use --save PATH to keep checkpoints)"
    print(f"\nStopped by Ctrl-C in epoch {epoch + 1} at step {step + 1}/{steps_per_epoch}; {kept}.", file=sys.stderr)
    sys.exit(130)


def draw_step_graph(model, images, labels, args):
    """Draw the graph of one training step (forward and backward of the first batch)."""
    from tinygrad_mnist.viz import INSTALL_HINT, draw_graph, render

    x = Tensor(normalize(images[: args.batch_size]).reshape(-1, 784), name="images")
    loss = F.cross_entropy(model(x), labels[: args.batch_size])
    loss.name = "loss"
    loss.backward()
    written = render(draw_graph(loss, names=model), args.graph)
    model.zero_grad()
    print(f"Graph of one training step written to {written}")
    if written.suffix == ".dot" and args.graph.suffix != ".dot":
        print(INSTALL_HINT)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (loading data, evaluating)
        print("\nStopped by Ctrl-C.", file=sys.stderr)
        sys.exit(130)
