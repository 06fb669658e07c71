"""Functions on tensors that layers and losses are built from (`import tinygrad_mnist.functional as F`).

Each checks what a user can get wrong (shapes, label values) and then calls one op (ops.py, fused.py),
so a mistake is reported here, in terms of your tensors, not deep inside numpy.
"""

from __future__ import annotations

import numpy as np

from . import fused, ops
from .tensor import Tensor


def linear(x, weight, bias=None):
    """x @ weight^T + bias.   x: (batch, in), weight: (out, in), bias: (out,) -> (batch, out)."""
    if np.shape(x)[-1:] != weight.shape[1:]:
        raise ValueError(
            f"linear: input of shape {np.shape(x)} does not fit weight of shape {weight.shape}; "
            f"the input's last axis must be {weight.shape[1]}"
        )
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(f"linear: bias of shape {bias.shape} does not fit weight of shape {weight.shape}; it must be {weight.shape[:1]}")
    if bias is None:
        return fused.Linear.apply(x, weight)
    return fused.Linear.apply(x, weight, bias)


def relu(x):
    """max(x, 0) elementwise."""
    return ops.ReLU.apply(x)


def leaky_relu(x, negative_slope=0.01):
    """x where x > 0, negative_slope * x elsewhere."""
    return ops.LeakyReLU.apply(x, negative_slope=negative_slope)


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
    if count == 0 or classes == 0:
        raise ValueError(f"cross_entropy needs at least one example and one class, got logits of shape {logits.shape}")
    target_array = targets.data if isinstance(targets, Tensor) else np.asarray(targets)
    if target_array.shape == logits.shape:  # one probability distribution per row
        if target_array.dtype.kind not in "biuf":
            raise TypeError(f"cross_entropy targets must be numbers, not {target_array.dtype}")
        if not isinstance(targets, Tensor):
            targets = Tensor(target_array, dtype=logits.dtype)
        return -(targets * logits.log_softmax(axis=1)).sum() / count
    if target_array.shape != (count,):
        raise ValueError(
            f"cross_entropy targets must be class indices shaped ({count},) or probabilities shaped "
            f"{logits.shape}; got shape {target_array.shape}"
        )
    kind = target_array.dtype.kind
    if kind not in "biuf" or (kind == "f" and not np.array_equal(target_array, np.round(target_array))):
        raise TypeError(f"cross_entropy class indices must be whole numbers, got {target_array.dtype} values")
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
