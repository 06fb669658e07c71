"""The settings table and the command line: the one place that says what a valid value is.

Every flag of a training script and every field of a checkpoint's record is checked here, by
the same rules, before anything is built or trained; the modules after it (the model registry,
the session) use values this module let through. A bad flag exits with status 2 and one line;
a bad record field is one line naming the field (check_record).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from .datasets import DATASETS

# a model larger than this is refused before anything is allocated: 10^8 float32 parameters are
# 400 MB, and training holds three copies (weights, gradients, momentum)
MAX_PARAMETERS = 10**8
GRAPH_SUFFIXES = (".svg", ".png", ".pdf", ".html", ".dot")  # .html: the page that steps through backward()


class Setting(NamedTuple):
    """One training setting: its flag's type and help, and `check(value)`, which returns None or
    what is wrong ("must be at least 1")."""

    type: type
    help: str
    check: Callable
    choices: tuple | None = None


def _rule(is_valid, must):
    return lambda value: None if is_valid(value) else f"must be {must}"


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value):
    return math.isfinite(value) if abs(value) < 2**1024 else False  # a huge int does not fit a float


def _float32_positive(value):
    with np.errstate(over="ignore"):  # 1e39 becomes inf, 1e-50 becomes 0: neither would train
        return _finite(value) and 0 < np.float32(value) < np.inf


def _float32_finite(value):
    # checked in the dtype it is used in: float32(1e39) is inf, though 1e39 is a finite float64
    with np.errstate(over="ignore"):
        return _finite(value) and bool(np.isfinite(np.float32(value)))


# He's scale keeps each layer's output about as large as its input; a multiplier m makes a
# model of L layers output m^L times more, so past this float32 overflows within a few layers
# (1e30 already at the second) and nothing could train
MAX_INIT_SCALE = 1000.0


def _check_sizes(text):
    try:
        sizes = [int(size) for size in str(text).split(",")]
    except ValueError:
        return "takes sizes separated by commas, like 256 or 128,64"
    return None if min(sizes) >= 1 else "sizes must be at least 1"


def _choice(*names):
    return _rule(lambda value: value in names, " or ".join(names))


_POSITIVE = "a positive number float32 can hold (1e-45 to 3e38)"
SETTINGS = {
    "epochs": Setting(int, "passes over the training set", _rule(lambda v: v >= 0, "0 or more")),
    "batch_size": Setting(int, "examples per step", _rule(lambda v: v >= 1, "at least 1")),
    "lr": Setting(float, "peak learning rate", _rule(_float32_positive, _POSITIVE)),
    "momentum": Setting(float, "SGD momentum", _rule(lambda v: 0 <= v < 1, "in [0, 1)")),
    "optimizer": Setting(str, "the optimizer: sgd (with --momentum) or adam (torch's defaults but --lr)",
                         _choice("sgd", "adam"), choices=("sgd", "adam")),
    "hidden": Setting(str, "hidden layer sizes, e.g. 256 or 128,64", _check_sizes),
    "init_scale": Setting(float, "multiplier of the He initialisation",
                          _rule(lambda v: _float32_positive(v) and v <= MAX_INIT_SCALE,
                                f"a positive number up to {MAX_INIT_SCALE:g} (more overflows float32 in a few layers)")),
    "negative_slope": Setting(float, "leaky ReLU slope below zero",
                              _rule(_float32_finite, "a finite number in float32 (about -3.4e38 to 3.4e38)")),
    "clip_norm": Setting(float, "clip the gradients' joint L2 norm to this", _rule(_float32_positive, _POSITIVE)),
    "clip_value": Setting(float, "clip every gradient element to [-v, v]", _rule(_float32_positive, _POSITIVE)),
    "schedule": Setting(str, "learning-rate schedule", _choice("cosine", "constant"), choices=("cosine", "constant")),
    "seed": Setting(int, "seed for initialisation and shuffling", _rule(lambda v: v >= 0, "0 or more")),
    "dropout": Setting(float, "dropout probability before the last layer", _rule(lambda v: 0 <= v < 1, "in [0, 1)")),
    "padding": Setting(int, "zeros around the image before the first convolution", _rule(lambda v: 0 <= v <= 4, "0 to 4")),
    "channels": Setting(str, "output channels of the two convolutions, e.g. 16,32", _check_sizes),
    "augment": Setting(str, "training-time augmentation: none, flip (mirror a random half of each batch) or "
                       "shift (move each image by up to 2 pixels)", _choice("none", "flip", "shift"),
                       choices=("none", "flip", "shift")),
    "norm": Setting(str, "normalization in the CNN: none, or batch (BatchNorm2d after each convolution's pool)",
                    _choice("none", "batch"), choices=("none", "batch")),
    "dataset": Setting(str, "the dataset to train on", _rule(lambda v: v in DATASETS, f"one of {sorted(DATASETS)}"),
                       choices=tuple(sorted(DATASETS))),
}


def flag(name):
    """The command-line flag of a setting: "batch_size" -> "--batch-size"."""
    return "--" + name.replace("_", "-")


def _check_value(name, value, rule):
    is_type = {int: _is_int, float: _is_number}.get(rule.type, lambda v: isinstance(v, rule.type))
    if not is_type(value):
        return f"{name} must be of type {rule.type.__name__}, got {value!r}"
    problem = rule.check(value)
    return f"{name} {problem}, got {value!r}" if problem else None


def check_settings(settings, defaults, rules=SETTINGS):
    """What is wrong with `settings` (a dict), as one line naming the flag, or None. Every name of
    `defaults` must be there with the type of its rule; None only where the default is None."""
    if not isinstance(settings, dict):
        return f"settings must be a dict, got {type(settings).__name__}"
    for name, default in defaults.items():
        if name not in settings:
            return f"{flag(name)} is missing"
        if not (settings[name] is None and default is None):
            problem = _check_value(flag(name), settings[name], rules[name])
            if problem:
                return problem
    return None


# ----- the command line -----------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument gets one line (the reason), not the whole usage text."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(defaults, presets=None, argv=None, description=None, rules=SETTINGS):
    """Parse a training script's command line: one flag per setting of `defaults` (described by
    `rules`, SETTINGS by default), `--preset NAME` for the named dicts of `presets`, and the run's
    flags (--save, --resume, --load, --metrics, ...; see --help). A bad argument exits with status
    2 and one line.

    The Namespace returned holds each flag as given (None where left out), and: `defaults`,
    `rules`, `given` (the settings given as flags), `preset_settings`, `settings` (a new run's
    settings: each from its flag, else the preset, else `defaults`; Session resolves them again
    with the checkpoint of --load/--resume), `graph_only` (--graph without --epochs or --resume)."""
    presets = presets or {}
    parser = _Parser(description=description, epilog="Flags left out take their value from --preset, "
                     "else from the checkpoint of --load/--resume, else from the defaults shown.")
    for name, default in defaults.items():
        rule = rules[name]
        parser.add_argument(flag(name), type=rule.type, choices=rule.choices, help=f"{rule.help} (default {default})")
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
    add("--graph", type=Path, metavar="PATH", help="draw one training step's graph to PATH (.svg, .png, .pdf or .dot; "
        ".html: a page that steps through its backward pass); alone it only draws, with --epochs N it draws, then trains")
    add("--detect-anomaly", action="store_true", help="check every op for NaN/Inf (slower)")
    add("--quiet", action="store_true", help="no progress bars (there are none when stderr is not a terminal)")
    args = parser.parse_args(argv)

    args.defaults, args.rules = dict(defaults), rules
    args.given = {name for name in defaults if getattr(args, name) is not None}
    args.preset_settings = presets.get(args.preset, {})
    if args.resume is not None:
        subsets = {name for name in ("train_subset", "test_subset") if getattr(args, name) is not None}
        extra = sorted(map(flag, args.given | subsets))
        extra += ["--load"] * (args.load is not None) + ["--preset"] * (args.preset is not None)
        if extra:
            parser.error(f"--resume continues the saved run with its own settings and subsets; drop {', '.join(extra)}")
    args.settings = {**defaults, **args.preset_settings, **{name: getattr(args, name) for name in args.given}}
    problem = check_settings(args.settings, defaults, rules)
    if problem:
        parser.error(problem)
    for name in ("train_subset", "test_subset"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"{flag(name)} must be at least 1, got {getattr(args, name)}")
    if args.data_dir is not None and not args.data_dir.is_dir():
        parser.error(f"--data-dir {args.data_dir} is not a folder")
    if args.graph is not None and args.graph.suffix.lower() not in GRAPH_SUFFIXES:
        parser.error(f"--graph {args.graph}: end the file name with .svg, .png, .pdf, .html or .dot")
    if args.plot is not None:
        from .plots import MissingMatplotlibError, check_plot_path

        try:  # known now, not after training
            check_plot_path(args.plot)
        except (ValueError, MissingMatplotlibError) as error:
            parser.error(f"--plot {error}")
    args.graph_only = args.graph is not None and "epochs" not in args.given and args.resume is None
    return args


# ----- a checkpoint's record ------------------------------------------------------------------
def _sizes_rule(count=None, most=None):
    def check(sizes):
        if not (isinstance(sizes, list) and (len(sizes) >= 2 if count is None else len(sizes) == count)
                and all(_is_int(size) and 1 <= size <= (most or size) for size in sizes)):
            how_many = "2 or more" if count is None else str(count)
            return f"must be a list of {how_many} whole numbers from 1{f' to {most}' if most else ''}"
        return None
    return check


# a model spec's fields, per kind: its builder's arguments (lab/models.py), with the flags' rules
MODEL_FIELDS = {
    "mlp": {"layer_sizes": Setting(list, "", _sizes_rule()), "negative_slope": SETTINGS["negative_slope"]},
    "lenet": {"dropout": SETTINGS["dropout"], "padding": SETTINGS["padding"],
              "channels": Setting(list, "", _sizes_rule(count=2, most=1024)),
              "batch_norm": Setting(bool, "", _rule(lambda v: isinstance(v, bool), "True or False"))},
}
MODEL_DEFAULTS = {"mlp": {"negative_slope": 0.01},
                  "lenet": {"dropout": 0.0, "padding": 0, "channels": [16, 32], "batch_norm": False}}


def parameter_count(spec):
    """How many parameters the (checked) model spec asks for: known before building."""
    if spec["kind"] == "mlp":
        sizes = spec["layer_sizes"]
        return sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(sizes, sizes[1:]))
    first, second = spec.get("channels", MODEL_DEFAULTS["lenet"]["channels"])
    side = ((28 + 2 * spec.get("padding", 0) - 4) // 2 - 4) // 2  # as nn.lenet: after both conv + pool stages
    # with batch norm the convolutions drop their biases, and a weight and a bias per channel come in
    batch_norm = first + second if spec.get("batch_norm") else 0
    return first * (25 + 1) + second * (25 * first + 1) + 10 * (second * side * side + 1) + batch_norm


def check_model_state(spec, model_state):
    """What is wrong with a checked model spec beside the arrays saved with it, or None. A spec
    asking for more parameters than the arrays hold is refused before any model is built: a
    record can ask for 10^8 parameters in a file of a few KB. (Exact shapes are then checked by
    load_state_dict, on a model no larger than the file.)"""
    saved = sum(int(np.size(array)) for array in model_state.values())
    wanted = parameter_count(spec)
    if wanted > saved:
        return (f"its record's model needs {wanted:,} parameters but its arrays hold {saved:,} numbers: "
                "the record does not describe the arrays saved with it (the file was made by hand or modified)")
    return None


def check_model(spec):
    """What is wrong with a model spec ({"kind": "mlp", "layer_sizes": [...], ...}), or None: its
    kind, its fields and their values, and its size (at most MAX_PARAMETERS)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("kind"), str) or spec["kind"] not in MODEL_FIELDS:
        kind = spec.get("kind") if isinstance(spec, dict) else spec
        return f"the model kind {kind!r} is not one of {sorted(MODEL_FIELDS)}"
    fields = MODEL_FIELDS[spec["kind"]]
    unknown = sorted(set(spec) - {"kind", *fields})
    missing = sorted(set(fields) - set(spec) - set(MODEL_DEFAULTS[spec["kind"]]))
    if unknown or missing:
        return f"the {spec['kind']} model takes the fields {sorted(fields)}; got {sorted(set(spec) - {'kind'})}"
    for name, rule in fields.items():
        problem = _check_value(name, spec[name], rule) if name in spec else None
        if problem:
            return problem
    parameters = parameter_count(spec)
    if parameters > MAX_PARAMETERS:
        return (f"the model would have {parameters:,} parameters ({4 * parameters // 2**30:,} GiB of float32); "
                f"the limit is {MAX_PARAMETERS:,}: choose smaller layers")
    return None


def _check_scheduler(state):
    keys = {"base_lrs", "last_epoch", "T_max", "eta_min"}
    if not (isinstance(state, dict) and set(state) == keys and _is_int(state["T_max"]) and state["T_max"] >= 0
            and _is_int(state["last_epoch"]) and 0 <= state["last_epoch"] <= state["T_max"]
            and _is_number(state["eta_min"]) and _finite(state["eta_min"]) and isinstance(state["base_lrs"], list)
            and len(state["base_lrs"]) == 1 and _is_number(state["base_lrs"][0]) and _float32_positive(state["base_lrs"][0])):
        return (f"an invalid scheduler {state!r}: the state_dict of optim.CosineAnnealingLR "
                "(base_lrs, last_epoch from 0 to T_max, eta_min) expected")
    return None


RESUME_FIELDS = ("model", "settings", "epoch", "rng_state", "scheduler")


def check_record(meta, defaults, rules=SETTINGS, resuming=False, model_state=None):
    """What is wrong with a checkpoint's record for a run of `defaults` (to --resume it when
    `resuming`, else to --load it), as one line, or None. Checks every field the run will use:
    model (against the saved `model_state` too, when given), settings, epoch, subsets, rng_state
    and scheduler."""
    missing = [key for key in (RESUME_FIELDS if resuming else ("model",)) if key not in meta]
    if missing:
        return f"is not a checkpoint of this script: its record lacks {', '.join(missing)}"
    problem = check_model(meta["model"]) or (check_model_state(meta["model"], model_state) if model_state else None)
    if problem:
        return f"holds an unusable model: {problem}"
    if "settings" in meta:
        problem = check_settings(meta["settings"], defaults, rules)
        if problem:
            return f"holds invalid settings: {problem}"
    if "epoch" in meta:
        epochs = meta.get("settings", {}).get("epochs", math.inf)
        if not (_is_int(meta["epoch"]) and 0 <= meta["epoch"] <= epochs):
            return f"holds an invalid epoch {meta['epoch']!r}: a whole number from 0 to {epochs} expected"
    for name in ("train_subset", "test_subset"):
        value = meta.get(name)
        if value is not None and not (_is_int(value) and value >= 1):
            return f"holds an invalid {name} {value!r}: a whole number of at least 1 (or null) expected"
    if "rng_state" in meta:
        try:  # a state the generator refuses, tried on a scratch generator
            np.random.default_rng().bit_generator.state = meta["rng_state"]
        except (TypeError, ValueError, KeyError, OverflowError):
            return "holds an invalid rng_state: not the state of numpy's default generator (PCG64)"
    if resuming and (meta["scheduler"] is not None or meta["settings"].get("schedule") == "cosine"):
        problem = _check_scheduler(meta["scheduler"])
        if problem:
            return f"holds {problem}"
    return None
