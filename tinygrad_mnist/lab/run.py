"""A training run around a training loop: flags, checkpoints, Ctrl-C, divergence, metrics.

A training script keeps its own loop (forward, loss, zero_grad, backward, step) and calls this
module a line at a time, so the loop stays readable and every script fails the same clear way:

    args = run.parse_args(DEFAULTS, PRESETS)     # the command line; a bad flag exits with status 2
    session = run.Session(args)                  # reads --load/--resume, checks --save/--metrics
    model = session.model(spec, rng=rng)         # built through MODELS; the saved weights if any
    first_epoch = session.restore(optimizer, rng)          # --resume: momentum, batch order, epoch
    with session.training():                     # Ctrl-C stops after a step; --detect-anomaly
        for epoch in range(first_epoch, args.epochs):
            for step, batch in session.steps(batches, epoch, steps_per_epoch):
                ...                              # forward and loss, then
                session.check_loss(loss.item())  # a non-finite loss stops with what to try
                ...                              # zero_grad, backward, step
            session.end_epoch(epoch + 1, model, optimizer, rng, **numbers)  # checks, saves, logs
    run.main(train, errors=(...))                # one line on stderr and an exit status

Exit statuses: 0 done, 1 a failure (an unusable file, divergence, a write that failed), 2 a bad
argument (a flag, a --save target), 130 Ctrl-C. A checkpoint records the model ({"kind": "mlp",
...}, rebuilt through MODELS), the settings, the epoch, the shuffling generator's state and the
subsets; every field is checked (types, ranges) before it is used, and no checkpoint is written
with weights that are not finite.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from .. import functional as F, nn
from .checkpoint import CheckpointError, check_save_target, load_checkpoint, save_checkpoint
from .datasets import DATASETS
from .data import normalize
from ..modes import AnomalyError, detect_anomaly, no_grad, pin_malloc_thresholds
from ..tensor import Tensor

# a model larger than this is refused before anything is allocated: 10^8 float32 parameters are
# 400 MB, and training holds three copies (weights, gradients, momentum)
MAX_PARAMETERS = 10**8


class RunError(Exception):
    """A run cannot go on. The message is one line: what went wrong and what to do. `status` is
    the exit status run.main uses: 2 for a bad argument, 1 for anything else."""

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


# ----- settings: what a flag means and what a valid value is -------------------------------------
class Setting(NamedTuple):
    """One training setting: its flag's type and help, and `check(value)`, which returns None or
    what is wrong ("must be at least 1")."""

    type: type
    help: str
    check: Callable
    choices: tuple | None = None


def _rule(is_valid, must):
    return lambda value: None if is_valid(value) else f"must be {must}"


def _float32_positive(value):
    with np.errstate(over="ignore"):  # 1e39 becomes inf, 1e-50 becomes 0: neither would train
        return _finite(value) and 0 < np.float32(value) < np.inf


def _finite(value):
    return math.isfinite(value) if abs(value) < 2**1024 else False  # a huge int does not fit a float


def _check_sizes(text):
    try:
        sizes = [int(size) for size in str(text).split(",")]
    except ValueError:
        return "takes sizes separated by commas, like 256 or 128,64"
    return None if min(sizes) >= 1 else "sizes must be at least 1"


_POSITIVE = "a positive number float32 can hold (1e-45 to 3e38)"
SETTINGS = {
    "epochs": Setting(int, "passes over the training set", _rule(lambda v: v >= 0, "0 or more")),
    "batch_size": Setting(int, "examples per step", _rule(lambda v: v >= 1, "at least 1")),
    "lr": Setting(float, "peak learning rate", _rule(_float32_positive, _POSITIVE)),
    "momentum": Setting(float, "SGD momentum", _rule(lambda v: 0 <= v < 1, "in [0, 1)")),
    "hidden": Setting(str, "hidden layer sizes, e.g. 256 or 128,64", _check_sizes),
    "init_scale": Setting(float, "multiplier of the He initialisation", _rule(_float32_positive, _POSITIVE)),
    "negative_slope": Setting(float, "leaky ReLU slope below zero", _rule(_finite, "a finite number")),
    "clip_norm": Setting(float, "clip the gradients' joint L2 norm to this", _rule(_float32_positive, _POSITIVE)),
    "clip_value": Setting(float, "clip every gradient element to [-v, v]", _rule(_float32_positive, _POSITIVE)),
    "schedule": Setting(str, "learning-rate schedule", _rule(lambda v: v in ("cosine", "constant"), "cosine or constant"),
                        choices=("cosine", "constant")),
    "seed": Setting(int, "seed for initialisation and shuffling", _rule(lambda v: v >= 0, "0 or more")),
    "dropout": Setting(float, "dropout probability before the last layer", _rule(lambda v: 0 <= v < 1, "in [0, 1)")),
    "padding": Setting(int, "zeros around the image before the first convolution", _rule(lambda v: 0 <= v <= 4, "0 to 4")),
    "channels": Setting(str, "output channels of the two convolutions, e.g. 16,32", _check_sizes),
    "augment": Setting(str, "training-time augmentation: none, or flip (mirror a random half of each batch)",
                       _rule(lambda v: v in ("none", "flip"), "none or flip"), choices=("none", "flip")),
    "dataset": Setting(str, "the dataset to train on", _rule(lambda v: v in DATASETS, f"one of {sorted(DATASETS)}"),
                       choices=tuple(sorted(DATASETS))),
}


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_settings(settings, defaults, rules=SETTINGS):
    """What is wrong with `settings` (a dict), as one line naming the flag, or None. Every name of
    `defaults` must be there with the type of its rule; None only where the default is None."""
    if not isinstance(settings, dict):
        return f"settings must be a dict, got {type(settings).__name__}"
    for name, default in defaults.items():
        flag, rule = _flag(name), rules[name]
        if name not in settings:
            return f"{flag} is missing"
        value = settings[name]
        if value is None and default is None:
            continue
        is_type = {int: _is_int, float: _is_number}.get(rule.type, lambda v: isinstance(v, rule.type))
        if not is_type(value):
            return f"{flag} must be of type {rule.type.__name__}, got {value!r}"
        problem = rule.check(value)
        if problem:
            return f"{flag} {problem}, got {value!r}"
    return None


def _flag(name):
    return "--" + name.replace("_", "-")


# ----- the command line -----------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument gets one line (the reason), not the whole usage text."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(defaults, presets=None, argv=None, description=None, rules=SETTINGS):
    """Parse a training script's command line: one flag per setting of `defaults` (described by
    `rules`, SETTINGS by default), `--preset NAME` for the named dicts of `presets`, and the run's
    flags (--save, --resume, --load, --metrics, ...; see --help).

    A new run takes each setting from its flag, else the preset, else `defaults`. With --load or
    --resume, Session fills them in from the checkpoint. `args.given` names the settings given as
    flags; `args.graph_only` is True for --graph without --epochs or --resume. A bad argument exits
    with status 2 and one line."""
    presets = presets or {}
    parser = _Parser(description=description, epilog="Flags left out take their value from --preset, "
                     "else from the checkpoint of --load/--resume, else from the defaults shown.")
    for name, default in defaults.items():
        rule = rules[name]
        parser.add_argument(_flag(name), type=rule.type, choices=rule.choices, help=f"{rule.help} (default {default})")
    add = parser.add_argument
    add("--preset", choices=sorted(presets), help="a named recipe of settings")
    add("--data-dir", type=Path, help="folder with the data files (else the loader's environment variable or default)")
    add("--train-subset", type=int, metavar="N", help="train on the first N training examples only")
    add("--test-subset", type=int, metavar="N", help="evaluate on the first N test examples only")
    add("--save", type=Path, metavar="PATH", help="write a checkpoint here after every epoch")
    add("--overwrite", action="store_true", help="let --save replace a checkpoint of another run")
    add("--resume", type=Path, metavar="PATH", help="continue a --save checkpoint exactly where it stopped")
    add("--load", type=Path, metavar="PATH", help="start from a saved model and its settings, with a fresh optimizer "
        "and schedule; evaluates only unless --epochs N is given (then trains N epochs)")
    add("--metrics", type=Path, metavar="PATH",
        help="write each epoch's numbers here: JSON lines, or CSV if PATH ends in .csv")
    add("--plot", type=Path, metavar="PATH", help="after training, draw the loss, the accuracy, the confusion matrix "
        "and the test images most wrong to PATH (.png or .svg; needs matplotlib)")
    add("--graph", type=Path, metavar="PATH", help="draw one training step's graph to PATH (.svg, .png, .pdf or .dot); "
        "alone it only draws, with --epochs N it draws, then trains")
    add("--detect-anomaly", action="store_true", help="check every op for NaN/Inf (slower)")
    add("--quiet", action="store_true", help="no progress bars (there are none when stderr is not a terminal)")
    args = parser.parse_args(argv)

    args.defaults, args.rules = dict(defaults), rules
    args.given = {name for name in defaults if getattr(args, name) is not None}
    args.preset_settings = presets.get(args.preset, {})
    if args.resume is not None:
        subsets = {name for name in ("train_subset", "test_subset") if getattr(args, name) is not None}
        extra = sorted(map(_flag, args.given | subsets))
        extra += ["--load"] * (args.load is not None) + ["--preset"] * (args.preset is not None)
        if extra:
            parser.error(f"--resume continues the saved run with its own settings and subsets; drop {', '.join(extra)}")
    given = {name: getattr(args, name) for name in args.given}
    settings = {**defaults, **args.preset_settings, **given}
    problem = check_settings(settings, defaults, rules)
    if problem:
        parser.error(problem)
    if args.resume is None and args.load is None:
        vars(args).update(settings)
    for name in ("train_subset", "test_subset"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"{_flag(name)} must be at least 1, got {getattr(args, name)}")
    if args.data_dir is not None and not args.data_dir.is_dir():
        parser.error(f"--data-dir {args.data_dir} is not a folder")
    if args.graph is not None and args.graph.suffix.lower() not in (".svg", ".png", ".pdf", ".dot"):
        parser.error(f"--graph {args.graph}: end the file name with .svg, .png, .pdf or .dot")
    if args.plot is not None:
        from .plots import MissingMatplotlibError, check_plot_path

        try:  # known now, not after training
            check_plot_path(args.plot)
        except (ValueError, MissingMatplotlibError) as error:
            parser.error(f"--plot {error}")
    args.graph_only = args.graph is not None and "epochs" not in args.given and args.resume is None
    return args


# ----- models: a checkpoint names its architecture, rebuilt through this table --------------------
def build_mlp(layer_sizes, negative_slope=0.01, **options):
    """MODELS["mlp"]: nn.mlp(layer_sizes, negative_slope, **options), after checking the sizes."""
    if not (isinstance(layer_sizes, list) and len(layer_sizes) >= 2 and all(_is_int(n) and n >= 1 for n in layer_sizes)):
        raise ValueError(f"layer_sizes must be a list of 2 or more whole numbers of at least 1, got {layer_sizes!r}")
    if not (_is_number(negative_slope) and _finite(negative_slope)):
        raise ValueError(f"negative_slope must be a finite number, got {negative_slope!r}")
    _check_size(sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(layer_sizes, layer_sizes[1:])))
    return nn.mlp(layer_sizes, negative_slope=negative_slope, **options)


def build_lenet(dropout=0.0, padding=0, channels=(16, 32), **options):
    """MODELS["lenet"]: nn.lenet(dropout, padding, channels, **options), the CNN of examples/mnist_cnn.py."""
    if not (_is_number(dropout) and 0 <= dropout < 1):
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
    if not (_is_int(padding) and 0 <= padding <= 4):
        raise ValueError(f"padding must be a whole number from 0 to 4, got {padding!r}")
    if not (isinstance(channels, (list, tuple)) and len(channels) == 2 and all(_is_int(c) and 1 <= c <= 1024 for c in channels)):
        raise ValueError(f"channels must be two whole numbers from 1 to 1024, got {channels!r}")
    _check_size(25 * channels[0] * (1 + channels[1]) + channels[1] * (1 + 250))  # the weights, roughly
    options.pop("init_scale", None)  # the convolutions take PyTorch's initialisation
    return nn.lenet(dropout=dropout, padding=padding, channels=tuple(channels), **options)


MODELS = {"mlp": build_mlp, "lenet": build_lenet}  # kind -> builder(**arguments, **options): one entry each


def _check_size(parameters):
    if parameters > MAX_PARAMETERS:
        raise ValueError(f"the model would have {parameters:,} parameters ({4 * parameters // 2**30:,} GiB of float32); "
                         f"the limit is {MAX_PARAMETERS:,}: choose smaller layers")


def build_model(spec, **options):
    """The model a spec describes, e.g. {"kind": "mlp", "layer_sizes": [784, 512, 10],
    "negative_slope": 0.01}, built by MODELS[kind]; `options` (rng, init_scale, ...) go to the
    builder. Raises ValueError naming what is wrong with the spec, before allocating anything."""
    if not isinstance(spec, dict) or not isinstance(spec.get("kind"), str) or spec["kind"] not in MODELS:
        kind = spec.get("kind") if isinstance(spec, dict) else spec
        raise ValueError(f"the model kind {kind!r} is not one of {sorted(MODELS)}")
    arguments = {key: value for key, value in spec.items() if key != "kind"}
    try:
        return MODELS[spec["kind"]](**arguments, **options)
    except TypeError as error:  # a field the builder does not take, or one it needs
        raise ValueError(f"the {spec['kind']} model does not fit its fields {sorted(arguments)}: {error}") from None


def _load_weights(model, state, path):
    try:
        model.load_state_dict(state)
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"{path} does not fit its model: {str(error).strip(chr(34))}") from None
    if not all(np.isfinite(array).all() for array in state.values()):
        raise CheckpointError(f"{path} holds weights that are not finite (NaN or inf); use an earlier checkpoint")


def save_model(path, model, spec):
    """Save `model`'s weights with its spec (see build_model) as a checkpoint load_model reads back."""
    build_model(spec)  # a spec that could not be rebuilt is refused now, not when loading
    return save_checkpoint(path, model.state_dict(), model=spec)


def load_model(path):
    """The model saved at `path`, rebuilt exactly: the architecture its record names, through
    MODELS, with the saved weights. Raises CheckpointError (or FileNotFoundError) saying why."""
    checkpoint = load_checkpoint(path)
    try:
        model = build_model(checkpoint.meta.get("model"))
    except ValueError as error:
        raise CheckpointError(f"{path}: its record's model is unusable: {error}") from None
    _load_weights(model, checkpoint.model_state, path)
    return model


def _same_file(first, second):
    try:
        return Path(first).resolve() == Path(second).resolve()
    except OSError:
        return False


class StopRequest:
    """Ctrl-C sets `requested`, checked after each step, so a checkpoint is never cut half-written;
    a second Ctrl-C stops at once."""

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


# ----- evaluation and the learning-rate schedule, shared by the training scripts ----------------
def evaluate(model, images, labels, input_shape, chunk=250):  # LeNet: 15,100 images/s in chunks of 250, 11,200 in 1000s
    """(number correct, mean cross-entropy, logits) of `model` on uint8 `images`, scaled as in
    training and reshaped to `input_shape` ((-1, 784) for an MLP, (-1, 1, 28, 28) for a CNN), in
    chunks of `chunk` images (nn.lenet's largest im2col matrix, 26 MB, then stays below malloc's 32 MiB mmap threshold), in eval mode (no dropout) and without recording a graph."""
    was_training = model.training
    model.eval()
    with no_grad():
        logits = np.concatenate([model(Tensor(normalize(images[start : start + chunk]).reshape(input_shape))).data
                                 for start in range(0, len(images), chunk)])
        loss = F.cross_entropy(Tensor(logits), labels).item()
    model.train(was_training)
    return int((logits.argmax(axis=1) == labels).sum()), loss, logits


def report(title, model, images, labels, input_shape, classes=None):
    """Print the original program's performance lines for one set (and, given the class names,
    each class's accuracy); return (correct, mean loss, logits) as evaluate does."""
    correct, loss, logits = evaluate(model, images, labels, input_shape)
    print(title)
    print(f"Correct: {correct}  Incorrect: {len(images) - correct} Accuracy: {100 * correct / len(images):.2f}%")
    if classes is not None:
        hits = [(logits.argmax(axis=1) == labels)[labels == label].mean() for label in range(len(classes))]
        print("Per class: " + ", ".join(f"{name} {100 * hit:.1f}%" for name, hit in zip(classes, hits)))
    return correct, loss, logits


def learning_rate(args, step, total_steps):
    """The learning rate of step `step`: --lr throughout, or a cosine from --lr down to 0."""
    if args.schedule == "constant" or total_steps == 0:
        return args.lr
    return args.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))


# ----- one run --------------------------------------------------------------------------------
class Session:
    """One run of a training script: reads the checkpoint of --load/--resume and checks every field
    of its record, fills in the settings (the saved ones, then --preset, then the flags given; with
    --resume, the saved ones only), checks the --save and --metrics targets before any training,
    and prints the settings it uses on one line."""

    def __init__(self, args):
        self.args, self.spec, self.position, self.stop = args, None, "before training", None
        self.source = args.resume or args.load
        self.checkpoint = self._read(self.source) if self.source else None
        self.saved_epoch = None  # the epoch the --save file holds, when known to be this run's
        self.step_losses, self.epoch_accuracies = [], []  # this run's history, for --plot
        if args.resume is not None:
            args.save = args.save or args.resume
            if _same_file(args.save, args.resume):
                self.saved_epoch = self.checkpoint.meta["epoch"]
        if args.save is not None:
            try:
                check_save_target(args.save, overwrite=args.overwrite, resuming=self.source)
            except CheckpointError as error:
                raise RunError(f"--save {error}", status=2) from None
        self.metrics = self._open_metrics(args.metrics) if args.metrics else None
        self.settings = {name: getattr(args, name) for name in args.defaults}
        shown = " ".join(f"{name}={value}" for name, value in self.settings.items())
        subsets = "".join(f" {name}={getattr(args, name)}" for name in ("train_subset", "test_subset")
                          if getattr(args, name))
        origin = f" (from {self.source}, epoch {self.checkpoint.meta.get('epoch', '?')})" if self.source else ""
        print(f"Settings: {shown}{subsets}{origin}")

    def _read(self, path):
        args = self.args
        checkpoint = load_checkpoint(path)
        meta = checkpoint.meta
        needed = ("model", "settings", "epoch", "rng_state") if args.resume else ("model",)
        missing = [key for key in needed if key not in meta]
        if missing:
            raise RunError(f"{path} is not a checkpoint of this script: its record lacks {', '.join(missing)}")
        problem = self._check_record(meta)
        if problem:
            raise RunError(f"{path} holds {problem}")
        saved = {name: value for name, value in meta.get("settings", {}).items() if name in args.defaults}
        if args.resume:
            vars(args).update(saved, train_subset=meta.get("train_subset"), test_subset=meta.get("test_subset"))
        else:  # --load: the saved settings, then the preset, then the flags; evaluate unless --epochs
            given = {name: getattr(args, name) for name in args.given}
            vars(args).update({**args.defaults, **saved, **args.preset_settings, **given})
            args.epochs = given.get("epochs", 0)
        return checkpoint

    def _check_record(self, meta):
        if "settings" in meta:
            problem = check_settings(meta["settings"], self.args.defaults, self.args.rules)
            if problem:
                return f"invalid settings: {problem}"
        if "epoch" in meta:
            epochs = meta.get("settings", {}).get("epochs", math.inf)
            if not (_is_int(meta["epoch"]) and 0 <= meta["epoch"] <= epochs):
                return f"an invalid epoch {meta['epoch']!r}: a whole number from 0 to {epochs} expected"
        for name in ("train_subset", "test_subset"):
            value = meta.get(name)
            if value is not None and not (_is_int(value) and value >= 1):
                return f"an invalid {name} {value!r}: a whole number of at least 1 (or null) expected"
        if "rng_state" in meta:
            try:  # a state the generator refuses, tried on a scratch generator
                np.random.default_rng().bit_generator.state = meta["rng_state"]
            except (TypeError, ValueError, KeyError, OverflowError):
                return "an invalid rng_state: not the state of numpy's default generator (PCG64)"
        return None

    def _open_metrics(self, path):
        try:
            if path.is_dir():
                raise IsADirectoryError(f"{path} is a folder")
            path.parent.mkdir(parents=True, exist_ok=True)
            file = open(path, "a" if self.args.resume else "w", encoding="utf-8")  # a resumed run continues the log
        except OSError as error:
            raise RunError(f"--metrics {path}: cannot write there ({error.strerror or error})", status=2) from None
        if path.suffix.lower() == ".csv" and file.tell() == 0:
            file.write("epoch,train_loss,test_loss,test_accuracy,lr,seconds\n")
        return file

    def model(self, spec, **options):
        """Build the model `spec` describes (see build_model; `options` go to the builder). With
        --load or --resume, the spec must be the saved one, and the saved weights are loaded."""
        self.spec = json.loads(json.dumps(spec))  # as the record will hold it: lists, not tuples
        if self.checkpoint is not None and self.spec != self.checkpoint.meta["model"]:
            try:  # an unusable saved model is the file's fault, not the flags'
                build_model(self.checkpoint.meta["model"])
            except ValueError as error:
                raise RunError(f"{self.source}: its model is unusable: {error}") from None
            raise RunError(f"the settings describe the model {self.spec}, which does not match the saved model's "
                           f"layers {self.checkpoint.meta['model']} in {self.source}: drop the flags that change the model")
        try:
            model = build_model(self.spec, **options)
        except ValueError as error:  # from the flags (a bad argument) or from a record that slipped through
            if self.checkpoint is None:
                raise RunError(str(error), status=2) from None
            raise RunError(f"{self.source}: its model is unusable: {error}") from None
        if self.checkpoint is not None:
            _load_weights(model, self.checkpoint.model_state, self.source)
        return model

    def restore(self, optimizer, rng):
        """With --resume: load the optimizer's state and the generator's state; return the epoch to
        start from (0 for a new run)."""
        if self.args.resume is None:
            return 0
        try:
            optimizer.load_state_dict(self.checkpoint.optimizer_state)
        except (KeyError, ValueError) as error:
            raise RunError(f"{self.source} does not fit the optimizer: {error}") from None
        rng.bit_generator.state = self.checkpoint.meta["rng_state"]
        return self.checkpoint.meta["epoch"]

    def draw_graph(self, loss, model):
        """--graph: draw the graph of one training step (the forward and backward pass of `loss`)."""
        from ..viz import INSTALL_HINT, draw_graph, render

        loss.name = "loss"
        loss.backward()
        written = render(draw_graph(loss, names=model), self.args.graph)
        model.zero_grad()
        print(f"Graph of one training step written to {written}")
        if written.suffix != self.args.graph.suffix:
            print(INSTALL_HINT)

    @contextlib.contextmanager
    def training(self):
        """Around the epochs: Ctrl-C asks to stop after the current step (see steps), and
        --detect-anomaly checks every op; an anomaly is reported with the epoch and step."""
        anomaly = detect_anomaly() if self.args.detect_anomaly else contextlib.nullcontext()
        with StopRequest() as self.stop, anomaly:
            try:
                yield self
            except AnomalyError as error:
                raise RunError(f"{self.position}: {error}") from None
            if self.stop.requested:  # Ctrl-C after the last step: the last epoch is kept, stop here
                self._stopped()
        self.position = "after training"

    def steps(self, batches, epoch, steps_per_epoch):
        """(step, batch) for each batch of epoch `epoch` (from 0), with a progress bar on a terminal;
        after each step, a Ctrl-C stops the run (exit 130) saying what the checkpoint holds."""
        from tqdm import tqdm

        quiet = self.args.quiet or not sys.stderr.isatty()  # in a log file, the epoch line is the progress
        bar = tqdm(batches, total=steps_per_epoch, desc=f"Epoch {epoch + 1}/{self.args.epochs}", leave=False,
                   disable=quiet, unit="step")
        self.epoch, self.steps_per_epoch = epoch, steps_per_epoch
        with bar:
            for self.step, batch in enumerate(bar):
                self.position = f"in epoch {epoch + 1}, step {self.step + 1}"
                yield self.step, batch
                if self.stop.requested:
                    bar.close()
                    self._stopped()
        self.position = f"while evaluating after epoch {epoch + 1}"

    def check_loss(self, value):
        """Return `value`, or stop the run (exit 1) if it is NaN or inf, with what to try."""
        self.step_losses.append(value)
        if not math.isfinite(value):
            raise RunError(f"the loss became {value} in epoch {self.epoch + 1}, step {self.step + 1}/"
                           f"{self.steps_per_epoch}: training diverged{self._kept('; ')}. {self._remedies()}")
        return value

    def end_epoch(self, epoch, model, optimizer, rng, **numbers):
        """After epoch `epoch` (counted from 1): stop if the weights are no longer finite (the
        epoch's last step can break them), else write the checkpoint (--save) and the epoch's
        `numbers` (--metrics)."""
        arrays = [*model.state_dict().values(), *optimizer.state_dict().values()]
        broken = [name for name, value in numbers.items() if _is_number(value) and not math.isfinite(value)]
        if broken or not all(np.isfinite(array).all() for array in arrays):
            what = f"the {broken[0].replace('_', ' ')} became {numbers[broken[0]]}" if broken else \
                "the weights became NaN or inf"
            raise RunError(f"{what} in epoch {epoch}: training diverged{self._kept('; ')}. {self._remedies()}")
        if self.args.save is not None:
            self.save(epoch, model, optimizer, rng)
        self.epoch_accuracies.append(numbers.get("test_accuracy"))
        if self.metrics is not None:
            numbers = {"epoch": epoch, **numbers}
            if self.args.metrics.suffix.lower() == ".csv":
                self.metrics.write(",".join(f"{numbers.get(key, '')}" for key in
                                            ("epoch", "train_loss", "test_loss", "test_accuracy", "lr", "seconds")) + "\n")
            else:
                self.metrics.write(json.dumps(numbers) + "\n")
            self.metrics.flush()
        if self.stop is not None and self.stop.requested:  # Ctrl-C while evaluating: the epoch is kept
            self._stopped()

    def save(self, epoch, model, optimizer, rng):
        """Write the checkpoint of --save: the arrays and the record (model, settings, epoch, RNG
        state, subsets). A failed write stops the run (exit 1); the previous checkpoint stays."""
        record = dict(model=self.spec, settings=self.settings, epoch=epoch, rng_state=rng.bit_generator.state,
                      train_subset=self.args.train_subset, test_subset=self.args.test_subset)
        try:
            save_checkpoint(self.args.save, model.state_dict(), optimizer.state_dict(), **record)
        except OSError as error:
            raise RunError(f"could not write {self.args.save} ({error.strerror or error}){self._kept('; ')}") from None
        self.saved_epoch = epoch

    def plot(self, images, labels, logits, class_names):
        """--plot: draw this run's losses and accuracies, the confusion matrix and the test images
        most wrong (`logits` are the model's outputs on `images`) to one figure."""
        if self.args.plot is None:
            return
        from .plots import plot_training

        written = plot_training(self.args.plot, step_losses=self.step_losses, epoch_accuracies=self.epoch_accuracies,
                                images=images, labels=labels, logits=logits, class_names=class_names)
        print(f"Figure of the run written to {written}")

    def finish(self, model, optimizer, rng):
        """After the run: with --save and 0 epochs, save the model as it is (loaded or new)."""
        if self.args.save is not None and self.args.epochs == 0:
            self.save(0, model, optimizer, rng)

    def _kept(self, prefix=""):
        save, resume = self.args.save, self.args.resume
        if save is not None and self.saved_epoch is not None:
            return f"{prefix}{save} keeps epoch {self.saved_epoch}"
        if resume is not None:
            return f"{prefix}{save} was not written; {resume} still holds epoch {self.checkpoint.meta['epoch']}"
        if save is not None:
            return f"{prefix}no good epoch yet, so {save} was not written"
        return f"{prefix}nothing was saved (use --save PATH to keep checkpoints)"

    def _remedies(self):
        return (f"Try a lower --lr (now {self.args.lr}), --clip-norm 1.0, or find the op where it starts "
                f"with --detect-anomaly.")

    def _stopped(self):
        save, resume = self.args.save, self.args.resume
        if save is not None and self.saved_epoch is not None:
            kept = f"{save} holds epoch {self.saved_epoch}; continue with --resume {save}"
        elif resume is not None:
            kept = f"{save} was not written; continue with --resume {resume}" + (f" --save {save}" if save != resume else "")
        elif save is not None:
            kept = f"no epoch finished, so {save} was not written"
        else:
            kept = self._kept()
        print(f"\nStopped by Ctrl-C {self.position}; {kept}.", file=sys.stderr)
        sys.exit(130)


def main(train, errors=()):
    """Run `train()` as a command: a RunError, CheckpointError, AnomalyError or one of `errors`
    ends in one line on stderr and exit status 1 (2 for a bad argument), Ctrl-C in 130. Pins
    malloc's thresholds first (pin_malloc_thresholds), so every step runs as in a warm process."""
    pin_malloc_thresholds()
    try:
        train()
    except KeyboardInterrupt:
        print("\nStopped by Ctrl-C.", file=sys.stderr)
        sys.exit(130)
    except RunError as error:
        prefix = f"{Path(sys.argv[0]).name}: " if error.status == 2 else ""
        print(f"{prefix}error: {error}", file=sys.stderr)
        sys.exit(error.status)
    except (CheckpointError, FileNotFoundError, AnomalyError, *errors) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
