"""Fused ops: ops that could be composed from ops.py's primitives, fused into one Function for
speed and numerical stability (docs/architecture.md, "Why the fused ops").

SoftmaxOp, LogSoftmaxOp and CrossEntropy share one max-shifted log-sum-exp (`shifted_exp`), so logits
of 1000 never overflow. LinearOp is x @ weight^T + bias in one graph node instead of three.
CrossEntropy is log-softmax and the negative log-likelihood in one, whose gradient
softmax - onehot needs no log and no epsilon. Each is tested against numpy and central
differences (tests/test_ops.py).
"""

from __future__ import annotations

import numpy as np

from .function import Function


def shifted_exp(x, axis):
    """x - max, e^(x - max) and its sum along `axis` (kept for broadcasting): log-sum-exp's parts.

    log sum e^x = max + log sum e^(x - max). Subtracting the max first keeps every e^(x - max) in
    (0, 1], so logits of 1000 do not overflow, and makes the sum >= 1, so its log is finite.
    Then log softmax(x) = (x - max) - log(sum) and softmax(x) = e^(x - max) / sum.
    """
    if x.size == 0:  # an empty tensor has no max to subtract; its softmax is empty too, as in PyTorch
        return x.copy(), x.copy(), np.ones_like(x.sum(axis=axis, keepdims=True))
    shifted = x - x.max(axis=axis, keepdims=True)
    exp_shifted = np.exp(shifted)
    return shifted, exp_shifted, exp_shifted.sum(axis=axis, keepdims=True)


class SoftmaxOp(Function):
    """out_i = e^x_i / sum_j e^x_j.   d loss/d x = out * (grad_out - sum(grad_out * out))."""

    @staticmethod
    def forward(ctx, x, axis=-1):
        shifted, _, sum_exp = shifted_exp(x, axis)
        out = np.exp(shifted - np.log(sum_exp))
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (out,) = ctx.saved
        return out * (grad_out - (grad_out * out).sum(axis=ctx.options["axis"], keepdims=True))


class LogSoftmaxOp(Function):
    """out_i = x_i - log sum_j e^x_j.   d loss/d x = grad_out - softmax(x) * sum(grad_out)."""

    @staticmethod
    def forward(ctx, x, axis=-1):
        shifted, _, sum_exp = shifted_exp(x, axis)
        out = shifted - np.log(sum_exp)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (out,) = ctx.saved
        return grad_out - np.exp(out) * grad_out.sum(axis=ctx.options["axis"], keepdims=True)


class LinearOp(Function):
    """out = x @ weight^T + bias, with weight shaped (out_features, in_features) as in PyTorch.

    d loss/d x = grad_out @ weight,  d loss/d weight = grad_out^T @ x,  d loss/d bias = sum of
    grad_out over the batch. One fused op instead of MatMul, Transpose and Add: three times fewer
    graph nodes, no transposed copies, and no gradient for x when x is the input data.
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        # the shapes are checked where a user passes them: F.linear and nn.Linear
        ctx.save_for_backward(x, weight)
        out = x @ weight.T  # (batch, in) @ (in, out) -> (batch, out)
        if bias is not None:
            out += bias  # in place: `out` is a fresh array, so this saves an allocation
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved
        # flatten any leading axes into one batch axis: (..., features) -> (batch, features)
        grad_2d = grad_out.reshape(-1, grad_out.shape[-1])
        needs = ctx.needs_input_grad
        grad_x = (grad_out @ weight) if needs[0] else None  # (batch, out) @ (out, in) -> (batch, in)
        grad_weight = (grad_2d.T @ x.reshape(len(grad_2d), x.shape[-1])) if needs[1] else None  # (out, in)
        if len(needs) == 2:
            return grad_x, grad_weight
        grad_bias = grad_2d.sum(axis=0) if needs[2] else None  # (out,)
        return grad_x, grad_weight, grad_bias


class CrossEntropy(Function):
    """loss = mean over the batch of -log softmax(logits)[target], for class indices `targets` (N,).

    forward:  log-sum-exp with the row maximum subtracted, so logits of +-1000 stay finite.
    backward: d loss/d logits = (softmax(logits) - onehot(target)) / N. No log, no epsilon.
    """

    @staticmethod
    def forward(ctx, logits, targets):
        count = logits.shape[0]
        shifted, probs, sum_exp = shifted_exp(logits, axis=1)  # (N, C), (N, C), (N, 1)
        probs /= sum_exp  # softmax, in place: e^(x - max) is a fresh array
        rows, labels = np.arange(count), targets.astype(np.intp)
        # log softmax at the label only, shifted - log(sum), without the other N x (C - 1) entries;
        # the mean over no examples is NaN, as PyTorch's (and numpy's, without its warning)
        loss = (np.log(sum_exp[:, 0]) - shifted[rows, labels]).sum() / count if count else np.nan  # -log p
        ctx.save_for_backward(probs, rows, labels)
        return np.asarray(loss, dtype=logits.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        probs, rows, labels = ctx.saved
        grad_logits = probs.copy()
        grad_logits[rows, labels] -= 1  # softmax - onehot
        grad_logits *= grad_out / max(len(rows), 1)  # the loss is a mean over the N rows (none: nothing to scale)
        return grad_logits, None


class NormalizeOp(Function):
    """out = (x - mean) / sqrt(var + eps), mean and (biased) var over `axes`: the heart of BatchNorm,
    LayerNorm and GroupNorm, whose affine weight and bias are then an ordinary multiply and add.

    d loss/d x = (g - mean(g) - out * mean(g * out)) / sqrt(var + eps), g = grad_out, means over `axes`:
    every x_i also moves the mean and the variance that every output used (docs/exercises.md,
    exercise 7, derives it). Fused because the composite of mean, subtract, square, mean, add, sqrt
    and divide took 16.5 ms for a forward and backward of a (64, 16, 24, 24) batch against 7.7 ms
    for this op with the affine step composed after it (tests check it against that composite).
    """

    @staticmethod
    def forward(ctx, x, axes=(0,), eps=1e-5):
        centered = x - x.mean(axis=axes, keepdims=True)
        inv_std = 1 / np.sqrt((centered * centered).mean(axis=axes, keepdims=True) + x.dtype.type(eps))
        out = centered * inv_std  # in x's memory layout (elementwise ops keep it)
        ctx.save_for_backward(out, inv_std)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        out, inv_std = ctx.saved
        axes = ctx.options["axes"]
        mean_grad = grad_out.mean(axis=axes, keepdims=True)  # the mean's path
        mean_grad_out = (grad_out * out).mean(axis=axes, keepdims=True)  # the variance's path
        return (grad_out - mean_grad - out * mean_grad_out) * inv_std
