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
from .tensor import Tensor


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


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """2-D convolution (cross-correlation, as in PyTorch) of x (N, C, H, W) with weight (O, C, kh, kw).

    bias (O,) or None; stride and padding an int or a (height, width) pair; padding adds zeros on
    each side. Returns (N, O, OH, OW) with OH = (H + 2 padding - kh) // stride + 1.
    """
    stride, padding = as_pair(stride, "stride", "conv2d", 1), as_pair(padding, "padding", "conv2d", 0)
    if weight.ndim != 4:
        raise ValueError(f"conv2d expects weight (out_channels, in_channels, kh, kw); got {weight.shape}")
    out_channels, channels, kernel_h, kernel_w = weight.shape
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(_image_batch_hint("conv2d", x.shape, channels))
    if bias is not None and bias.shape != (out_channels,):
        raise ValueError(f"conv2d expects bias ({out_channels},), one per output channel; got {bias.shape}")
    padded = (x.shape[2] + 2 * padding[0], x.shape[3] + 2 * padding[1])
    if padded[0] < kernel_h or padded[1] < kernel_w:
        raise ValueError(
            f"conv2d: the kernel ({kernel_h}, {kernel_w}) is larger than the input {tuple(x.shape[2:])} "
            f"padded to {padded}; use a smaller kernel, more padding, or a larger image"
        )
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return Conv2dOp.apply(*inputs, stride=stride, padding=padding)


def max_pool2d(x, kernel_size, stride=None):
    """The maximum of each kernel_size window of x (N, C, H, W), windows `stride` apart (default kernel_size).

    No padding. The gradient goes to each window's maximum; among equal values, to the first in
    row-major order (as in PyTorch).
    """
    kernel = as_pair(kernel_size, "kernel_size", "max_pool2d", 1)
    stride = kernel if stride is None else as_pair(stride, "stride", "max_pool2d", 1)
    if x.ndim != 4:
        raise ValueError(_image_batch_hint("max_pool2d", x.shape, None))
    if x.shape[2] < kernel[0] or x.shape[3] < kernel[1]:
        raise ValueError(f"max_pool2d: the window {kernel} is larger than the input {tuple(x.shape[2:])}")
    return MaxPool2dOp.apply(x, kernel=kernel, stride=stride)


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
