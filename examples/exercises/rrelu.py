"""Exercise 4: RReLU, a layer with randomness and two modes. See docs/exercises.md.

Copy this file, fill in the methods, then check your copy:

    python -m tinygrad_mnist.exercises check rrelu my_rrelu.py
"""

import numpy as np

from tinygrad_mnist import Function, Tensor, nn


class SlopedReLU(Function):
    """out = x where x >= 0, else slope * x, with one slope per element (`slopes`, a constant).

    d out/d x = ...;  the slopes get no gradient (return None for them).
    """

    @staticmethod
    def forward(ctx, x, slopes):
        raise NotImplementedError("SlopedReLU.forward")

    @staticmethod
    def backward(ctx, grad_out):
        raise NotImplementedError("SlopedReLU.backward")


class RReLU(nn.Module):
    """Randomized leaky ReLU: in training (self.training is True), each element's slope is drawn
    from U(lower, upper), fresh at every call; in evaluation, every slope is (lower + upper) / 2."""

    def __init__(self, lower=1 / 8, upper=1 / 3, rng=None):
        self.lower, self.upper = lower, upper
        self.rng = np.random.default_rng() if rng is None else rng

    def forward(self, x):
        # draw (or fill) the slopes here, then return SlopedReLU.apply(x, Tensor(slopes, dtype=x.dtype))
        raise NotImplementedError("RReLU.forward")
