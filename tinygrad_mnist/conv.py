"""Convolution and pooling: Conv2d and MaxPool2d as Functions, forward and backward side by side.

Both ops use only the public op API (the same one your own op would use), and both rest on one
numpy trick, the *sliding-window view*: for an input (N, C, H, W) and a kh x kw window,

    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))

is an array (N, C, H - kh + 1, W - kw + 1, kh, kw) whose entry [n, c, i, j] is the window whose
top-left corner is (i, j). It copies nothing: it is the same memory read with other strides.
Reshaping it into a matrix copies each pixel once per window it falls in ("im2col"), after
which a convolution is one matrix product. docs/convolutions.md derives the backward passes.

Shapes: N batch, C input channels, O output channels, (H, W) input size, (kh, kw) kernel size,
(OH, OW) output size, P = OH * OW output positions, K = C * kh * kw numbers in one window.
"""

from __future__ import annotations

import numpy as np

from .function import Function

sliding_window_view = np.lib.stride_tricks.sliding_window_view


def output_size(size, kernel, stride, padding=0):
    """How many windows of `kernel` fit along an axis of `size` (padded on both sides), `stride` apart."""
    return (size + 2 * padding - kernel) // stride + 1


def windows_of(x, kernel, stride):
    """The (kh, kw) windows of x (N, C, H, W), `stride` apart: a view (N, C, OH, OW, kh, kw), no copy."""
    (kernel_h, kernel_w), (stride_h, stride_w) = kernel, stride
    return sliding_window_view(x, (kernel_h, kernel_w), axis=(2, 3))[:, :, ::stride_h, ::stride_w]


def add_windows_back(grad_windows, input_shape, stride):
    """The adjoint of windows_of: add each window's gradient into the pixels it was read from.

    grad_windows (N, C, OH, OW, kh, kw) -> an array of `input_shape` (N, C, H, W). A pixel read by
    several windows (they overlap when stride < kernel) receives the sum of their gradients: the
    chain rule for a value used more than once. One loop over the kh * kw kernel offsets; each
    step adds a whole (N, C, OH, OW) block into a strided slice of the input ("col2im").
    """
    batch, channels, out_h, out_w, kernel_h, kernel_w = grad_windows.shape
    stride_h, stride_w = stride
    grad_x = np.zeros(input_shape, dtype=grad_windows.dtype)
    for i in range(kernel_h):
        for j in range(kernel_w):
            # offset (i, j) of window (p, q) is pixel (i + stride_h * p, j + stride_w * q)
            grad_x[:, :, i : i + stride_h * out_h : stride_h, j : j + stride_w * out_w : stride_w] += grad_windows[..., i, j]
    return grad_x


class Conv2d(Function):
    """out[n, o] = bias[o] + sum over c, i, j of weight[o, c, i, j] * x_padded[n, c, s*p + i, s*q + j].

    x (N, C, H, W), weight (O, C, kh, kw), bias (O,) or absent; stride (sh, sw), padding (ph, pw)
    zeros on each side -> out (N, O, OH, OW), OH = (H + 2 ph - kh) // sh + 1, as torch.nn.functional.conv2d.
    With cols (N, K, P) the im2col matrix of the windows and W = weight as a matrix (O, K):
        forward    out = W @ cols + bias
        d loss/d weight = sum over n of grad_out[n] @ cols[n]^T   (input correlated with grad_out)
        d loss/d bias   = grad_out summed over n and the positions
        d loss/d x      = W^T @ grad_out, each window's gradient added back to its pixels (col2im);
                          for stride 1 this is the full convolution of grad_out with the flipped kernel
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None, stride=(1, 1), padding=(0, 0)):
        batch, channels, height, width = x.shape
        out_channels, _, kernel_h, kernel_w = weight.shape
        (pad_h, pad_w) = padding
        if pad_h or pad_w:
            x = np.pad(x, ((0, 0), (0, 0), (pad_h, pad_h), (pad_w, pad_w)))
        windows = windows_of(x, (kernel_h, kernel_w), stride)  # (N, C, OH, OW, kh, kw), a view
        out_h, out_w = windows.shape[2:4]
        # im2col, the one copy: (N, C, kh, kw, OH, OW) -> (N, K, P), so that the product below lands
        # in (N, O, P), already the output's layout (measured: 2-3x faster than (N*P, K) @ (K, O))
        cols = windows.transpose(0, 1, 4, 5, 2, 3).reshape(batch, channels * kernel_h * kernel_w, out_h * out_w)
        weight_matrix = weight.reshape(out_channels, -1)  # (O, K)
        out = weight_matrix @ cols  # (O, K) @ (N, K, P) -> (N, O, P): one batched matrix product
        if bias is not None:
            out += bias[:, None]  # (O, 1) broadcasts over the positions
        ctx.save_for_backward(cols, weight, x.shape)
        return out.reshape(batch, out_channels, out_h, out_w)

    @staticmethod
    def backward(ctx, grad_out):
        cols, weight, padded_shape = ctx.saved
        pad_h, pad_w = ctx.options["padding"]
        batch, out_channels, out_h, out_w = grad_out.shape
        grad_matrix = grad_out.reshape(batch, out_channels, out_h * out_w)  # (N, O, P)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_cols = weight.reshape(out_channels, -1).T @ grad_matrix  # (K, O) @ (N, O, P) -> (N, K, P)
            channels, kernel_h, kernel_w = weight.shape[1:]
            grad_windows = grad_cols.reshape(batch, channels, kernel_h, kernel_w, out_h, out_w).transpose(0, 1, 4, 5, 2, 3)
            grad_x = add_windows_back(grad_windows, padded_shape, ctx.options["stride"])
            grad_x = grad_x[:, :, pad_h : padded_shape[2] - pad_h, pad_w : padded_shape[3] - pad_w]  # drop the padding
        if ctx.needs_input_grad[1]:
            # (N, O, P) @ (N, P, K) -> (N, O, K), summed over the batch: every window used this weight
            grad_weight = (grad_matrix @ cols.transpose(0, 2, 1)).sum(axis=0).reshape(weight.shape)
        if len(ctx.needs_input_grad) > 2 and ctx.needs_input_grad[2]:
            grad_bias = grad_out.sum(axis=(0, 2, 3))
        return (grad_x, grad_weight, grad_bias)[: len(ctx.needs_input_grad)]


class MaxPool2d(Function):
    """out[n, c, p, q] = the largest x[n, c, s*p + i, s*q + j] over the kernel offsets (i, j).

    x (N, C, H, W); kernel (kh, kw), stride (sh, sw) -> out (N, C, OH, OW), OH = (H - kh) // sh + 1.
    No padding: pixels past the last whole window are left out, as in torch's default (ceil_mode=False).
    d loss/d x: each window passes grad_out to the one pixel that was its maximum, and nothing to
    the others. Ties go to the first maximum in the window in row-major order (np.argmax), which
    is also what PyTorch does; where windows overlap, a pixel that is the maximum of several
    receives the sum of their gradients.
    """

    @staticmethod
    def forward(ctx, x, kernel=(2, 2), stride=(2, 2)):
        windows = windows_of(x, kernel, stride)  # (N, C, OH, OW, kh, kw), a view
        flat = windows.reshape(*windows.shape[:4], -1)  # (N, C, OH, OW, kh * kw): a copy
        winner = flat.argmax(axis=-1)[..., None]  # (N, C, OH, OW, 1): the first maximum's offset
        ctx.save_for_backward(winner, x.shape)
        return np.take_along_axis(flat, winner, axis=-1)[..., 0]

    @staticmethod
    def backward(ctx, grad_out):
        winner, input_shape = ctx.saved
        kernel_h, kernel_w = ctx.options["kernel"]
        grad_windows = np.zeros((*grad_out.shape, kernel_h * kernel_w), dtype=grad_out.dtype)
        np.put_along_axis(grad_windows, winner, grad_out[..., None], axis=-1)  # only the winner gets it
        grad_windows = grad_windows.reshape(*grad_out.shape, kernel_h, kernel_w)
        return add_windows_back(grad_windows, input_shape, ctx.options["stride"])
