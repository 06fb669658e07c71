"""Exercise 9: 2-d max pooling from scratch, forward and backward on whole arrays. See
docs/exercises.md.

Copy this file, fill in the two methods, then check your copy:

    python -m tinygrad_mnist.exercises check maxpool2d my_maxpool2d.py
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view  # noqa: F401 - a hint, see the docs

from tinygrad_mnist import Function


class MaxPool2d(Function):
    """out[n, c, i, j] = max of x[n, c] over the window of rows i*stride .. i*stride + k - 1 and
    columns j*stride .. j*stride + k - 1 (k = kernel_size; stride = k when left out).

    d out/d x = ... (work it out; mind windows that overlap when stride < kernel_size).
    """

    @staticmethod
    def forward(ctx, x, kernel_size=2, stride=None):
        # x: (N, C, H, W) -> out: (N, C, (H - k) // s + 1, (W - k) // s + 1)
        raise NotImplementedError("MaxPool2d.forward")

    @staticmethod
    def backward(ctx, grad_out):
        raise NotImplementedError("MaxPool2d.backward")
