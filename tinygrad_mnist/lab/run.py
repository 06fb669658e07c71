"""One training run around a script's own loop: checkpoints, Ctrl-C, divergence, metrics.

A training script keeps its loop (forward, loss, zero_grad, backward, step) and calls this module
a line at a time, so the loop stays readable and every script fails the same clear way:

    args = parse_args(DEFAULTS, PRESETS)          # lab/settings.py: a bad flag exits with status 2
    session = run.Session(args)                   # reads --load/--resume, checks --save/--metrics
    settings = session.settings                   # the settings this run uses (never args itself)
    model = session.model(spec, rng=rng)          # built through lab/models.py; the saved weights if any
    first_epoch = session.start(model, optimizer, scheduler, rng)  # --resume: their saved states
    with session.training():                      # Ctrl-C stops after a step; --detect-anomaly
        for epoch in range(first_epoch, settings.epochs):
            for step, batch in session.steps(batches, epoch, steps_per_epoch):
                ...                               # forward and loss, then
                session.check_loss(loss.item())   # a non-finite loss stops with what to try
                ...                               # zero_grad, backward, step, scheduler.step
            session.end_epoch(epoch + 1, **numbers)  # checks the weights, saves, logs
    run.main(train, errors=(...))                 # one line on stderr and an exit status

Exit statuses: 0 done, 1 a failure (an unusable file, divergence, a write that failed), 2 a bad
argument (a flag, an output path: lab/command.py's guard checks them all), 130 Ctrl-C, 143 SIGTERM. A checkpoint records the model spec, the
settings, the epoch, the shuffling generator's state, the schedule's state and the subsets; the
settings table (lab/settings.py) checks every field before it is used, and no checkpoint is
written with weights that are not finite.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .. import functional as F
from ..modes import AnomalyError, detect_anomaly, no_grad
from ..tensor import Tensor
from ..atomic import write_atomically
from . import command
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .command import SIGNAL_NAMES, STOP, OutputError, Stopped, check_outputs, same_file
from .data import normalize
from .datasets import DATASETS, dataset_files
from .models import build_model, load_weights
from .settings import check_record, flag

METRICS_COLUMNS = ("epoch", "train_loss", "test_loss", "test_accuracy", "lr", "seconds")
# --graph draws a graph of more tensors than this top to bottom: the CNN's (15) reads at page width that way,
# where left to right it was a strip 4,500 pixels wide; the MLP's (8) stays left to right
LONG_GRAPH = 12


class RunError(Exception):
    """A run cannot go on. The message is one line: what went wrong and what to do. `status` is
    the exit status run.main uses: 2 for a bad argument, 1 for anything else."""

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


def evaluate(model, images, labels, input_shape, chunk=250):  # LeNet: 15,100 images/s in chunks of 250, 11,200 in 1000s
    """(number correct, mean cross-entropy, logits) of `model` on uint8 `images`, scaled as in
    training and reshaped to `input_shape` ((-1, 784) for an MLP, (-1, 1, 28, 28) for a CNN), in
    chunks of `chunk` images, in eval mode (no dropout) and without recording a graph."""
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


class Session:
    """One run of a training script. Reads the checkpoint of --load/--resume (its record checked
    by the settings table), resolves the settings (the saved ones, then --preset, then the flags
    given; with --resume, the saved ones only) into `settings`, checks the --save and --metrics
    targets before any training, and prints the settings it uses on one line. `args` is read,
    never changed."""

    def __init__(self, args):
        self.args, self.spec, self.position, self.stop = args, None, "before training", STOP
        STOP.requested = None  # no signal is ever pending outside a run's epochs
        self.source = args.resume or args.load
        self.save_path = args.save or args.resume  # --resume saves where it read unless --save says otherwise
        # what --graph writes: without graphviz's dot, the DOT source beside the image asked for
        self.graph_path = args.graph if args.graph is None or args.graph.suffix.lower() == ".dot" or _has_dot() \
            else args.graph.with_suffix(".dot")
        own = args.resume is not None and same_file(self.save_path, args.resume)  # --resume replaces its own file
        save_flag = "--save" if args.save is not None else "--resume"
        try:  # every path this run writes, before any work (lab/command.py)
            self.claim = check_outputs({save_flag: self.save_path, "--metrics": args.metrics, "--plot": args.plot,
                                        "--graph": self.graph_path},
                                       {"--load": args.load, "--resume": None if own else args.resume,
                                        "the data": [path for name in DATASETS for path in dataset_files(name, args.data_dir)]},
                                       overwrite=args.overwrite,  # --resume continues its file and its log
                                       continued={save_flag if own else None, "--metrics" if args.resume else None})
        except OutputError as error:
            raise RunError(str(error), status=2) from None
        self.checkpoint = self._read(self.source) if self.source else None
        self.settings = self._resolve()
        self.saved_epoch = self.checkpoint.meta["epoch"] if own else None  # the epoch the --save file holds
        self.step_losses, self.epoch_accuracies = [], []  # this run's history, for --plot
        self.metrics = self._metrics_log(args.metrics) if args.metrics else None  # its lines, written each epoch
        shown = " ".join(f"{name}={getattr(self.settings, name)}" for name in args.defaults)
        subsets = "".join(f" {name}={getattr(self.settings, name)}" for name in ("train_subset", "test_subset")
                          if getattr(self.settings, name))
        origin = f" (from {self.source}, epoch {self.checkpoint.meta.get('epoch', '?')})" if self.source else ""
        print(f"Settings: {shown}{subsets}{origin}")

    def _read(self, path):
        checkpoint = load_checkpoint(path)
        problem = check_record(checkpoint.meta, self.args.defaults, self.args.rules, resuming=self.args.resume is not None,
                               model_state=checkpoint.model_state)
        if problem:
            raise RunError(f"{path} {problem}")
        return checkpoint

    def _resolve(self):
        args, subsets = self.args, {"train_subset": self.args.train_subset, "test_subset": self.args.test_subset}
        if self.checkpoint is None:
            return SimpleNamespace(**args.settings, **subsets)
        meta = self.checkpoint.meta
        saved = {name: value for name, value in meta.get("settings", {}).items() if name in args.defaults}
        if args.resume is not None:
            return SimpleNamespace(**saved, train_subset=meta.get("train_subset"), test_subset=meta.get("test_subset"))
        # --load: the saved settings, then the preset, then the flags; evaluate only unless --epochs
        given = {name: getattr(args, name) for name in args.given}
        return SimpleNamespace(**{**args.defaults, **saved, **args.preset_settings, **given,
                                  "epochs": given.get("epochs", 0)}, **subsets)

    def _metrics_log(self, path):
        """The lines the metrics file starts with: the CSV header, and with --resume the existing
        log's records up to the checkpoint's epoch (the log then reads as the unbroken run's)."""
        header = [",".join(METRICS_COLUMNS) + "\n"] if path.suffix.lower() == ".csv" else []
        if self.args.resume is None or not path.exists():
            return header
        try:
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            if header and lines[:1] != header:
                raise ValueError("no header")
            epochs = [int(line.split(",")[0]) if header else json.loads(line)["epoch"] for line in lines[len(header):]]
        except (OSError, ValueError, TypeError, KeyError, IndexError, UnicodeDecodeError):
            raise RunError(f"--metrics {path}: it exists and is not a metrics log this script wrote; choose another "
                           "path", status=2) from None
        return header + [line for line, epoch in zip(lines[len(header):], epochs) if epoch <= self.checkpoint.meta["epoch"]]

    def model(self, spec, **options):
        """Build the model `spec` describes (lab/models.py: build_model; `options` go to the
        builder). With --load or --resume, the spec must be the saved one, and the saved weights
        are loaded."""
        self.spec = json.loads(json.dumps(spec))  # as the record will hold it: lists, not tuples
        if self.checkpoint is not None and self.spec != self.checkpoint.meta["model"]:
            raise RunError(f"the settings describe the model {self.spec}, which does not match the saved model's "
                           f"layers {self.checkpoint.meta['model']} in {self.source}: drop the flags that change the model")
        try:
            model = build_model(self.spec, **options)
        except ValueError as error:  # the flags describe a model the registry refuses: a bad argument
            raise RunError(str(error), status=2) from None
        if self.checkpoint is not None:
            load_weights(model, self.checkpoint.model_state, self.source)
        return model

    def start(self, model, optimizer, scheduler, rng):
        """Keep the run's model, optimizer, learning-rate scheduler (or None) and generator; with
        --resume, load the saved states of the last three. Returns the epoch to start from (0 for
        a new run)."""
        self.trained = SimpleNamespace(model=model, optimizer=optimizer, scheduler=scheduler, rng=rng)
        if self.args.resume is None:
            return 0
        meta = self.checkpoint.meta
        try:
            optimizer.load_state_dict(self.checkpoint.optimizer_state)
        except (KeyError, ValueError) as error:
            raise RunError(f"{self.source} does not fit the optimizer: {error}") from None
        if scheduler is not None:
            scheduler.load_state_dict(meta["scheduler"])
        rng.bit_generator.state = meta["rng_state"]
        return meta["epoch"]

    def draw_graph(self, loss):
        """--graph: draw the graph of one training step (the forward and backward pass of `loss`);
        a long graph (the CNN's) top to bottom, so that it reads at page width."""
        from ..viz import INSTALL_HINT, draw_graph, render

        model = self.trained.model
        loss.name = "loss"
        loss.backward(retain_graph=True)  # the .html page replays each op's backward: keep what they saved
        rankdir = "TB" if len(loss.graph_order()) > LONG_GRAPH else "LR"
        try:
            written = render(draw_graph(loss, names=model, rankdir=rankdir), self.args.graph)
        except OSError as error:
            raise RunError(f"could not write --graph {self.graph_path} ({command.os_reason(error)})") from None
        model.zero_grad()
        print(f"Graph of one training step written to {written}")
        if written.suffix != self.args.graph.suffix:
            print(INSTALL_HINT)

    @contextlib.contextmanager
    def training(self):
        """Around the epochs: Ctrl-C asks to stop after the current step (see steps), and
        --detect-anomaly checks every op; an anomaly is reported with the epoch and step."""
        anomaly = detect_anomaly() if self.args.detect_anomaly else contextlib.nullcontext()
        self.stop.requested, self.stop.stopping, self.stop.deferring = None, False, True
        try:
            with anomaly:
                yield self
        except AnomalyError as error:
            raise RunError(f"{self.position}: {error}") from None
        except Stopped as stop:  # a second signal stopped at once: say what the files hold
            if stop.message is None:
                raise Stopped(stop.signum, self._stop_message(stop.signum)) from None
            raise
        finally:
            self.stop.deferring = False
        if self.stop.requested:  # a signal after the last step: the last epoch is kept, stop here
            self._stopped()
        self.position = "after training"

    def steps(self, batches, epoch, steps_per_epoch):
        """(step, batch) for each batch of epoch `epoch` (from 0), with a progress bar on a terminal;
        after each step, a Ctrl-C stops the run (exit 130) saying what the checkpoint holds."""
        from tqdm import tqdm

        quiet = self.args.quiet or not sys.stderr.isatty()  # in a log file, the epoch line is the progress
        bar = tqdm(batches, total=steps_per_epoch, desc=f"Epoch {epoch + 1}/{self.settings.epochs}", leave=False,
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

    def end_epoch(self, epoch, **numbers):
        """After epoch `epoch` (counted from 1): stop if the weights are no longer finite (the
        epoch's last step can break them), else write the checkpoint (--save) and the epoch's
        `numbers` (--metrics)."""
        arrays = [*self.trained.model.state_dict().values(), *self.trained.optimizer.state_dict().values()]
        broken = [name for name, value in numbers.items() if isinstance(value, float) and not math.isfinite(value)]
        if broken or not all(np.isfinite(array).all() for array in arrays):
            what = f"the {broken[0].replace('_', ' ')} became {numbers[broken[0]]}" if broken else \
                "the weights became NaN or inf"
            raise RunError(f"{what} in epoch {epoch}: training diverged{self._kept('; ')}. {self._remedies()}")
        if self.save_path is not None:
            self.save(epoch)
        self.epoch_accuracies.append(numbers.get("test_accuracy"))
        if self.metrics is not None:
            numbers = {"epoch": epoch, **numbers}
            csv = self.args.metrics.suffix.lower() == ".csv"
            self.metrics.append(",".join(f"{numbers.get(key, '')}" for key in METRICS_COLUMNS) + "\n" if csv
                                else json.dumps(numbers) + "\n")
            self._write(self.args.metrics, "--metrics", lambda file: file.write("".join(self.metrics).encode()),
                        "; it keeps its previous version")
        if self.stop.requested:  # a signal while evaluating: the epoch is kept
            self._stopped()

    def _write(self, path, flag, write, what_it_keeps=""):
        """Write an output atomically; a failure stops the run (exit 1) saying what each file keeps."""
        try:
            write_atomically(path, write)
        except OSError as error:
            raise RunError(f"could not write {flag} {path} ({command.os_reason(error)}){what_it_keeps}"
                           f"{self._kept('; ')}") from None

    def save(self, epoch):
        """Write the checkpoint of --save: the arrays and the record (model, settings, epoch, RNG
        state, schedule, subsets). A failed write stops the run (exit 1); the previous one stays."""
        model, optimizer, scheduler, rng = vars(self.trained).values()
        record = dict(model=self.spec, settings={name: getattr(self.settings, name) for name in self.args.defaults},
                      epoch=epoch, rng_state=rng.bit_generator.state,
                      scheduler=scheduler.state_dict() if scheduler is not None else None,
                      train_subset=self.settings.train_subset, test_subset=self.settings.test_subset)
        try:
            save_checkpoint(self.save_path, model.state_dict(), optimizer.state_dict(), **record)
        except OSError as error:
            raise RunError(f"could not write {self.save_path} ({error.strerror or error}){self._kept('; ')}") from None
        self.saved_epoch = epoch

    def plot(self, images, labels, logits, class_names):
        """--plot: draw this run's losses and accuracies, the confusion matrix and the test images
        most wrong (`logits` are the model's outputs on `images`) to one figure."""
        if self.args.plot is None:
            return
        from .plots import plot_training

        try:
            written = plot_training(self.args.plot, step_losses=self.step_losses, epoch_accuracies=self.epoch_accuracies,
                                    images=images, labels=labels, logits=logits, class_names=class_names)
        except OSError as error:
            raise RunError(f"could not write --plot {self.args.plot} ({command.os_reason(error)}){self._kept('; ')}") from None
        print(f"Figure of the run written to {written}")

    def finish(self, logits=None):
        """After the run: with --save and 0 epochs, save the model as it is (loaded or new), unless
        its `logits` (its outputs on the test images) or its weights are not finite (exit 1)."""
        if self.save_path is not None and self.settings.epochs == 0:
            if logits is not None and not np.isfinite(logits).all():
                settings = {name: getattr(self.settings, name) for name in ("init_scale", "negative_slope")
                            if hasattr(self.settings, name)}
                hint = "; check " + " and ".join(f"{flag(name)} (now {value})" for name, value in settings.items()) \
                    if settings else ""
                raise RunError(f"the model's outputs on the test images are not finite (NaN or inf), so "
                               f"{self.save_path} was not written: a model that outputs NaN is never saved{hint}")
            self.save(0)

    def _kept(self, prefix=""):
        save, resume = self.save_path, self.args.resume
        if save is not None and self.saved_epoch is not None:
            return f"{prefix}{save} keeps epoch {self.saved_epoch}"
        if resume is not None:
            return f"{prefix}{save} was not written; {resume} still holds epoch {self.checkpoint.meta['epoch']}"
        if save is not None:
            return f"{prefix}no good epoch yet, so {save} was not written"
        return f"{prefix}nothing was saved (use --save PATH to keep checkpoints)"

    def _remedies(self):
        return (f"Try a lower --lr (now {self.settings.lr}), --clip-norm 1.0, or find the op where it starts "
                f"with --detect-anomaly.")

    def _stopped(self):
        """Stop for the signal asked for after a step: raise Stopped with the line saying what is kept."""
        self.stop.stopping = True
        raise Stopped(self.stop.requested, self._stop_message(self.stop.requested))

    def _stop_message(self, signum):
        save, resume = self.save_path, self.args.resume
        if save is not None and self.saved_epoch is not None:
            kept = f"{save} holds epoch {self.saved_epoch}; continue with --resume {save}"
        elif resume is not None:
            kept = f"{save} was not written; continue with --resume {resume}" + (f" --save {save}" if save != resume else "")
        elif save is not None:
            kept = f"no epoch finished, so {save} was not written"
        else:
            kept = self._kept()
        return f"Stopped by {SIGNAL_NAMES[signum]} {self.position}; {kept}."


def _has_dot():
    from ..viz import has_dot

    return has_dot()


def main(train, errors=()):
    """Run `train()` as a command (lab/command.py: main): a RunError, CheckpointError, AnomalyError
    or one of `errors` ends in one line on stderr and exit status 1 (2 for a bad argument),
    Ctrl-C in 130, SIGTERM in 143."""
    command.main(lambda: _train(train, errors))


def _train(train, errors):
    try:
        train()
    except RunError as error:
        prefix = f"{Path(sys.argv[0]).name}: " if error.status == 2 else ""
        print(f"{prefix}error: {error}", file=sys.stderr)
        sys.exit(error.status)
    except (CheckpointError, FileNotFoundError, AnomalyError, *errors) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
