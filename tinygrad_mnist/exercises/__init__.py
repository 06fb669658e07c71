"""The exercise track's checker: does the learner's answer to exercise <name> work?

    python -m tinygrad_mnist.exercises list
    python -m tinygrad_mnist.exercises check elu my_elu.py

Each exercise of docs/exercises.md has a module here with `NAMES` (what the learner's file must
define), `TITLE`, and `check(module, report, train=True)`; it may also define `probes(rng)`, fresh
cases for its ops (probes.py), or `probe(module, rng)` and `verify(results, rng)` for anything else
the parent should re-check itself (rmsprop.py). A check imports the learner's file,
compares it with a reference, gradchecks it and, where it makes sense, trains with it; at the
first problem it stops with a message saying what is wrong, and, for the usual mistakes, a named
diagnosis saying what to do. The learner's file runs in a child process, and this process has
the last word (process.py says how).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from .common import CheckFailed, UsageError
from .process import TIMEOUT, run_check

# in the order of docs/exercises.md, easy to hard, numbered from 0 (backward, the walk itself)
EXERCISES = (
    "backward", "elu", "logsumexp", "where", "rrelu", "rmsprop", "label_smoothing", "batchnorm", "init_clip", "maxpool2d",
)


def exercise(name):
    """The checker module of exercise `name`."""
    if name not in EXERCISES:
        raise UsageError(f"no exercise named {name!r}; the exercises are: {', '.join(EXERCISES)}")
    return importlib.import_module(f"{__name__}.{name}")


def check(name, path, train=True, out=None, timeout=TIMEOUT):
    """Check the learner's file `path` for exercise `name`; print the steps; True if it passes.

    The file runs in a child process; a step that takes longer than `timeout` seconds fails."""
    out = out or sys.stdout
    checker = exercise(name)
    if not Path(path).is_file():
        raise UsageError(f"no file {path}; copy the skeleton from examples/exercises/{name}.py and give your copy's path")
    if not timeout > 0:
        raise UsageError(f"the timeout must be a positive number of seconds; got {timeout}")
    print(f"checking {path} as exercise {EXERCISES.index(name)}, {name}: {checker.TITLE}", file=out, flush=True)
    return run_check(name, path, train, out, timeout)


__all__ = ["EXERCISES", "CheckFailed", "UsageError", "check", "exercise"]
