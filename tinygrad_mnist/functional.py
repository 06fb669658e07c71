"""Functions on tensors that layers and losses are built from (`import tinygrad_mnist.functional as F`).

Each checks what a user can get wrong (shapes, label values) and then calls one op (ops.py, fused.py),
so a mistake is reported here, in terms of your tensors, not deep inside numpy.
"""

from __future__ import annotations

import math

import numpy as np

from . import fused, ops
from .conv import Conv2dOp, MaxPool2dOp
from .randomness import default_generator
from .tensor import Tensor, cat, stack


def linear(x, weight, bias=None):
    """x @ weight^T + bias.   x: (batch, in), weight: (out, in), bias: (out,) -> (batch, out).

    The one check of a linear layer's input (`nn.Linear` calls this): a weight (out, in) is a
    Linear(in, out), and the message says so, with the reshape that fixes flat-able images.
    """
    shape = x.shape if isinstance(x, Tensor) else np.shape(x)  # np.shape(tensor) costs 1 µs, 10 times more
    if shape[-1:] != weight.shape[1:]:
        if weight.ndim != 2:
            raise ValueError(f"linear expects weight (out_features, in_features); got {weight.shape}")
        out_features, in_features = weight.shape
        fix = f"its last axis must be {in_features}"
        if len(shape) > 2 and math.prod(shape[1:]) == in_features:
            fix = f"flatten it to ({shape[0]}, {in_features}) first"
        raise ValueError(f"Linear({in_features}, {out_features}) got input of shape {shape}; {fix}")
    if bias is None:
        return fused.LinearOp.apply(x, weight)
    if bias.shape != weight.shape[:1]:
        raise ValueError(f"linear: bias of shape {bias.shape} does not fit weight of shape {weight.shape}; it must be {weight.shape[:1]}")
    return fused.LinearOp.apply(x, weight, bias)


def relu(x):
    """max(x, 0) elementwise."""
    return ops.ReLUOp.apply(x)


def leaky_relu(x, negative_slope=0.01):
    """x where x > 0, negative_slope * x elsewhere. The one check of the slope (`nn.LeakyReLU` calls this)."""
    try:
        finite = math.isfinite(negative_slope)
    except TypeError:
        finite = False
    if not finite:
        raise ValueError(f"leaky_relu: negative_slope must be a finite number, got {negative_slope!r}")
    return ops.LeakyReLUOp.apply(x, negative_slope=negative_slope)


def softmax(x, axis=-1):
    """e^x / sum(e^x) along `axis`, computed stably (max subtracted)."""
    return x.softmax(axis)


def log_softmax(x, axis=-1):
    """x - log sum(e^x) along `axis`, computed stably (max subtracted)."""
    return x.log_softmax(axis)


def cross_entropy(logits, targets):
    """Mean cross-entropy of raw scores `logits` (N, C) against `targets`.

    targets: class indices, shaped (N,), as an integer ndarray, a list or a Tensor; or a Tensor or
    array of probabilities shaped (N, C), one distribution per row.
    For class indices the loss is one fused op (fused.CrossEntropy): stable log-sum-exp forward,
    gradient (softmax(logits) - onehot) / N; for probabilities it is -(targets * log_softmax(logits))
    summed and divided by N. Pass raw logits, not probabilities: the softmax is inside.
    """
    if not isinstance(logits, Tensor):
        logits = Tensor(logits)
    if logits.ndim != 2:
        raise ValueError(
            f"cross_entropy expects logits shaped (batch, classes), got {logits.shape}; "
            f"for one example use logits.reshape(1, -1)"
        )
    count, classes = logits.shape
    target_array = targets.data if isinstance(targets, Tensor) else np.asarray(targets)
    if target_array.shape == logits.shape:  # one probability distribution per row
        if target_array.dtype.kind not in "biuf":
            raise TypeError(f"cross_entropy targets must be numbers, not {target_array.dtype}")
        if not isinstance(targets, Tensor):
            targets = Tensor(target_array, dtype=logits.dtype)
        total = -(targets * logits.log_softmax(axis=1)).sum()
        return total / count if count and classes else total * np.nan  # a mean of nothing is NaN, as in PyTorch
    if target_array.shape != (count,):
        raise ValueError(
            f"cross_entropy targets must be class indices shaped ({count},) or probabilities shaped "
            f"{logits.shape}; got shape {target_array.shape}"
        )
    kind = target_array.dtype.kind
    if kind not in "biuf" or (kind == "f" and not np.array_equal(target_array, np.round(target_array))):
        raise TypeError(f"cross_entropy class indices must be whole numbers, got {target_array.dtype} values")
    if count == 0:  # an empty batch: the mean over no examples is NaN, as in PyTorch
        return fused.CrossEntropy.apply(logits, Tensor(target_array.astype(logits.dtype)))
    # unsigned labels (MNIST's are uint8) cannot be negative: one pass over them is enough
    lowest = 0 if kind in "bu" else target_array.min()
    if lowest < 0 or target_array.max() >= classes:
        raise ValueError(
            f"cross_entropy class indices must lie in 0..{classes - 1} for {classes} classes; "
            f"got values from {target_array.min()} to {target_array.max()}"
        )
    # class indices travel as a constant input, so the graph shows where the labels came in
    return fused.CrossEntropy.apply(logits, Tensor(target_array.astype(logits.dtype)))


def mse_loss(prediction, target):
    """mean((prediction - target)^2)."""
    return ((prediction - target) ** 2).mean()


# ----- convolutions, pooling, dropout (the ops live in conv.py) ---------------------------------

def as_pair(value, name, function, minimum):
    """An int or a pair of ints, each at least `minimum` -> a tuple (for height, for width).

    The one check of a kernel size, stride or padding; `function` and `name` say whose, in the message.
    """
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value) if np.iterable(value) else (value,)
    if len(pair) != 2 or not all(isinstance(item, (int, np.integer)) and item >= minimum for item in pair):
        raise ValueError(f"{function}: {name} must be an int >= {minimum} or a pair of them, got {value!r}")
    return tuple(int(item) for item in pair)


def _image_batch_hint(function, shape, channels):
    """The one-line error for an input that is not (N, C, H, W) (with C=channels, unless None), and the reshape that fixes it."""
    message = f"{function} expects input (N, C, H, W)" + (f" with C={channels} channels" if channels else "") + f"; got {shape}"
    channels = channels or 1  # a pooling layer takes any number of channels: suggest one
    side = int(round((shape[-1] / channels) ** 0.5)) if len(shape) == 2 and shape[-1] % channels == 0 else 0
    if len(shape) == 2 and side * side * channels == shape[-1]:
        return message + f": reshape to ({shape[0]}, {channels}, {side}, {side})"
    if len(shape) == 3 and channels == 1:
        return message + f": reshape to ({shape[0]}, 1, {shape[1]}, {shape[2]})"
    return message


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as in PyTorch) of x (N, C, H, W) with weight (O, C / groups, kh, kw).

    bias (O,) or None; stride, padding and dilation an int or a (height, width) pair; padding adds
    zeros on each side, or is "valid" (none) or "same" (the output keeps the input's size, stride 1;
    an odd total puts the extra row on the bottom, as PyTorch). Returns (N, O, OH, OW) with
    OH = (H + 2 padding - dilation (kh - 1) - 1) // stride + 1. Built on conv.Conv2dOp: dilation as
    a kernel with dilation - 1 zeros between its taps, groups as one convolution per channel group.
    """
    stride, dilation = as_pair(stride, "stride", "conv2d", 1), as_pair(dilation, "dilation", "conv2d", 1)
    if weight.ndim != 4:
        raise ValueError(f"conv2d expects weight (out_channels, in_channels / groups, kh, kw); got {weight.shape}")
    if not isinstance(groups, (int, np.integer)) or groups < 1 or weight.shape[0] % groups:
        raise ValueError(f"conv2d: groups must be a positive int dividing the {weight.shape[0]} output channels, got {groups!r}")
    out_channels, group_channels, kernel_h, kernel_w = weight.shape
    channels = group_channels * groups
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(_image_batch_hint("conv2d", x.shape, channels))
    if bias is not None and bias.shape != (out_channels,):
        raise ValueError(f"conv2d expects bias ({out_channels},), one per output channel; got {bias.shape}")
    span = (dilation[0] * (kernel_h - 1) + 1, dilation[1] * (kernel_w - 1) + 1)  # the dilated kernel's size
    before, after = _conv_padding(padding, span, stride)
    padded = (x.shape[2] + before[0] + after[0], x.shape[3] + before[1] + after[1])
    if padded[0] < span[0] or padded[1] < span[1]:
        raise ValueError(
            f"conv2d: the kernel {span} is larger than the input {tuple(x.shape[2:])} "
            f"padded to {padded}; use a smaller kernel, more padding, or a larger image"
        )
    if before != after:  # "same" with an even kernel: the extra zeros go below and right
        x = _pad(x, (0, after[0] - before[0]), (0, after[1] - before[1]), 0.0)
    if dilation != (1, 1):
        weight = _dilated(weight, dilation)
    if groups == 1:
        inputs = (x, weight) if bias is None else (x, weight, bias)
        return Conv2dOp.apply(*inputs, stride=stride, padding=before)
    outputs = []
    per_group = out_channels // groups
    for group in range(groups):  # each group of output channels sees its own group of input channels
        taken, made = slice(group * group_channels, (group + 1) * group_channels), slice(group * per_group, (group + 1) * per_group)
        inputs = (x[:, taken], weight[made]) + (() if bias is None else (bias[made],))
        outputs.append(Conv2dOp.apply(*inputs, stride=stride, padding=before))
    return cat(outputs, axis=1)


def _conv_padding(padding, span, stride):
    """conv2d's padding as (top, left) and (bottom, right): an int, a pair, "valid" or "same"."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding != "same":
            raise ValueError(f'conv2d: padding must be an int, a pair, "valid" or "same", got {padding!r}')
        if stride != (1, 1):
            raise ValueError(f'conv2d: padding="same" needs stride 1 (as in PyTorch), got stride {stride}')
        total = (span[0] - 1, span[1] - 1)
        return (total[0] // 2, total[1] // 2), (total[0] - total[0] // 2, total[1] - total[1] // 2)
    padding = as_pair(padding, "padding", "conv2d", 0)
    return padding, padding


def _dilated(weight, dilation):
    """weight (O, C, kh, kw) with dilation - 1 zeros between neighbouring taps: (O, C, d (kh - 1) + 1, ...)."""
    out_channels, channels, kernel_h, kernel_w = weight.shape
    rows, cols = dilation
    spread = weight.reshape(out_channels, channels, kernel_h, 1, kernel_w, 1)
    zeros = np.zeros((out_channels, channels, kernel_h, rows - 1, kernel_w, 1), dtype=weight.dtype)
    spread = cat([spread, zeros], axis=3)  # (O, C, kh, rows, kw, 1): each tap followed by its zeros
    zeros = np.zeros((out_channels, channels, kernel_h, rows, kernel_w, cols - 1), dtype=weight.dtype)
    spread = cat([spread, zeros], axis=5).reshape(out_channels, channels, kernel_h * rows, kernel_w * cols)
    return spread[:, :, : rows * (kernel_h - 1) + 1, : cols * (kernel_w - 1) + 1]  # no zeros after the last tap


def _pad(x, rows, cols, value):
    """x (N, C, H, W) with (top, bottom) rows and (left, right) columns of `value` around it (a cat)."""
    batch, channels, height, width = x.shape
    if rows != (0, 0):
        x = cat([np.full((batch, channels, rows[0], width), value, x.dtype), x,
                 np.full((batch, channels, rows[1], width), value, x.dtype)], axis=2)
    if cols != (0, 0):
        x = cat([np.full((batch, channels, x.shape[2], cols[0]), value, x.dtype), x,
                 np.full((batch, channels, x.shape[2], cols[1]), value, x.dtype)], axis=3)
    return x


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution of x (N, C, L) with weight (O, C / groups, k), as torch.nn.functional.conv1d:
    conv2d on images of height 1. padding an int, "valid" or "same". Returns (N, O, OL)."""
    if weight.ndim != 3:
        raise ValueError(f"conv1d expects weight (out_channels, in_channels / groups, k); got {weight.shape}")
    if x.ndim != 3:
        raise ValueError(f"conv1d expects input (N, C, L); got {x.shape}")
    for name, value in (("stride", stride), ("dilation", dilation)) + ((("padding", padding),) if not isinstance(padding, str) else ()):
        if not isinstance(value, (int, np.integer)):
            raise ValueError(f"conv1d: {name} must be an int, got {value!r}")
    padding = padding if isinstance(padding, str) else (0, padding)
    out = conv2d(x.unsqueeze(2), weight.unsqueeze(2), bias, stride=(1, stride), padding=padding,
                 dilation=(1, dilation), groups=groups)  # (N, C, 1, L) -> (N, O, 1, OL)
    return out.squeeze(2)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """The maximum of each kernel_size window of x (N, C, H, W), windows `stride` apart (default kernel_size),
    as torch.nn.functional.max_pool2d.

    padding: -inf added on each side (at most half the kernel); dilation: the window's taps that far
    apart; ceil_mode: a last, partial window where floor would drop it. The gradient goes to each
    window's maximum; among equal values, to the first in row-major order (as in PyTorch). Built on
    conv.MaxPool2dOp: padding and ceil_mode as -inf rows and columns, dilation as a pool over the
    windows' taps laid side by side.
    """
    kernel = as_pair(kernel_size, "kernel_size", "max_pool2d", 1)
    stride = kernel if stride is None else as_pair(stride, "stride", "max_pool2d", 1)
    padding, dilation = as_pair(padding, "padding", "max_pool2d", 0), as_pair(dilation, "dilation", "max_pool2d", 1)
    if x.ndim != 4:
        raise ValueError(_image_batch_hint("max_pool2d", x.shape, None))
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"max_pool2d: padding {padding} must be at most half the kernel {kernel}, as in PyTorch")
    span = (dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1)
    sizes = [_pool_output_size(x.shape[2 + axis], span[axis], stride[axis], padding[axis], ceil_mode) for axis in (0, 1)]
    if min(sizes) < 1:
        raise ValueError(f"max_pool2d: the window {span} is larger than the input {tuple(x.shape[2:])} padded by {padding}")
    # the right and bottom padding the last window needs: more than `padding` only with ceil_mode
    after = [max(padding[axis], (sizes[axis] - 1) * stride[axis] + span[axis] - x.shape[2 + axis] - padding[axis]) for axis in (0, 1)]
    if padding != (0, 0) or after != [0, 0]:
        x = _pad(x, (padding[0], after[0]), (padding[1], after[1]), -np.inf)
    if dilation == (1, 1):
        return MaxPool2dOp.apply(x, kernel=kernel, stride=stride)
    # each window's kh * kw taps, side by side: tap (i, j) of every window is one strided slice
    taps = [x[:, :, i * dilation[0] : i * dilation[0] + stride[0] * (sizes[0] - 1) + 1 : stride[0],
              j * dilation[1] : j * dilation[1] + stride[1] * (sizes[1] - 1) + 1 : stride[1]]
            for i in range(kernel[0]) for j in range(kernel[1])]  # each (N, C, OH, OW)
    taps = stack(taps, axis=4)  # (N, C, OH, OW, kh * kw), taps in row-major order
    count = kernel[0] * kernel[1]
    side_by_side = taps.reshape(x.shape[0], x.shape[1], sizes[0], sizes[1] * count)
    return MaxPool2dOp.apply(side_by_side, kernel=(1, count), stride=(1, count))  # first maximum wins ties


def _pool_output_size(size, span, stride, padding, ceil_mode):
    """PyTorch's pooling output size: floor, or with ceil_mode ceil, but no window may start in the right padding."""
    room = size + 2 * padding - span
    if not ceil_mode:
        return room // stride + 1
    count = -(-room // stride) + 1
    return count - 1 if (count - 1) * stride >= size + padding else count


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """The mean of each kernel_size window of x (N, C, H, W), windows `stride` apart (default kernel_size);
    padding adds zeros that count in the mean (PyTorch's count_include_pad=True). A composite: every
    channel convolved with a kernel of ones (conv.Conv2dOp), divided by kh * kw."""
    kernel = as_pair(kernel_size, "kernel_size", "avg_pool2d", 1)
    stride = kernel if stride is None else as_pair(stride, "stride", "avg_pool2d", 1)
    padding = as_pair(padding, "padding", "avg_pool2d", 0)
    if x.ndim != 4:
        raise ValueError(_image_batch_hint("avg_pool2d", x.shape, None))
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"avg_pool2d: padding {padding} must be at most half the kernel {kernel}, as in PyTorch")
    if x.shape[2] + 2 * padding[0] < kernel[0] or x.shape[3] + 2 * padding[1] < kernel[1]:
        raise ValueError(f"avg_pool2d: the window {kernel} is larger than the input {tuple(x.shape[2:])} padded by {padding}")
    batch, channels = x.shape[:2]
    ones = np.ones((1, 1) + kernel, dtype=x.dtype)  # a constant kernel: summing, not learning
    sums = Conv2dOp.apply(x.reshape(batch * channels, 1, *x.shape[2:]), ones, stride=stride, padding=padding)
    return sums.reshape(batch, channels, *sums.shape[2:]) / (kernel[0] * kernel[1])


def adaptive_avg_pool2d(x, output_size):
    """x (N, C, H, W) averaged down to (N, C, *output_size): (1, 1) is the mean of each channel (global
    average pooling); other sizes must divide H and W (then it is avg_pool2d with kernel H / oh)."""
    size = as_pair(output_size, "output_size", "adaptive_avg_pool2d", 1)
    if x.ndim != 4:
        raise ValueError(_image_batch_hint("adaptive_avg_pool2d", x.shape, None))
    if size == (1, 1):
        return x.mean(axis=(2, 3), keepdims=True)
    if x.shape[2] % size[0] or x.shape[3] % size[1]:
        raise ValueError(f"adaptive_avg_pool2d: output size {size} must divide the input's {tuple(x.shape[2:])} "
                         "here (uneven windows are not built)")
    kernel = (x.shape[2] // size[0], x.shape[3] // size[1])
    return avg_pool2d(x, kernel)


def dropout(x, p=0.5, training=True, generator=None):
    """Inverted dropout: in training, zero each element with probability p and scale the rest by 1 / (1 - p).

    The scaling keeps every element's expected value, so evaluation (training=False) is the
    identity. The one check of p (`nn.Dropout` calls this). Draws: in training with 0 < p < 1, one
    mask from `generator` (a numpy Generator), or when None from the library's generator that
    `manual_seed` seeds. A composite, x * mask, so its gradient is grad_out * mask: dropped
    elements get no gradient.
    """
    if not (isinstance(p, (int, float, np.integer, np.floating)) and 0 <= p <= 1):
        raise ValueError(f"dropout probability p must lie in [0, 1], got {p!r}")
    if not training or p == 0:
        return x
    if p == 1:
        mask = np.zeros(x.shape, dtype=x.dtype)  # everything dropped (1 / (1 - p) would divide by 0)
    else:
        keep = (default_generator if generator is None else generator).random(x.shape, dtype=np.float32) >= p
        mask = keep * np.asarray(1 / (1 - p), dtype=x.dtype)  # 0 or 1 / (1 - p), in x's dtype
    return x * mask


# ----- normalization, embedding, GELU -----------------------------------------------------------

def _affine(x, weight, bias, shape):
    """x * weight + bias, the parameters reshaped to `shape` to broadcast (either may be None)."""
    if weight is not None:
        x = x * weight.reshape(shape)
    if bias is not None:
        x = x + bias.reshape(shape)
    return x


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Batch normalization of x (N, C, ...) per channel C, as torch.nn.functional.batch_norm.

    training: normalize with the batch's mean and biased variance over every axis but C
    (fused.NormalizeOp) and, where running_mean / running_var are arrays, move them in place:
    running = (1 - momentum) running + momentum batch value, the variance kept unbiased (/ (n - 1)).
    Not training: normalize with running_mean and running_var. Then weight * x_hat + bias per channel.
    """
    if x.ndim < 2:
        raise ValueError(f"batch_norm expects input (N, C) or (N, C, ...), got {x.shape}")
    channels = x.shape[1]
    for name, value in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)):
        if value is not None and np.shape(value) != (channels,):
            raise ValueError(f"batch_norm: {name} has shape {np.shape(value)}; it must be ({channels},), one per channel")
    shape = (1, channels) + (1,) * (x.ndim - 2)
    axes = (0,) + tuple(range(2, x.ndim))
    if training:
        count = x.size // channels
        if count < 2:
            raise ValueError(f"batch_norm in training needs more than one value per channel, got input {x.shape}; "
                             "use a larger batch, or eval()")
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += (momentum * x.data.mean(axis=axes)).astype(running_mean.dtype)
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += (momentum * x.data.var(axis=axes, ddof=1)).astype(running_var.dtype)
        return _affine(fused.NormalizeOp.apply(x, axes=axes, eps=eps), weight, bias, shape)
    if running_mean is None or running_var is None:
        raise ValueError("batch_norm without training needs running_mean and running_var")
    inv_std = (1 / np.sqrt(running_var.astype(x.dtype) + x.dtype.type(eps))).reshape(shape)
    return _affine((x - running_mean.astype(x.dtype).reshape(shape)) * inv_std, weight, bias, shape)


def _normalized_axes(function, x, normalized_shape):
    """The last axes of x that normalized_shape names, after checking they match."""
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
    if not normalized_shape or x.shape[x.ndim - len(normalized_shape):] != normalized_shape:
        raise ValueError(f"{function}: input of shape {x.shape} does not end in normalized_shape {normalized_shape}")
    return normalized_shape, tuple(range(x.ndim - len(normalized_shape), x.ndim))


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalize each example over its last axes (normalized_shape), as torch.nn.functional.layer_norm:
    (x - mean) / sqrt(var + eps) (fused.NormalizeOp), then weight * x_hat + bias, both shaped normalized_shape."""
    normalized_shape, axes = _normalized_axes("layer_norm", x, normalized_shape)
    return _affine(fused.NormalizeOp.apply(x, axes=axes, eps=eps), weight, bias, normalized_shape)


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalize x (N, C, ...) over each group of C / num_groups channels and the spatial axes, as
    torch.nn.functional.group_norm; then weight * x_hat + bias per channel (C,)."""
    if x.ndim < 2 or x.shape[1] % num_groups:
        raise ValueError(f"group_norm: num_groups {num_groups} must divide the channels of input (N, C, ...), got {x.shape}")
    grouped = x.reshape(x.shape[0], num_groups, -1)  # (N, G, C / G * ...)
    normalized = fused.NormalizeOp.apply(grouped, axes=(2,), eps=eps).reshape(x.shape)
    return _affine(normalized, weight, bias, (1, x.shape[1]) + (1,) * (x.ndim - 2))


def rms_norm(x, normalized_shape, weight=None, eps=None):
    """x / sqrt(mean(x^2) + eps) over the last axes (normalized_shape), times weight, as
    torch.nn.functional.rms_norm; eps None is the dtype's machine epsilon. A composite (no mean to subtract)."""
    normalized_shape, axes = _normalized_axes("rms_norm", x, normalized_shape)
    eps = np.finfo(x.dtype).eps if eps is None else eps
    return _affine(x / ((x * x).mean(axis=axes, keepdims=True) + eps).sqrt(), weight, None, normalized_shape)


def embedding(indices, weight, padding_idx=None):
    """Rows of weight (num_embeddings, dim) picked by whole-number `indices` of any shape:
    (...) -> (..., dim), as torch.nn.functional.embedding. A composite (indexing): a row picked twice
    gets the sum of both gradients. Rows at padding_idx come out as zeros and get no gradient."""
    index = np.asarray(indices.data if isinstance(indices, Tensor) else indices)
    if index.dtype.kind not in "iuf" or (index.dtype.kind == "f" and not np.array_equal(index, np.round(index))):
        raise TypeError(f"embedding indices must be whole numbers, got {index.dtype}")
    index = index.astype(np.intp)
    if index.size and (index.min() < 0 or index.max() >= weight.shape[0]):
        raise IndexError(f"embedding indices must lie in 0..{weight.shape[0] - 1}, got {index.min()}..{index.max()}")
    rows = weight[index]
    if padding_idx is None:
        return rows
    return rows * (index != padding_idx)[..., None].astype(weight.dtype)


def gelu(x, approximate="none"):
    """x Phi(x), Phi the normal CDF, as torch.nn.functional.gelu: approximate="none" is the exact erf form
    (ops.GELUOp), "tanh" the composite 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""
    if approximate == "none":
        return ops.GELUOp.apply(x)
    if approximate != "tanh":
        raise ValueError(f'gelu: approximate must be "none" or "tanh", got {approximate!r}')
    return 0.5 * x * (1 + (math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)).tanh())
