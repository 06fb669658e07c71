"""Exercise 3: where(condition, a, b), an op with three inputs. See docs/exercises.md.

Copy this file, fill in the two methods, then check your copy:

    python -m tinygrad_mnist.exercises check where my_where.py
"""

import numpy as np

from tinygrad_mnist import Function, unbroadcast


class Where(Function):
    """out = a where condition, else b (all three broadcast together, as np.where).

    d out/d a = ...,  d out/d b = ...,  condition: ... (work them out).
    """

    @staticmethod
    def forward(ctx, condition, a, b):
        # condition arrives as a float array of 0s and 1s; a and b may have other shapes
        # than the output (broadcasting), e.g. a (3, 4) and b (4,) or a number.
        raise NotImplementedError("Where.forward")

    @staticmethod
    def backward(ctx, grad_out):
        # return one gradient per input of forward, in order: (condition, a, b)
        raise NotImplementedError("Where.backward")
