"""The checker decides in its own process: the learner's file runs in a child process.

The parent (`run_check`, what `check()` calls) starts a Python that runs `child_main`, hands it
a secret and a seed for this run on its stdin, and reads its messages, one JSON line each, from a
private copy of the child's stdout made before the learner's file is imported; what the learner's
code prints goes to the child's stderr, which the parent passes on, marked "|". The child imports
the file, runs the exercise's check (each step an "ok" message), then the exercise's probes: the
learner's code on fresh inputs drawn from the seed, whose raw results it sends. The parent decides:

- a pass needs a "pass" message carrying the secret, with the probes' results, and the parent's
  own check of those results against its own reference (`verify`): a file that exits, patches the
  checker's modules or numpy in the child, prints "passed", or kills its process does not pass;
- no message for `timeout` seconds (a loop or a sleep in forward or backward) is a failure,
  "timed out after N s"; after its verdict the child ends at once (os._exit: no atexit handler or
  thread of the learner's runs on), and the parent kills its process group, whatever it started.

It is not a sandbox: the learner's code runs with the user's rights, and code written to cheat
(reading the secret from the child's memory, reproducing the checker's reference) can still forge a
pass. The guarantee is that no mistake, and no exit code, stream, thread or patch, becomes one.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from .common import CheckFailed, describe, load_file
from .probes import run_op_probes, verify_op_probes

CHILD = "import sys; from tinygrad_mnist.exercises.process import child_main; child_main(*sys.argv[1:3], sys.argv[3] == 'train')"
TIMEOUT = 120  # seconds a step may take: a training run takes a few on an idle machine, 35 on a loaded one
MAX_OUTPUT_LINES = 200  # of the learner's own output passed on: a print in a loop cannot flood the report


# ----- the parent ----------------------------------------------------------------------------------
def run_check(name, path, train, out, timeout=TIMEOUT):
    """Check `path` as exercise `name` in a child process; print its steps on `out`; True if it passes."""
    checker = importlib.import_module(f"{__package__}.{name}")
    secret, seed = secrets.token_hex(16), secrets.randbits(63)
    package_root = str(Path(__file__).resolve().parent.parent.parent)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, name, str(path), "train" if train else "no-train"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment,
        start_new_session=os.name == "posix",  # its own process group: killed as one, and no Ctrl-C of ours
    )
    lines = queue.Queue()
    for stream, kind in ((child.stdout, "message"), (child.stderr, "output")):
        threading.Thread(target=_read_lines, args=(stream, kind, lines), daemon=True).start()
    passed, printed = 0, 0
    try:
        child.stdin.write(json.dumps({"secret": secret, "seed": seed}).encode() + b"\n")
        child.stdin.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                kind, line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise CheckFailed(
                    f"timed out after {timeout:g} s: no step finished (a loop or a sleep in your code, "
                    f"or a step much slower than it should be)"
                ) from None
            if kind == "output":
                if line is not None:
                    printed += 1
                    if printed <= MAX_OUTPUT_LINES:
                        print(f"  |     {line}", file=out)
                    elif printed == MAX_OUTPUT_LINES + 1:
                        print("  |     ... (the rest of your file's output is left out)", file=out)
                continue
            if line is None:
                try:  # the channel closed: the child has ended, or is ending
                    status = child.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    status = "none: it still runs"
                raise CheckFailed(
                    f"the process running your file ended (exit status {status}) before the checks did: "
                    f"does your file call sys.exit, os._exit or os.kill, or close the checker's streams?"
                )
            message = _parse(line, secret)
            if message["kind"] == "ok":
                passed += 1
                deadline = time.monotonic() + timeout
                print(f"  ok    {message['text']}", file=out, flush=True)
            elif message["kind"] == "note":
                deadline = time.monotonic() + timeout
                print(f"  note  {message['text']}", file=out, flush=True)
            else:  # the verdict: the child is done
                _end(child)
                _pass_on_output(lines, out, printed)
                if message["kind"] == "fail":
                    raise CheckFailed(message["text"])
                verify(checker, decode(message["results"]), seed)  # a pass: the parent has the last word
                break
    except CheckFailed as failure:
        print(f"  FAIL  {failure}".replace("\n", "\n        "), file=out)
        print(f"not yet: {passed} step(s) passed, then the one above failed", file=out)
        return False
    finally:
        _end(child)
    print(f"passed: all {passed} steps", file=out)
    return True


def _read_lines(stream, kind, lines):
    for raw in stream:
        lines.put((kind, raw.decode("utf-8", "replace").rstrip("\n")))
    lines.put((kind, None))


def _parse(line, secret):
    try:
        message = json.loads(line)
        valid = message["secret"] == secret and message["kind"] in ("ok", "note", "fail", "pass")
    except (ValueError, TypeError, KeyError):
        valid = False
    if not valid:
        raise CheckFailed("the checker's channel carried a message the checker did not send: does your file write to the stdout the checker had before your file was imported?")
    return message


def _pass_on_output(lines, out, printed, wait=1.0):
    """What the learner's code printed before the child ended, still in the queue."""
    deadline = time.monotonic() + wait
    while True:
        try:
            kind, line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return
        if kind == "output":
            if line is None:
                return
            printed += 1
            if printed <= MAX_OUTPUT_LINES:
                print(f"  |     {line}", file=out)


def _end(child):
    """Kill the child and whatever it started (its process group, before the child is reaped, so
    the group's number cannot have been given to anyone else)."""
    if child.returncode is not None:
        return
    try:
        if os.name == "posix":
            os.killpg(child.pid, signal.SIGKILL)
        else:
            child.kill()
    except (ProcessLookupError, PermissionError):
        pass
    child.wait()


def verify(checker, results, seed):
    """The parent's own check of the probes' results, against the exercise's reference."""
    if hasattr(checker, "probes"):
        verify_op_probes(checker.probes, results, np.random.default_rng(seed))
    elif hasattr(checker, "verify"):
        checker.verify(results, np.random.default_rng(seed))


def encode(results):
    """{name: array} -> {name: base64 of its .npy bytes} (numpy's format, never a pickle)."""
    encoded = {}
    for key, value in results.items():
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(value), allow_pickle=False)
        encoded[key] = base64.b64encode(buffer.getvalue()).decode("ascii")
    return encoded


def decode(encoded):
    try:
        return {key: np.load(io.BytesIO(base64.b64decode(value)), allow_pickle=False) for key, value in encoded.items()}
    except (ValueError, TypeError, AttributeError, OSError):
        raise CheckFailed("the results of the checker's process do not read as arrays") from None


# ----- the child -----------------------------------------------------------------------------------
class ChannelReport:
    """The child's Report: each step is a message to the parent, not a line on a stream."""

    def __init__(self, send):
        self.send = send
        self.passed = 0

    def ok(self, text):
        self.passed += 1
        self.send("ok", text=text)

    def note(self, text):
        self.send("note", text=text)


def child_main(name, path, train):
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")  # private: taken before the learner's code runs
    os.dup2(2, 1)  # the learner's prints go to stderr, which the parent passes on
    sys.stdout.reconfigure(line_buffering=True)
    start = json.loads(sys.stdin.readline())
    sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - an input() gets EOF, never waits
    secret, seed = start["secret"], start["seed"]

    def send(kind, **fields):
        channel.write(json.dumps({"secret": secret, "kind": kind, **fields}) + "\n")
        channel.flush()

    checker = importlib.import_module(f"{__package__}.{name}")
    report = ChannelReport(send)
    errors = np.geterr()
    try:
        module = load_file(path, checker.NAMES)
        if np.geterr() != errors:
            changed = {key: value for key, value in np.geterr().items() if errors[key] != value}
            report.note(f"your file changed numpy's error handling at import ({changed}); the checks run with numpy's defaults, and the edge steps set their own")
            np.seterr(**errors)
        checker.check(module, report, train=train)
        results = probe(checker, module, seed)
        verdict = {"kind": "pass", "results": encode(results)}
    except CheckFailed as failure:
        verdict = {"kind": "fail", "text": str(failure)}
    except BaseException as error:  # noqa: BLE001 - SystemExit, KeyboardInterrupt ...: the learner's code raised it
        verdict = {"kind": "fail", "text": f"your code raised {describe(error, path)}"}
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()  # the learner's output first, then the verdict
        except (ValueError, OSError):  # a stream the learner's code closed
            pass
    send(**verdict)
    os._exit(0)  # now: no atexit handler and no thread of the learner's keeps the process


def probe(checker, module, seed):
    """The learner's code on this run's fresh inputs, for the parent to verify."""
    if hasattr(checker, "probes"):
        return run_op_probes(module, checker.probes, np.random.default_rng(seed))
    if hasattr(checker, "probe"):
        return checker.probe(module, np.random.default_rng(seed))
    return {}
