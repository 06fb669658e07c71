"""python -m tinygrad_mnist.exercises list | check <name> <file.py> [--no-train]

Exit status: 0 the file passes, 1 it does not (yet), 2 the command was used wrongly, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys

from . import EXERCISES, check, exercise
from .common import UsageError
from .process import TIMEOUT


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument gets one line and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv=None):
    parser = ArgumentParser(prog="python -m tinygrad_mnist.exercises", description="Check your answer to an exercise of docs/exercises.md.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the exercises, easy to hard")
    checking = commands.add_parser("check", help="check your file for one exercise")
    checking.add_argument("name", help="the exercise, as `list` shows it")
    checking.add_argument("path", help="your file, a copy of examples/exercises/<name>.py")
    checking.add_argument("--no-train", action="store_true", help="skip the short training run (no MNIST needed)")
    checking.add_argument("--timeout", type=float, default=TIMEOUT, metavar="SECONDS",
                          help=f"the longest a step may take before it fails (default {TIMEOUT})")
    args = parser.parse_args(argv)

    if args.command == "list":
        for number, name in enumerate(EXERCISES):
            print(f"{number}. {name:16} {exercise(name).TITLE}")
        return 0
    try:
        passed = check(args.name, args.path, train=not args.no_train, timeout=args.timeout)
    except UsageError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the child, in its own process group, is killed on the way out
        print("Stopped by Ctrl-C.", file=sys.stderr)
        return 130
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
