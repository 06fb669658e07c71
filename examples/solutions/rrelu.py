"""Exercise 4, solved: RReLU, a layer with randomness and two modes (docs/exercises.md).

    python -m tinygrad_mnist.exercises check rrelu examples/solutions/rrelu.py
"""

import numpy as np

from tinygrad_mnist import Function, Tensor, nn


class SlopedReLU(Function):
    """out = x where x >= 0, else slope * x, with one slope per element (`slopes`, a constant).

    d out/d x = 1 where x >= 0, else slope.  The slopes get no gradient: they are noise, not weights.
    """

    @staticmethod
    def forward(ctx, x, slopes):
        local = np.where(x >= 0, 1.0, slopes).astype(x.dtype)  # d out/d x, also the factor itself
        ctx.save_for_backward(local)
        return x * local

    @staticmethod
    def backward(ctx, grad_out):
        (local,) = ctx.saved
        return grad_out * local, None  # the very slopes forward used: nothing is drawn again


class RReLU(nn.Module):
    """Randomized leaky ReLU (Xu et al., 2015): in training, each negative element gets its own
    slope drawn from U(lower, upper), fresh at every call; in evaluation, the mean slope
    (lower + upper) / 2, so predictions are deterministic."""

    def __init__(self, lower=1 / 8, upper=1 / 3, rng=None):
        self.lower, self.upper = lower, upper
        self.rng = np.random.default_rng() if rng is None else rng

    def forward(self, x):
        if self.training:
            slopes = self.rng.uniform(self.lower, self.upper, size=x.shape)
        else:
            slopes = np.full(x.shape, (self.lower + self.upper) / 2)
        # the noise enters as an input: forward and backward see the same numbers, and with the
        # noise fixed, the op is an ordinary function that gradcheck can check
        return SlopedReLU.apply(x, Tensor(slopes, dtype=x.dtype))

    def extra_repr(self):
        return f"lower={self.lower}, upper={self.upper}"
