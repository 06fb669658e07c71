"""Stand-ins for two names the exercises use, for an engine that does not have them yet.

FALLBACK: delete this file once `tinygrad_mnist.unreduce` and `tinygrad_mnist.optim.Optimizer`
exist; the exercises import the real names first and reach these only on an ImportError.
"""

from __future__ import annotations

import numpy as np


def unreduce(grad, input_shape, axis, keepdims):
    """Put the axes a reduction removed back (as size 1), so `grad` broadcasts to `input_shape`."""
    if axis is None:
        return np.reshape(grad, (1,) * len(input_shape))
    if keepdims:
        return grad
    axes = (axis,) if np.ndim(axis) == 0 else tuple(axis)
    return np.expand_dims(grad, tuple(a % len(input_shape) for a in axes))


class Optimizer:
    """The base an optimizer subclasses: keeps `params`, zeroes their gradients; step() is yours."""

    def __init__(self, params):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list; pass model.parameters()")

    def zero_grad(self):
        """Forget the gradients of all parameters (set .grad to None), before the next backward()."""
        for parameter in self.params:
            parameter.grad = None

    def step(self):
        """Update every parameter that has a gradient, in place (a subclass defines it)."""
        raise NotImplementedError(f"{type(self).__name__} must define step()")
