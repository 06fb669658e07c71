"""Exercise 9: MaxPool2d from scratch. Forward and backward against a plain loop over every window
(always), the library's own max pooling (when tinygrad_mnist.conv exists) and PyTorch's (when
installed): square and odd sizes, overlapping windows, stride left out; gradcheck; float32; speed."""

from __future__ import annotations

import importlib.util
import time

import numpy as np

from ..gradcheck import GradcheckError, gradcheck
from ..tensor import Tensor
from .common import DIAGNOSES, CheckFailed, call, check_op
from .probes import Probe

TITLE = "MaxPool2d from scratch (the hard one)"
NAMES = ("MaxPool2d",)


def windows(shape, kernel_size, stride):
    """Yield (n, c, i, j, rows slice, cols slice) for every pooling window, the slow, obvious way."""
    n, c, height, width = shape
    for b in range(n):
        for ch in range(c):
            for i in range((height - kernel_size) // stride + 1):
                for j in range((width - kernel_size) // stride + 1):
                    yield b, ch, i, j, slice(i * stride, i * stride + kernel_size), slice(j * stride, j * stride + kernel_size)


def loop_reference(grad_out, x, kernel_size=2, stride=None, overwrite=False):
    """Max pooling by a loop over every window; the gradient goes to each window's (first) max."""
    stride = kernel_size if stride is None else stride
    n, c, height, width = x.shape
    out = np.zeros((n, c, (height - kernel_size) // stride + 1, (width - kernel_size) // stride + 1))
    grad = np.zeros_like(x)
    for b, ch, i, j, rows, cols in windows(x.shape, kernel_size, stride):
        window = x[b, ch, rows, cols]
        out[b, ch, i, j] = window.max()
        if grad_out is not None:
            r, q = np.unravel_index(window.argmax(), window.shape)
            if overwrite:
                grad[b, ch, rows.start + r, cols.start + q] = grad_out[b, ch, i, j]
            else:
                grad[b, ch, rows.start + r, cols.start + q] += grad_out[b, ch, i, j]
    return out, (None if grad_out is None else (grad,))


DIAGNOSES["stride-hard-coded-in-backward"] = (
    "backward is right only for one stride: it uses a stride of its own (a number, or kernel_size) instead of "
    "the call's. Read it from ctx.options[\"stride\"] (None when left out: then it is kernel_size), as forward does.")
STRIDE_PROBES = ((2, None), (2, 2), (3, None), (3, 3), (3, 1), (3, 2), (2, 1))  # (kernel_size, stride)


def stride_hard_coded(module, MaxPool2d, rng):
    """True when backward is right for exactly the probes of one stride (kernel_size, or one number)."""
    right = {}
    for kernel_size, stride in STRIDE_PROBES:
        try:
            check_op(module, MaxPool2d, [distinct(rng, 1, 2, 7, 7)], {"kernel_size": kernel_size, "stride": stride},
                     loop_reference, "stride probe", diagnose=False)
            right[(kernel_size, stride)] = True
        except CheckFailed as failure:
            if "forward" in failure.message:
                return False  # forward is wrong too: not a backward-only mistake
            right[(kernel_size, stride)] = False
    if all(right.values()) or not any(right.values()):
        return False
    stride_of = {probe: probe[1] or probe[0] for probe in right}  # a stride left out is kernel_size
    right_strides = {stride_of[probe] for probe, ok in right.items() if ok}
    one_number = len(right_strides) == 1 and all(ok == (stride_of[probe] in right_strides) for probe, ok in right.items())
    same_as_kernel = all(ok == (stride_of[probe] == probe[0]) for probe, ok in right.items())
    return same_as_kernel or one_number


def distinct(rng, *shape):
    """Random values with no ties and at least 0.01 apart, so a nudge of 1e-6 never changes a max."""
    return rng.permutation(np.prod(shape)).reshape(shape) * 0.01 - np.prod(shape) * 0.005


def probes(rng):
    """Fresh cases for the parent to re-check (see process.py): drawn anew every run."""
    return [Probe("MaxPool2d", "(2, 2, 5, 5), kernel 3, stride 2: windows overlap", [distinct(rng, 2, 2, 5, 5)],
                  {"kernel_size": 3, "stride": 2}, loop_reference)]


def check(module, report, train=True):
    MaxPool2d = module.MaxPool2d
    rng = np.random.default_rng(9)

    def overwrite(grad_out, x, **options):  # the gradient a plain assignment gives
        return loop_reference(grad_out, x, overwrite=True, **options)

    cases = [
        ("(2, 3, 4, 4), kernel 2", distinct(rng, 2, 3, 4, 4), {"kernel_size": 2}),
        ("(1, 2, 5, 5), kernel 2: the last row and column are left out", distinct(rng, 1, 2, 5, 5), {"kernel_size": 2}),
        ("(1, 1, 6, 6), kernel 3, stride left out (= 3)", distinct(rng, 1, 1, 6, 6), {"kernel_size": 3}),
        ("(2, 2, 4, 6), kernel 2, stride 2 given", distinct(rng, 2, 2, 4, 6), {"kernel_size": 2, "stride": 2}),
        ("(1, 2, 5, 5), kernel 3, stride 2: windows overlap", distinct(rng, 1, 2, 5, 5), {"kernel_size": 3, "stride": 2}),
        ("(2, 1, 4, 5), kernel 2, stride 1: windows overlap", distinct(rng, 2, 1, 4, 5), {"kernel_size": 2, "stride": 1}),
    ]
    for label, x, options in cases:
        diagnose_overwrite = []
        if options.get("stride", options["kernel_size"]) < options["kernel_size"]:
            try:  # the learner's gradient is the one a plain assignment gives: name that mistake
                check_op(module, MaxPool2d, [x], options, overwrite, label, diagnose=False)
                diagnose_overwrite = [True]
            except CheckFailed:
                pass
        if diagnose_overwrite:
            raise CheckFailed(f"MaxPool2d.backward is wrong where windows overlap ({label})", "overlapping-windows-overwrite")
        try:
            check_op(module, MaxPool2d, [x], options, loop_reference, label)
        except CheckFailed as failure:
            if "backward" in failure.message and stride_hard_coded(module, MaxPool2d, rng):
                failure.diagnosis = "stride-hard-coded-in-backward"
            raise
    report.ok("forward and backward match a loop over every window: 6 cases, odd sizes, stride left out and given, overlapping windows")

    try:
        gradcheck(lambda t: MaxPool2d.apply(t, kernel_size=3, stride=2), [Tensor(distinct(rng, 1, 2, 5, 5), requires_grad=True)])
    except GradcheckError as error:
        raise CheckFailed(str(error)) from None
    report.ok("gradcheck: backward agrees with central differences (kernel 3, stride 2)")

    x = distinct(rng, 2, 3, 6, 6)
    for kernel_size, stride in ((2, None), (3, 1)):
        ours = Tensor(x, requires_grad=True)
        out = call(module, "MaxPool2d", MaxPool2d.apply, ours, kernel_size=kernel_size, stride=stride)
        grad_out = rng.standard_normal(out.shape)
        out.backward(grad_out)
        if importlib.util.find_spec("tinygrad_mnist.conv") is not None:
            from .. import functional as F

            library = Tensor(x, requires_grad=True)
            library_out = F.max_pool2d(library, kernel_size, stride)
            library_out.backward(grad_out)
            if not (np.allclose(out.data, library_out.data) and np.allclose(ours.grad, library.grad)):
                raise CheckFailed(f"MaxPool2d (kernel {kernel_size}, stride {stride}) disagrees with the library's F.max_pool2d")
            report.ok(f"agrees with the library's F.max_pool2d (kernel {kernel_size}, stride {stride})")
        try:
            import torch
        except ImportError:
            continue
        theirs = torch.tensor(x, requires_grad=True)
        torch_out = torch.nn.functional.max_pool2d(theirs, kernel_size, stride)
        torch_out.backward(torch.tensor(grad_out))
        if not (np.allclose(out.data, torch_out.detach().numpy()) and np.allclose(ours.grad, theirs.grad.numpy())):
            raise CheckFailed(f"MaxPool2d (kernel {kernel_size}, stride {stride}) disagrees with torch.nn.functional.max_pool2d")
        report.ok(f"agrees with torch.nn.functional.max_pool2d (kernel {kernel_size}, stride {stride})")

    batch = rng.standard_normal((64, 8, 28, 28)).astype(np.float32)
    start = time.perf_counter()
    out = call(module, "MaxPool2d on (64, 8, 28, 28)", MaxPool2d.apply, Tensor(batch, requires_grad=True), kernel_size=2)
    call(module, "MaxPool2d.backward on (64, 8, 28, 28)", out.backward, np.ones(out.shape, dtype=np.float32))
    seconds = time.perf_counter() - start
    if out.dtype != np.float32:
        raise CheckFailed(f"MaxPool2d turned float32 into {out.dtype}")
    if seconds > 5:
        raise CheckFailed(f"MaxPool2d took {seconds:.1f} s for one forward and backward of a (64, 8, 28, 28) batch; a loop over windows in Python is too slow to train with: work on whole arrays (see the hint)")
    report.ok(f"float32 stays float32; a (64, 8, 28, 28) batch, forward and backward, in {1000 * seconds:.0f} ms")
