"""Exercise 1: ELU. Forward and backward against the formula, edge values, a keyword passed and
left out, gradcheck, float32 kept, and a training run in the MLP."""

from __future__ import annotations

import numpy as np

from ..gradcheck import GradcheckError, gradcheck
from ..tensor import Tensor
from .common import CheckFailed, call, check_activation_trains, check_op
from .probes import Probe

TITLE = "ELU, an elementwise op whose derivative you derive"
NAMES = ("ELU",)
EDGES = np.array([-1000.0, -30.0, -5.0, -1e-3, 1e-3, 5.0, 30.0, 1000.0])


def reference(grad_out, x, alpha=1.0):
    """ELU and its gradient, written straight from the definition."""
    with np.errstate(over="ignore"):
        out = np.where(x > 0, x, alpha * (np.exp(np.minimum(x, 0)) - 1))
    if grad_out is None:
        return out, None
    return out, (grad_out * np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0))),)


def probes(rng):
    """Fresh cases for the parent to re-check (see process.py): drawn anew every run."""
    return [Probe("ELU", "(4, 6), alpha left out", [rng.standard_normal((4, 6)) * 3], {}, reference),
            Probe("ELU", "(7,), alpha drawn", [rng.standard_normal(7) * 3], {"alpha": float(rng.uniform(0.2, 3))}, reference)]


def check(module, report, train=True):
    ELU = module.ELU
    rng = np.random.default_rng(1)
    cases = [
        ("random (3, 4), alpha left out", [rng.standard_normal((3, 4)) * 3], {}),
        ("random (2, 3, 4), alpha=0.5", [rng.standard_normal((2, 3, 4)) * 3], {"alpha": 0.5}),
        ("random (5,), alpha=1.0 given", [rng.standard_normal(5) * 3], {"alpha": 1.0}),
        ("random (6,), alpha=2.0", [rng.standard_normal(6) * 3], {"alpha": 2.0}),
    ]
    for label, arrays, options in cases:
        check_op(module, ELU, arrays, options, reference, label)
    report.ok("forward and backward match the formula on 4 shapes, with alpha left out and given (0.5, 1.0, 2.0)")

    with np.errstate(over="raise", invalid="raise"):
        try:
            check_op(module, ELU, [EDGES], {"alpha": 0.3}, reference, "edge values +-1000, +-30, +-5, +-0.001")
        except CheckFailed as failure:
            if "FloatingPointError" in failure.message:
                raise CheckFailed(
                    f"{failure.message}\n  at x = 1000, e^x overflows to inf even where np.where then "
                    f"picks the other branch; take the exp of np.minimum(x, 0) instead"
                ) from None
            raise
    report.ok("edge values: no overflow at x = +-1000, exact at +-30, +-5, +-0.001")

    x = np.linspace(-3, 3, 12).reshape(3, 4) + 0.05  # keeps away from the kink at 0
    try:
        gradcheck(lambda t: ELU.apply(t, alpha=0.5), [Tensor(x, requires_grad=True)])
    except GradcheckError as error:
        raise CheckFailed(str(error)) from None
    report.ok("gradcheck: backward agrees with central differences in float64")

    out = call(module, "ELU.forward (float32)", ELU.apply, Tensor(np.array([-1.0, 2.0], dtype=np.float32)))
    if out.dtype != np.float32:
        raise CheckFailed(f"ELU turned float32 input into {out.dtype}; keep the input's dtype (a float64 constant such as np.float64(alpha) upcasts)")
    report.ok("float32 in, float32 out")

    if train:
        check_activation_trains(report, lambda t: ELU.apply(t), "ELU")
