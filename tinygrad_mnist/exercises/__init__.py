"""The exercise track's checker: does the learner's answer to exercise <name> work?

    python -m tinygrad_mnist.exercises list
    python -m tinygrad_mnist.exercises check elu my_elu.py

Each exercise of docs/exercises.md has a module here with `NAMES` (what the learner's file must
define), `TITLE`, and `check(module, report, train=True)`. A check imports the learner's file,
compares it with a reference, gradchecks it and, where it makes sense, trains with it; at the
first problem it stops with a message saying what is wrong, and, for the usual mistakes, a named
diagnosis saying what to do.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from .common import CheckFailed, Report, UsageError, load_file

# in the order of docs/exercises.md, easy to hard, numbered from 0 (backward, the walk itself)
EXERCISES = (
    "backward", "elu", "logsumexp", "where", "rrelu", "rmsprop", "label_smoothing", "batchnorm", "init_clip", "maxpool2d",
)


def exercise(name):
    """The checker module of exercise `name`."""
    if name not in EXERCISES:
        raise UsageError(f"no exercise named {name!r}; the exercises are: {', '.join(EXERCISES)}")
    return importlib.import_module(f"{__name__}.{name}")


def check(name, path, train=True, out=None):
    """Check the learner's file `path` for exercise `name`; print the steps; True if it passes."""
    out = out or sys.stdout
    checker = exercise(name)
    if not Path(path).is_file():
        raise UsageError(f"no file {path}; copy the skeleton from examples/exercises/{name}.py and give your copy's path")
    report = Report(out)
    print(f"checking {path} as exercise {EXERCISES.index(name)}, {name}: {checker.TITLE}", file=out)
    try:
        module = load_file(path, checker.NAMES)
        checker.check(module, report, train=train)
    except CheckFailed as failure:
        print(f"  FAIL  {failure}".replace("\n", "\n        "), file=out)
        print(f"not yet: {report.passed} step(s) passed, then the one above failed", file=out)
        return False
    print(f"passed: all {report.passed} steps", file=out)
    return True


__all__ = ["EXERCISES", "CheckFailed", "UsageError", "check", "exercise"]
