"""Exercise 3, solved: where(condition, a, b), an op with three inputs (docs/exercises.md).

    python -m tinygrad_mnist.exercises check where examples/solutions/where.py
"""

import numpy as np

from tinygrad_mnist import Function, unbroadcast


class Where(Function):
    """out = a where condition, else b (all three broadcast together, as np.where).

    d out/d a = 1 where condition, else 0;  d out/d b = the opposite;  condition: no gradient.
    """

    @staticmethod
    def forward(ctx, condition, a, b):
        mask = condition != 0  # the condition arrives as a float array of 0s and 1s
        ctx.save_for_backward(mask, a.shape, b.shape)
        return np.where(mask, a, b)

    @staticmethod
    def backward(ctx, grad_out):
        mask, a_shape, b_shape = ctx.saved
        # each output element came from a or from b: the gradient goes to that one only; where
        # forward broadcast a or b, the copies' gradients add up (unbroadcast sums them)
        grad_a = unbroadcast(np.where(mask, grad_out, 0), a_shape) if ctx.needs_input_grad[1] else None
        grad_b = unbroadcast(np.where(mask, 0, grad_out), b_shape) if ctx.needs_input_grad[2] else None
        return None, grad_a, grad_b  # one per input, None for the condition
