"""Exercise 1, solved: ELU, an elementwise op whose derivative you derive (docs/exercises.md).

    python -m tinygrad_mnist.exercises check elu examples/solutions/elu.py
"""

import numpy as np

from tinygrad_mnist import Function


class ELU(Function):
    """out = x if x > 0, else alpha (e^x - 1).   d out/d x = 1 if x > 0, else alpha e^x = out + alpha."""

    @staticmethod
    def forward(ctx, x, alpha=1.0):
        # exp of the negative part only, so x = 1000 cannot overflow; expm1 keeps e^x - 1 exact
        # near 0, where 1 + 1e-10 - 1 would lose most of its digits
        out = np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, out = ctx.saved
        alpha = ctx.options["alpha"]  # the call's alpha, or forward's default
        # below 0, d out/d x = alpha e^x = out + alpha: no second exp needed
        return grad_out * np.where(x > 0, 1.0, out + alpha)
