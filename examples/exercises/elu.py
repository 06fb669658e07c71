"""Exercise 1: ELU, an elementwise op whose derivative you derive. See docs/exercises.md.

Copy this file, fill in the two methods, then check your copy:

    python -m tinygrad_mnist.exercises check elu my_elu.py
"""

import numpy as np

from tinygrad_mnist import Function


class ELU(Function):
    """out = x if x > 0, else alpha (e^x - 1).   d out/d x = ... (derive it, then write it here)."""

    @staticmethod
    def forward(ctx, x, alpha=1.0):
        # x is an ndarray of any shape; return an ndarray of the same shape and dtype.
        # Mind x = 1000: e^x overflows. Save what backward needs with ctx.save_for_backward(...).
        raise NotImplementedError("ELU.forward")

    @staticmethod
    def backward(ctx, grad_out):
        # grad_out is d loss/d out, shaped like the output; return d loss/d x, shaped like x.
        # alpha is in ctx.options["alpha"] (the caller's value, or forward's default).
        raise NotImplementedError("ELU.backward")
