"""The engine's switches: gradient recording (`no_grad`) and anomaly detection.

Both are flags read by `Function.apply` and `Tensor.backward`, flipped by context managers that
restore the previous value on exit (so they nest). As in PyTorch, grad mode is per thread (one
thread evaluating under `no_grad()` does not stop another from training) and anomaly mode is
process-wide (a debugging switch for the whole program).
"""

from __future__ import annotations

import contextlib
import ctypes
import threading

import numpy as np


class _GradMode(threading.local):
    enabled = True  # record the graph? `no_grad()` turns it off; every new thread starts with True


grad_mode = _GradMode()
anomaly_enabled = False  # check every op's output for NaN/Inf? `detect_anomaly()` turns it on, in every thread


@contextlib.contextmanager
def no_grad():
    """Run a block without recording the graph: ops return tensors with requires_grad=False.

    Use it for evaluation and for in-place parameter updates; it saves the memory and the time
    that the graph would cost.
    """
    previous, grad_mode.enabled = grad_mode.enabled, False
    try:
        yield
    finally:
        grad_mode.enabled = previous


@contextlib.contextmanager
def enable_grad():
    """Record the graph inside a block even when an outer `no_grad()` turned it off."""
    previous, grad_mode.enabled = grad_mode.enabled, True
    try:
        yield
    finally:
        grad_mode.enabled = previous


def is_grad_enabled():
    """True when ops record the graph in this thread (outside `no_grad()`)."""
    return grad_mode.enabled


class AnomalyError(FloatingPointError):
    """An op produced NaN or Inf while `detect_anomaly()` was on.

    Attributes: `op` (the Function's name), `phase` ("forward" or "backward"),
    `input_shapes` (the shapes of the op's inputs).
    """

    def __init__(self, message, op, phase, input_shapes):
        super().__init__(message)
        self.op = op
        self.phase = phase
        self.input_shapes = input_shapes


@contextlib.contextmanager
def detect_anomaly():
    """Check every op's output in forward and backward; raise `AnomalyError` at the first NaN/Inf.

    A NaN usually appears far from where it started: by the time the loss is NaN, every number
    downstream is NaN too. This mode checks after each op, so the error names the op where the
    first non-finite number appeared. It costs one pass over every array, so it is off by default.
    Process-wide, as in PyTorch: while it is on, the ops of every thread are checked.
    """
    global anomaly_enabled
    previous, anomaly_enabled = anomaly_enabled, True
    try:
        yield
    finally:
        anomaly_enabled = previous


def check_finite(arrays, function, phase, inputs):
    """Raise AnomalyError if any of `arrays` (an array or a tuple of arrays/None) is not finite."""
    if not isinstance(arrays, tuple):
        arrays = (arrays,)
    for index, array in enumerate(arrays):
        if array is None or np.isfinite(array).all():
            continue
        kinds = []
        if np.isnan(array).any():
            kinds.append("NaN")
        if np.isinf(array).any():
            kinds.append("Inf")
        shapes = tuple(tensor.shape for tensor in inputs)
        what = "its output" if phase == "forward" else f"the gradient for input {index}"
        raise AnomalyError(
            f"{function.__name__}.{phase} produced {' and '.join(kinds)} in {what} "
            f"(input shapes {', '.join(str(shape) for shape in shapes)}). "
            f"This is the first op where a non-finite value appeared; look at its inputs "
            f"(a too large learning rate or a log/division of zero are the usual causes).",
            op=function.__name__,
            phase=phase,
            input_shapes=shapes,
        )


# ----- memory: glibc's malloc thresholds -----------------------------------------------------------
# glibc serves a request of at least M_MMAP_THRESHOLD (128 KiB at start) with a fresh mmap, and hands
# the top of its heap back to the system when more than M_TRIM_THRESHOLD is free there; both move
# with the sizes a process frees. A CNN training step allocates and frees about 20 MB of arrays (the
# im2col matrices, activations and gradients), more than the moving trim threshold, so in a plain
# process every step gave its heap back and faulted about 3,000 pages in again: half of the step's
# time (docs/performance.md, "The page faults"). Pinned where a warm process ends up, it faults none.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers, from glibc's malloc.h
PINNED_MMAP_THRESHOLD = 32 << 20  # glibc's own ceiling for the moving threshold: arrays below it stay in the heap
PINNED_TRIM_THRESHOLD = 64 << 20  # keep up to 64 MiB of freed heap instead of returning and refaulting it


def pin_malloc_thresholds():
    """Fix glibc's malloc thresholds where a warm process ends up (mmap 32 MiB, trim 64 MiB), so a
    step's temporaries are reused instead of faulted in again. `import tinygrad_mnist` calls it.

    Cost and side effects: it is process-wide (numpy and every other library in the process
    allocate under the same rules), up to 64 MiB of freed memory stays with the process, and
    arrays of 128 KiB to 32 MiB come from the heap, where a long-lived one can keep freed memory
    below it from going back. Both must be set: setting one turns off glibc's moving of both.
    Returns False where there is no glibc (then nothing changes).
    """
    global malloc_pinned
    try:
        libc = ctypes.CDLL("libc.so.6")
        malloc_pinned = bool(libc.mallopt(M_MMAP_THRESHOLD, PINNED_MMAP_THRESHOLD) and libc.mallopt(M_TRIM_THRESHOLD, PINNED_TRIM_THRESHOLD))
    except (OSError, AttributeError):
        pass
    return malloc_pinned


malloc_pinned = False  # has pin_malloc_thresholds run (successfully) in this process?
