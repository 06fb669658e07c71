"""Exercise 2, solved: log-sum-exp over an axis, a reduction (docs/exercises.md).

    python -m tinygrad_mnist.exercises check logsumexp examples/solutions/logsumexp.py
"""

import numpy as np

from tinygrad_mnist import Function, unreduce


class LogSumExp(Function):
    """out = log sum_i e^(x_i) over `axis`.   d out/d x_i = e^(x_i - out) = softmax(x)_i."""

    @staticmethod
    def forward(ctx, x, axis=None, keepdims=False):
        # subtract the largest element first: every e^(x - largest) is in (0, 1], so nothing
        # overflows, and the sum is at least 1, so its log is finite
        largest = x.max(axis=axis, keepdims=True)
        out = largest + np.log(np.exp(x - largest).sum(axis=axis, keepdims=True))
        ctx.save_for_backward(x, out)  # out with the reduced axes kept (size 1): it broadcasts
        return out if keepdims else np.squeeze(out, axis=axis)

    @staticmethod
    def backward(ctx, grad_out):
        x, out = ctx.saved
        # grad_out lacks the reduced axes when keepdims=False: put them back (as size 1) so
        # that it broadcasts along the axis that was summed, not along another one
        grad = unreduce(grad_out, x.shape, ctx.options["axis"], ctx.options["keepdims"])
        return grad * np.exp(x - out)  # (..., 1, ...) * (..., n, ...): softmax times grad_out
