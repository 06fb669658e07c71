"""Exercise 2: log-sum-exp over an axis. Every kind of axis, keepdims both ways, a square input
(where a gradient broadcast along the wrong axis goes unnoticed by numpy), large values, gradcheck,
and the op as the loss of a classifier, against the built-in cross-entropy."""

from __future__ import annotations

import numpy as np

from ..gradcheck import GradcheckError, gradcheck
from ..tensor import Tensor
from .common import CheckFailed, call, check_op
from .probes import Probe

TITLE = "log-sum-exp over an axis, a reduction"
NAMES = ("LogSumExp",)


def reference(grad_out, x, axis=None, keepdims=False):
    """log sum exp in float64 and its gradient softmax * grad_out, with the axes handled by numpy."""
    largest = x.max(axis=axis, keepdims=True)
    kept = largest + np.log(np.exp(x - largest).sum(axis=axis, keepdims=True))
    out = kept if keepdims else np.squeeze(kept, axis=axis)
    if grad_out is None:
        return out, None
    grad = grad_out if keepdims else np.expand_dims(grad_out, axis if axis is not None else tuple(range(x.ndim)))
    return out, (grad * np.exp(x - kept),)


def probes(rng):
    """Fresh cases for the parent to re-check (see process.py): drawn anew every run."""
    return [Probe("LogSumExp", "(5, 5), axis=1", [rng.standard_normal((5, 5)) * 3], {"axis": 1}, reference),
            Probe("LogSumExp", "(3, 4, 2), axis=(0, 2), keepdims=True", [rng.standard_normal((3, 4, 2))],
                  {"axis": (0, 2), "keepdims": True}, reference)]


def check(module, report, train=True):
    LogSumExp = module.LogSumExp
    rng = np.random.default_rng(2)
    put_back = [({"keepdims": True}, "reduced-axis-not-put-back")]
    cases = [
        ("(4, 5), axis=1", rng.standard_normal((4, 5)), {"axis": 1}),
        ("(4, 4), axis=1: square, so a wrong broadcast raises no error", rng.standard_normal((4, 4)), {"axis": 1}),
        ("(4, 5), axis=0", rng.standard_normal((4, 5)), {"axis": 0}),
        ("(4, 5), axis=-1, keepdims=True", rng.standard_normal((4, 5)), {"axis": -1, "keepdims": True}),
        ("(4, 5), axis left out (all elements)", rng.standard_normal((4, 5)), {}),
        ("(2, 3, 4), axis=1", rng.standard_normal((2, 3, 4)), {"axis": 1}),
        ("(2, 3, 4), axis=(0, 2)", rng.standard_normal((2, 3, 4)), {"axis": (0, 2)}),
    ]
    for label, x, options in cases:
        check_op(module, LogSumExp, [x], options, reference, label, reduction=True, alternatives=put_back)
    report.ok("forward and backward match on 7 cases: axis None, 0, 1, -1, (0, 2); keepdims both ways; a square input")

    big = np.array([[1000.0, 1000.0, -1000.0], [-1000.0, -1000.0, -1000.0], [0.0, 1e-8, -50.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        try:
            check_op(module, LogSumExp, [big], {"axis": 1}, reference, "rows of +-1000", reduction=True)
        except CheckFailed as failure:
            raise CheckFailed(
                f"{failure.message}\n  subtract each row's largest element before exp, and add it back "
                f"after the log: log sum e^x = m + log sum e^(x - m)"
            ) from None
    report.ok("stable: rows of +1000 and -1000 give 1000 + ln 2 and -1000 + ln 3, no overflow or log(0)")

    try:
        gradcheck(lambda t: LogSumExp.apply(t, axis=1), [Tensor(rng.standard_normal((3, 4)), requires_grad=True)])
    except GradcheckError as error:
        raise CheckFailed(str(error)) from None
    report.ok("gradcheck: backward agrees with central differences in float64")

    from .. import functional as F

    logits = rng.standard_normal((6, 10)).astype(np.float32)
    labels = rng.integers(0, 10, size=6)
    own = Tensor(logits, requires_grad=True)
    loss = call(module, "LogSumExp in a loss", lambda: (LogSumExp.apply(own, axis=1) - own[np.arange(6), labels]).mean())
    call(module, "LogSumExp.backward in a loss", loss.backward)
    built_in = Tensor(logits, requires_grad=True)
    F.cross_entropy(built_in, labels).backward()
    if loss.dtype != np.float32 or not np.allclose(own.grad, built_in.grad, atol=1e-6):
        raise CheckFailed("cross-entropy written as mean(logsumexp(z) - z[label]) does not match F.cross_entropy's gradient (or is not float32)")
    report.ok("as a loss, mean(logsumexp(z, axis=1) - z[label]) gives F.cross_entropy's gradient, in float32")
