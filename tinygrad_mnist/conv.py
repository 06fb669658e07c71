"""Convolution and pooling: Conv2dOp and MaxPool2dOp as Functions, forward and backward side by side.

Both ops use only the public op API (the same one your own op would use), and both rest on one
numpy trick, the *sliding-window view*: for an input (N, C, H, W) and a kh x kw window,

    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))

is an array (N, C, H - kh + 1, W - kw + 1, kh, kw) whose entry [n, c, i, j] is the window whose
top-left corner is (i, j). It copies nothing: it is the same memory read with other strides.
Reshaping it into a matrix copies each pixel once per window it falls in ("im2col"), after
which a convolution is one matrix product. docs/convolutions.md derives the backward passes.

Shapes: N batch, C input channels, O output channels, (H, W) input size, (kh, kw) kernel size,
(OH, OW) output size, P = OH * OW output positions, K = C * kh * kw numbers in one window.

Memory layout: the arrays these ops return are shaped (N, C, H, W), as in PyTorch, but stored
with the batch axis innermost, as (C, H, W, N) (a transposed view; numpy's elementwise ops keep
it). The reason is speed: col2im and pooling add or compare whole blocks at each kernel offset,
and numpy runs such a block row by row along its innermost axis. With the batch innermost a row
is 64 numbers long; with the width innermost it was 8 to 24, and the per-row overhead made col2im
take 2.7 times as long (measured: docs/performance.md).
"""

from __future__ import annotations

import numpy as np

from .function import Function

sliding_window_view = np.lib.stride_tricks.sliding_window_view


def windows_of(x, kernel, stride):
    """The (kh, kw) windows of x (N, C, H, W), `stride` apart: a view (N, C, OH, OW, kh, kw), no copy."""
    (kernel_h, kernel_w), (stride_h, stride_w) = kernel, stride
    return sliding_window_view(x, (kernel_h, kernel_w), axis=(2, 3))[:, :, ::stride_h, ::stride_w]


def batch_innermost_zeros(shape, dtype):
    """Zeros shaped (N, C, H, W), stored as (C, H, W, N): the layout these ops use (see the top of the file)."""
    batch, channels, height, width = shape
    # zeros_like of a transposed view makes an array in the view's layout that owns its memory, so
    # the engine keeps it as a .grad as it is (it copies views: 3.6 MB a LeNet step); np.empty
    # touches no memory, so the template costs nothing
    return np.zeros_like(np.empty((channels, height, width, batch), dtype=dtype).transpose(3, 0, 1, 2))


def window_pixels(i, j, out_shape, stride):
    """The index of the pixels at kernel offset (i, j) of every window: pixel (i + sh * p, j + sw * q) of window (p, q)."""
    out_h, out_w = out_shape[2:4]
    stride_h, stride_w = stride
    return (slice(None), slice(None), slice(i, i + stride_h * out_h, stride_h), slice(j, j + stride_w * out_w, stride_w))


def add_windows_back(grad_windows, input_shape, stride):
    """The adjoint of windows_of: add each window's gradient into the pixels it was read from.

    grad_windows (N, C, OH, OW, kh, kw) -> an array of `input_shape` (N, C, H, W). A pixel read by
    several windows (they overlap when stride < kernel) receives the sum of their gradients: the
    chain rule for a value used more than once. One loop over the kh * kw kernel offsets; each
    step adds a whole (N, C, OH, OW) block into a strided slice of the input ("col2im").
    """
    kernel_h, kernel_w = grad_windows.shape[4:]
    grad_x = batch_innermost_zeros(input_shape, grad_windows.dtype)
    for i in range(kernel_h):
        for j in range(kernel_w):
            grad_x[window_pixels(i, j, grad_windows.shape, stride)] += grad_windows[..., i, j]
    return grad_x


class Conv2dOp(Function):
    """out[n, o] = bias[o] + sum over c, i, j of weight[o, c, i, j] * x_padded[n, c, s*p + i, s*q + j].

    x (N, C, H, W), weight (O, C, kh, kw), bias (O,) or absent; stride (sh, sw), padding (ph, pw)
    zeros on each side -> out (N, O, OH, OW), OH = (H + 2 ph - kh) // sh + 1, as torch.nn.functional.conv2d.
    With cols (K, P * N) the im2col matrix (one column per window) and W = weight as a matrix (O, K):
        forward         out = W @ cols + bias                         (O, K) @ (K, P*N)
        d loss/d weight = grad_out @ cols^T: the input correlated with grad_out
        d loss/d bias   = grad_out summed over the batch and the positions
        d loss/d x      = W^T @ grad_out, each window's gradient added back to its pixels (col2im);
                          for stride 1 this is the full convolution of grad_out with the flipped kernel
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None, stride=(1, 1), padding=(0, 0)):
        batch, channels = x.shape[:2]
        out_channels, _, kernel_h, kernel_w = weight.shape
        pad_h, pad_w = padding
        if pad_h or pad_w or x.strides[0] != x.itemsize:
            # the (padded) input batch-innermost, in one copy: images arrive batch-outermost, and
            # im2col then gathers numbers 3 KB apart; from this layout it copies whole rows of the
            # batch (measured 273 -> 88 µs for the first convolution of LeNet at batch 64)
            padded = batch_innermost_zeros((batch, channels, x.shape[2] + 2 * pad_h, x.shape[3] + 2 * pad_w), x.dtype)
            padded[:, :, pad_h : pad_h + x.shape[2], pad_w : pad_w + x.shape[3]] = x
            x = padded
        windows = windows_of(x, (kernel_h, kernel_w), stride)  # (N, C, OH, OW, kh, kw), a view
        out_h, out_w = windows.shape[2:4]
        # im2col, the one copy: (C, kh, kw, OH, OW, N) -> (K, P * N). In this layout every matrix
        # product of forward and backward is one plain 2-D product of contiguous matrices, the
        # case BLAS is fastest at (measured: 2-10x faster than batched or transposed layouts)
        cols = windows.transpose(1, 4, 5, 2, 3, 0).reshape(channels * kernel_h * kernel_w, out_h * out_w * batch)  # not -1: N = 0 too
        out = weight.reshape(out_channels, -1) @ cols  # (O, K) @ (K, P * N) -> (O, P * N)
        if bias is not None:
            out += bias[:, None]  # (O, 1) broadcasts over the positions and the batch
        ctx.save_for_backward(cols, weight, x.shape)
        # (O, OH, OW, N) -> (N, O, OH, OW): a view, no copy; the batch stays innermost in memory
        return out.reshape(out_channels, out_h, out_w, batch).transpose(3, 0, 1, 2)

    @staticmethod
    def backward(ctx, grad_out):
        cols, weight, padded_shape = ctx.saved
        pad_h, pad_w = ctx.options["padding"]
        batch, out_channels, out_h, out_w = grad_out.shape
        # (N, O, OH, OW) -> (O, P * N), the layout of forward's product (no copy when the gradient
        # arrives batch-innermost, as the ReLU and max-pool after a convolution hand it back)
        grad_matrix = grad_out.transpose(1, 2, 3, 0).reshape(out_channels, out_h * out_w * batch)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_cols = weight.reshape(out_channels, -1).T @ grad_matrix  # (K, O) @ (O, P * N) -> (K, P * N)
            channels, kernel_h, kernel_w = weight.shape[1:]
            # (C, kh, kw, OH, OW, N) -> (N, C, OH, OW, kh, kw): each window's gradient, as a view
            grad_windows = grad_cols.reshape(channels, kernel_h, kernel_w, out_h, out_w, batch).transpose(5, 0, 3, 4, 1, 2)
            grad_x = add_windows_back(grad_windows, padded_shape, ctx.options["stride"])
            if pad_h or pad_w:  # drop the padding (without padding, the array itself: no view to copy later)
                grad_x = grad_x[:, :, pad_h : padded_shape[2] - pad_h, pad_w : padded_shape[3] - pad_w]
        if ctx.needs_input_grad[1]:
            # every window used the same weights, so their gradients add up: a sum over all P * N
            # columns, which is what the product does. Written as (cols @ grad^T)^T so that both
            # operands are contiguous: measured 3-4x faster than grad @ cols^T
            grad_weight = (cols @ grad_matrix.T).T.reshape(weight.shape)  # ((K, P*N) @ (P*N, O))^T -> (O, K)
        if len(ctx.needs_input_grad) > 2 and ctx.needs_input_grad[2]:
            grad_bias = grad_matrix.sum(axis=1)
        return (grad_x, grad_weight, grad_bias)[: len(ctx.needs_input_grad)]


class MaxPool2dOp(Function):
    """out[n, c, p, q] = the largest x[n, c, s*p + i, s*q + j] over the kernel offsets (i, j).

    x (N, C, H, W); kernel (kh, kw), stride (sh, sw) -> out (N, C, OH, OW), OH = (H - kh) // sh + 1.
    No padding: pixels past the last whole window are left out, as in torch's default (ceil_mode=False).
    d loss/d x: each window passes grad_out to the one pixel that was its maximum, and nothing to
    the others. Ties go to the first maximum in the window in row-major order, which is also
    what PyTorch does; where windows overlap, a pixel that is the maximum of several windows
    receives the sum of their gradients.
    Windows that tile the image (kernel == stride, LeNet's 2x2) take a shorter path: the image
    reshaped into its windows, and a mask of the maxima in backward (tiled_windows).
    """

    @staticmethod
    def forward(ctx, x, kernel=(2, 2), stride=(2, 2)):
        kernel_h, kernel_w = kernel
        tiled = tuple(kernel) == tuple(stride)
        # (N, C, OH, OW, kh, kw) views, no copy: the tiles, or the sliding windows
        windows = tiled_windows(x, kernel).transpose(0, 1, 2, 4, 3, 5) if tiled else windows_of(x, kernel, stride)
        # one np.maximum per kernel offset over whole (N, C, OH, OW) blocks (three for 2x2):
        # measured 6x faster than windows.max(axis=...), which reduces a few numbers at a time
        out = windows[..., 0, 0].copy(order="K")  # order="K": keep x's memory layout
        if tiled:
            for offset in range(1, kernel_h * kernel_w):
                np.maximum(out, windows[..., offset // kernel_w, offset % kernel_w], out=out)  # (a NaN wins, as in PyTorch)
            ctx.save_for_backward(x, out)  # both are alive anyway (the graph holds them): no extra memory
            return out
        winner = np.zeros_like(out, dtype=np.int32)  # the offset i * kw + j of each window's maximum
        for offset in range(1, kernel_h * kernel_w):
            candidate = windows[..., offset // kernel_w, offset % kernel_w]
            larger = candidate > out  # strictly larger: a tie keeps the earlier offset
            np.maximum(out, candidate, out=out)  # (a NaN wins, as in PyTorch)
            # offsets only grow, so "the winner becomes `offset` where larger" is this maximum
            np.maximum(winner, larger * np.int32(offset), out=winner)
        ctx.save_for_backward(winner, x.shape)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (kernel_h, kernel_w), stride = ctx.options["kernel"], ctx.options["stride"]
        if tuple(stride) == (kernel_h, kernel_w):
            return tiled_max_backward(*ctx.saved, grad_out, (kernel_h, kernel_w))
        winner, input_shape = ctx.saved
        overlapping = stride[0] < kernel_h or stride[1] < kernel_w
        grad_x = batch_innermost_zeros(input_shape, grad_out.dtype)
        for offset in range(kernel_h * kernel_w):
            # each window's gradient goes to its winning offset only
            pixels = grad_x[window_pixels(offset // kernel_w, offset % kernel_w, grad_out.shape, stride)]
            if overlapping:
                pixels += (winner == offset) * grad_out  # a pixel may win several windows: add up
            else:
                np.multiply(winner == offset, grad_out, out=pixels)  # each pixel is in one window at most
        return grad_x


def tiled_windows(x, kernel):
    """The windows of x (N, C, H, W) that tile it (stride == kernel), as a view (N, C, OH, kh, OW, kw).

    Splitting the height into (OH, kh) and the width into (OW, kw) is a reshape that copies
    nothing; rows and columns past the last whole window are cut off first.
    """
    batch, channels, height, width = x.shape
    (kernel_h, kernel_w) = kernel
    out_h, out_w = height // kernel_h, width // kernel_w
    return x[:, :, : out_h * kernel_h, : out_w * kernel_w].reshape(batch, channels, out_h, kernel_h, out_w, kernel_w)


def tiled_max_backward(x, out, grad_out, kernel):
    """d loss/d x of max-pooling over tiles: grad_out where x is its tile's first maximum, else 0."""
    kernel_h, kernel_w = kernel
    if grad_out.strides != out.strides:
        # a gradient stored batch-outermost (Flatten's backward makes it so) is copied into out's
        # layout first: a block operation over arrays of two layouts was measured 9x slower
        aligned = np.empty_like(out)  # empty_like keeps out's memory layout
        aligned[...] = grad_out
        grad_out = aligned
    # (N, C, OH, kh, OW, kw) == (N, C, OH, 1, OW, 1): True at every maximum of a tile
    is_max = tiled_windows(x, kernel) == out[:, :, :, None, :, None]
    # a tie keeps only its first maximum in row-major order, as PyTorch: an offset stays True only
    # if no earlier offset of its tile was (after a ReLU, tiles of zeros are common)
    seen = is_max[:, :, :, 0, :, 0].copy(order="K")  # order="K": the layout of is_max, for fast ufuncs
    for offset in range(1, kernel_h * kernel_w):
        later = is_max[:, :, :, offset // kernel_w, :, offset % kernel_w]
        np.greater(later, seen, out=later)  # True > False: a maximum that none before it in the tile was
        seen |= later
    grad_x = batch_innermost_zeros(x.shape, grad_out.dtype)
    np.multiply(is_max, grad_out[:, :, :, None, :, None], out=tiled_windows(grad_x, kernel))
    return grad_x
