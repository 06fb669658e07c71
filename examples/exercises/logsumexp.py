"""Exercise 2: log-sum-exp over an axis, a reduction. See docs/exercises.md.

Copy this file, fill in the two methods, then check your copy:

    python -m tinygrad_mnist.exercises check logsumexp my_logsumexp.py
"""

import numpy as np

from tinygrad_mnist import Function, unreduce


class LogSumExp(Function):
    """out = log sum_i e^(x_i) over `axis`.   d out/d x_i = ... (derive it)."""

    @staticmethod
    def forward(ctx, x, axis=None, keepdims=False):
        # axis: None (all elements), an int, or a tuple of ints, as in numpy. Mind x = 1000.
        raise NotImplementedError("LogSumExp.forward")

    @staticmethod
    def backward(ctx, grad_out):
        # grad_out has the output's shape: without the reduced axes unless keepdims=True.
        # unreduce(grad_out, x.shape, axis, keepdims) puts them back as size 1.
        raise NotImplementedError("LogSumExp.backward")
