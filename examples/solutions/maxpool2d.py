"""Exercise 9, solved: 2-d max pooling from scratch, forward and backward on whole arrays
(docs/exercises.md).

    python -m tinygrad_mnist.exercises check maxpool2d examples/solutions/maxpool2d.py
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tinygrad_mnist import Function


class MaxPool2d(Function):
    """out[n, c, i, j] = max of x[n, c] over the window of rows i*stride .. i*stride + k - 1 and
    columns j*stride .. j*stride + k - 1 (k = kernel_size; stride = k when left out).

    d out/d x = 1 at the window's largest element (the first one, on a tie), 0 elsewhere; where
    windows overlap, an element can be the largest of several, and its gradients add up.
    """

    @staticmethod
    def forward(ctx, x, kernel_size=2, stride=None):
        k = kernel_size
        s = k if stride is None else stride
        # every k x k window as a view, no copy: (N, C, H - k + 1, W - k + 1, k, k), then every s-th
        windows = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
        flat = windows.reshape(*windows.shape[:4], k * k)  # (N, C, Hout, Wout, k*k): copies here
        winner = flat.argmax(axis=-1)  # (N, C, Hout, Wout): the position of the max in its window
        ctx.save_for_backward(winner, x.shape)
        return np.take_along_axis(flat, winner[..., None], axis=-1)[..., 0]

    @staticmethod
    def backward(ctx, grad_out):
        winner, shape = ctx.saved
        k = ctx.options["kernel_size"]
        s = k if ctx.options["stride"] is None else ctx.options["stride"]
        n, c, rows_out, cols_out = grad_out.shape
        # where in x each window's winner sits: window (i, j) starts at row i*s, column j*s
        rows = np.arange(rows_out)[:, None] * s + winner // k  # (N, C, Hout, Wout)
        cols = np.arange(cols_out)[None, :] * s + winner % k
        batch = np.arange(n)[:, None, None, None]
        channel = np.arange(c)[None, :, None, None]
        grad_x = np.zeros(shape, dtype=grad_out.dtype)
        # add.at, not grad_x[...] = grad_out: with overlapping windows (stride < kernel_size) one
        # element can win several windows, and a plain assignment would keep only the last one
        np.add.at(grad_x, (batch, channel, rows, cols), grad_out)
        return grad_x
