"""Exercise 3: where(condition, a, b). Shapes equal and broadcast every way, the number of
gradients, a constant input, gradcheck, and ReLU rebuilt from it."""

from __future__ import annotations

import numpy as np

from ..gradcheck import GradcheckError, gradcheck
from ..tensor import Tensor
from .common import CheckFailed, call, check_op
from .probes import Probe

TITLE = "where(condition, a, b), an op with three inputs"
NAMES = ("Where",)


def sum_to(grad, shape):
    """Sum a broadcast gradient back to `shape` (written here again, to be independent of the engine)."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


def reference(grad_out, condition, a, b):
    mask = condition != 0
    out = np.where(mask, a, b)
    if grad_out is None:
        return out, None
    return out, (None, sum_to(np.where(mask, grad_out, 0.0), np.shape(a)), sum_to(np.where(mask, 0.0, grad_out), np.shape(b)))


def probes(rng):
    """Fresh cases for the parent to re-check (see process.py): drawn anew every run."""
    condition = (rng.random((3, 5)) < 0.5).astype(np.float64)
    return [Probe("Where", "a (3, 1), b (5,)", [condition, rng.standard_normal((3, 1)), rng.standard_normal(5)], {}, reference)]


def check(module, report, train=True):
    Where = module.Where
    rng = np.random.default_rng(3)

    def mask(*shape):
        return (rng.random(shape) < 0.5).astype(np.float64)

    cases = [
        ("condition, a, b all (3, 4)", [mask(3, 4), rng.standard_normal((3, 4)), rng.standard_normal((3, 4))]),
        ("a (3, 4), b (4,): b broadcast over rows", [mask(3, 4), rng.standard_normal((3, 4)), rng.standard_normal(4)]),
        ("a (3, 1), b (1, 4), condition (3, 4)", [mask(3, 4), rng.standard_normal((3, 1)), rng.standard_normal((1, 4))]),
        ("condition (4,), a (2, 3, 4), b a number ()", [mask(4), rng.standard_normal((2, 3, 4)), np.array(0.5)]),
        ("a a number () that requires grad, b (3, 4)", [mask(3, 4), np.array(-1.5), rng.standard_normal((3, 4))]),
    ]
    for label, arrays in cases:
        check_op(module, Where, arrays, {}, reference, label)
    report.ok("forward and backward match on 5 cases: equal shapes, a, b and the condition broadcast, a single number")

    x = rng.standard_normal((3, 4))
    for b in (rng.standard_normal(4), np.array(0.7)):  # b broadcast, then b a single number (a 0-d input)
        try:
            gradcheck(lambda a, b: Where.apply(Tensor(x > 0), a, b),
                      [Tensor(rng.standard_normal((3, 4)), requires_grad=True), Tensor(b, requires_grad=True)])
        except GradcheckError as error:
            raise CheckFailed(f"{error} (b of shape {b.shape})") from None
    report.ok("gradcheck: both gradients agree with central differences, b broadcast (4,) and b a single number ()")

    x = Tensor(np.array([[-2.0, -0.5, 0.5], [3.0, -1.0, 2.0]], dtype=np.float32), requires_grad=True)
    relu = call(module, "Where as ReLU", Where.apply, Tensor(x.data > 0), x, 0.0)
    call(module, "Where.backward as ReLU", relu.sum().backward)
    if relu.dtype != np.float32 or relu.data.tolist() != x.relu().data.tolist() or x.grad.tolist() != [[0, 0, 1], [1, 0, 1]]:
        raise CheckFailed(f"where(x > 0, x, 0) should be relu(x) with gradient 1 where x > 0, in float32; got {relu.data.tolist()}, gradient {x.grad.tolist()}")
    report.ok("where(x > 0, x, 0) is ReLU, with ReLU's gradient, in float32")
