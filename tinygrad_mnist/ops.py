"""The primitive ops. Each is a Function: forward and backward on plain numpy arrays, side by side.

Every backward applies the chain rule: the upstream gradient `grad_out` (d loss / d output) times
the op's local derivative (d output / d input). Nothing here is special: an op you write yourself
looks exactly like these (docs/extending.md). The fused classifier ops are in fused.py.
"""

from __future__ import annotations

import math

import numpy as np

from .function import Function, unbroadcast, unreduce


def _check_broadcast(name, a_shape, b_shape):
    """A clear error for elementwise ops on shapes numpy cannot broadcast together."""
    if a_shape == b_shape:
        return  # the common case, without the cost of np.broadcast_shapes
    try:
        np.broadcast_shapes(a_shape, b_shape)
    except ValueError:
        raise ValueError(f"{name}: shapes {a_shape} and {b_shape} do not broadcast (each axis, counted from the "
                         "right, must be equal or 1); reshape one of them") from None


# ----- arithmetic --------------------------------------------------------------------------------
class Add(Function):
    """out = a + b.   d out/d a = 1,   d out/d b = 1."""

    @staticmethod
    def forward(ctx, a, b):
        _check_broadcast("add", a.shape, b.shape)
        ctx.save_for_backward(a.shape, b.shape)
        return a + b

    @staticmethod
    def backward(ctx, grad_out):
        a_shape, b_shape = ctx.saved
        return unbroadcast(grad_out, a_shape), unbroadcast(grad_out, b_shape)


class Mul(Function):
    """out = a * b.   d out/d a = b,   d out/d b = a."""

    @staticmethod
    def forward(ctx, a, b):
        _check_broadcast("multiply", a.shape, b.shape)
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad_out):
        a, b = ctx.saved
        # chain rule: upstream gradient times the local derivative, summed back over broadcast axes
        return unbroadcast(grad_out * b, a.shape), unbroadcast(grad_out * a, b.shape)


class Div(Function):
    """out = a / b.   d out/d a = 1/b,   d out/d b = -a/b^2 = -out/b."""

    @staticmethod
    def forward(ctx, a, b):
        _check_broadcast("divide", a.shape, b.shape)
        out = a / b
        ctx.save_for_backward(a.shape, b, out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        a_shape, b, out = ctx.saved
        return unbroadcast(grad_out / b, a_shape), unbroadcast(-grad_out * out / b, b.shape)


class Pow(Function):
    """out = x ** p for a number p.   d out/d x = p x^(p-1)."""

    @staticmethod
    def forward(ctx, x, exponent):
        ctx.save_for_backward(x)
        return x**exponent

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved
        exponent = ctx.options["exponent"]
        if exponent == 0:
            return np.zeros_like(x)  # x^0 = 1 is constant (and 0 * 0^-1 would be NaN)
        return grad_out * exponent * x ** (exponent - 1)


class RPow(Function):
    """out = base ** x for a number base (`base ** tensor`).   d out/d x = base^x ln(base).

    0 ** x as in PyTorch (1 at x = 0, gradient 0 for x >= 0). A negative base has a real power only
    at whole x and no real derivative (PyTorch returns NaN): refused instead."""

    @staticmethod
    def forward(ctx, x, base):
        if base < 0 and (ctx.needs_input_grad[0] or not np.array_equal(x, np.round(x))):
            raise ValueError(f"({base}) ** x is not a real number for fractional x and has no real gradient; "
                             "use a positive base, or whole-number x that does not require grad")
        with np.errstate(divide="ignore"):  # 0 ** -1 is inf, as in PyTorch: an answer, not an accident
            out = np.power(x.dtype.type(base), x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (out,) = ctx.saved
        base = ctx.options["base"]
        if base == 0:  # d/dx 0^x: 0 where x >= 0 (out is 0 or 1), -inf where x < 0 (out is inf)
            return grad_out * np.where(np.isinf(out), -np.inf, 0).astype(out.dtype)
        return grad_out * out * out.dtype.type(np.log(base))


class MatMul(Function):
    """out = a @ b.   d loss/d a = grad_out @ b^T,   d loss/d b = a^T @ grad_out.

    As numpy's matmul: a vector is a row on the left, a column on the right; leading axes broadcast.
    """

    @staticmethod
    def forward(ctx, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul needs tensors with at least one axis, got shapes {a.shape} and {b.shape}; "
                             "use * for scalars")
        inner = b.shape[-2 if b.ndim > 1 else 0]  # the axis of b that meets a's last axis
        if a.shape[-1] != inner:
            raise ValueError(f"matmul of shapes {a.shape} and {b.shape}: the first's last axis ({a.shape[-1]}) "
                             f"must equal {inner}")
        _check_broadcast("matmul (leading axes)", a.shape[:-2], b.shape[:-2])
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, grad_out):
        a, b = ctx.saved
        # treat vectors as (1, n) and (n, 1) matrices so one rule covers every case
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        grad2 = grad_out.reshape(np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]) + (a2.shape[-2], b2.shape[-1]))
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = unbroadcast(grad2 @ np.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
        if ctx.needs_input_grad[1]:
            grad_b = unbroadcast(np.swapaxes(a2, -1, -2) @ grad2, b2.shape).reshape(b.shape)
        return grad_a, grad_b


# ----- reductions --------------------------------------------------------------------------------
class Sum(Function):
    """out = sum of x over `axis`.   d out/d x_i = 1: every summed element gets grad_out."""

    @staticmethod
    def forward(ctx, x, axis=None, keepdims=False):
        ctx.save_for_backward(x.shape)
        return x.sum(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx, grad_out):
        (shape,) = ctx.saved
        return np.broadcast_to(unreduce(grad_out, shape, ctx.options["axis"], ctx.options["keepdims"]), shape)


class Max(Function):
    """out = max of x over `axis`.   d out/d x_i = 1/k if x_i is one of k tied maxima (as PyTorch's amax), else 0."""

    @staticmethod
    def forward(ctx, x, axis=None, keepdims=False):
        reduced = range(x.ndim) if axis is None else np.atleast_1d(axis)
        if x.size == 0 and any(x.shape[each] == 0 for each in reduced):  # (0, 3) over axis 1 is (0,), as in PyTorch
            raise ValueError(f"max over an axis of size 0 (a tensor of shape {x.shape}) is undefined; reduce another axis")
        out = x.max(axis=axis, keepdims=True)
        ctx.save_for_backward(x, out)
        return out if keepdims else (out.reshape(()) if axis is None else np.squeeze(out, axis))

    @staticmethod
    def backward(ctx, grad_out):
        x, out = ctx.saved
        axis = ctx.options["axis"]
        is_max = x == out
        ties = is_max.sum(axis=axis, keepdims=True, dtype=x.dtype)  # an integer count would upcast float32
        grad = unreduce(grad_out, x.shape, axis, ctx.options["keepdims"])
        return is_max * (grad / ties)


# ----- elementwise -------------------------------------------------------------------------------
class Exp(Function):
    """out = e^x.   d out/d x = e^x = out."""

    @staticmethod
    def forward(ctx, x):
        out = np.exp(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (out,) = ctx.saved
        return grad_out * out


class Log(Function):
    """out = ln x.   d out/d x = 1/x.   (x <= 0 gives -inf or NaN, as in numpy.)"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.log(x)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved
        return grad_out / x


class ReLUOp(Function):
    """out = max(x, 0).   d out/d x = 1 where x > 0, else 0."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.maximum(x, 0)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved
        return grad_out * (x > 0)


class LeakyReLUOp(Function):
    """out = x where x > 0, else negative_slope * x.   d out/d x = 1 or negative_slope.

    The small slope below zero keeps a gradient flowing through units that a plain ReLU would
    switch off for good ("dead neurons").
    """

    @staticmethod
    def forward(ctx, x, negative_slope=0.01):
        # the slope in x's dtype: a numpy float64 slope would silently turn float32 into float64
        slope = x.dtype.type(negative_slope)
        positive = x > 0
        # d out/d x: 1 where x > 0, slope elsewhere (True counts as 1 and False as 0), exactly.
        # np.where(positive, x, x * slope) gives the same numbers but is 10-20x slower here: it
        # branches on every element, and a mask that is half True at random makes the CPU
        # mispredict half of those branches. Multiplications do not branch.
        local_grad = positive + ~positive * slope
        ctx.save_for_backward(local_grad)
        return x * local_grad  # x where x > 0, slope * x elsewhere

    @staticmethod
    def backward(ctx, grad_out):
        (local_grad,) = ctx.saved
        return grad_out * local_grad


class TanhOp(Function):
    """out = tanh x.   d out/d x = 1 - tanh^2 x = 1 - out^2."""

    @staticmethod
    def forward(ctx, x):
        out = np.tanh(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (out,) = ctx.saved
        return grad_out * (1 - out * out)


class SigmoidOp(Function):
    """out = 1 / (1 + e^-x).   d out/d x = out (1 - out)."""

    @staticmethod
    def forward(ctx, x):
        # exp(-log(1 + e^-x)) written with logaddexp never overflows, even for x = -1000
        out = np.exp(-np.logaddexp(0, -x)).astype(x.dtype, copy=False)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (out,) = ctx.saved
        return grad_out * out * (1 - out)


class Cast(Function):
    """out = x in another float dtype (Tensor.float()).   d out/d x = 1: the engine casts the gradient back."""

    @staticmethod
    def forward(ctx, x, dtype):
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, grad_out):
        return grad_out


# ----- shapes ------------------------------------------------------------------------------------
class Reshape(Function):
    """out = x with a new shape (same elements, same order).   The gradient is reshaped back."""

    @staticmethod
    def forward(ctx, x, shape):
        try:
            out = x.reshape(shape)
        except ValueError:
            raise ValueError(f"cannot reshape a tensor of shape {x.shape} ({x.size} elements) "
                             f"to {tuple(shape)}") from None
        ctx.save_for_backward(x.shape)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (shape,) = ctx.saved
        return grad_out.reshape(shape)


class Transpose(Function):
    """out = x with its axes permuted (reversed by default).   The gradient is permuted back."""

    @staticmethod
    def forward(ctx, x, axes=None):
        return np.transpose(x, axes)

    @staticmethod
    def backward(ctx, grad_out):
        axes = ctx.options["axes"]
        return np.transpose(grad_out, None if axes is None else np.argsort(axes))


class Index(Function):
    """out = x[index] (slices, integers, integer arrays, masks).   Each picked element gets its gradient
    back; an element picked twice gets the sum (np.add.at adds up repeated indices)."""

    @staticmethod
    def forward(ctx, x, index):
        try:
            out = x[index]
        except IndexError as error:
            raise IndexError(f"index {index!r} does not fit a tensor of shape {x.shape}: {error}") from None
        ctx.save_for_backward(x.shape, x.dtype)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        shape, dtype = ctx.saved
        grad = np.zeros(shape, dtype=dtype)
        np.add.at(grad, ctx.options["index"], grad_out)
        return grad


# ----- the toolkit's own ops: what no composite of the ops above computes exactly ----------------
class Cat(Function):
    """out = the inputs joined along `axis`.   Each input's gradient is its slice of grad_out.

    Its own op because none of the ops above makes an array larger than its inputs. Padding is a
    cat with constant blocks (F.max_pool2d pads with -inf that way)."""

    @staticmethod
    def forward(ctx, *arrays, axis=0):
        try:
            out = np.concatenate(arrays, axis=axis)
        except ValueError:
            raise ValueError(f"cat along axis {axis}: shapes {[array.shape for array in arrays]} must agree on "
                             "every other axis") from None
        ctx.save_for_backward(np.cumsum([array.shape[axis] for array in arrays])[:-1])
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (boundaries,) = ctx.saved
        return tuple(np.split(grad_out, boundaries, axis=ctx.options["axis"]))


class Prod(Function):
    """out = the product of x over `axis` (one axis, or all).   d out/d x_i = the product of the others.

    Its own op because exp(sum(log x)) fails for x <= 0 and out / x_i for x_i = 0. The product of
    the others is the product of everything before x_i times everything after it (two cumprods)."""

    @staticmethod
    def forward(ctx, x, axis=None, keepdims=False):
        ctx.save_for_backward(x)
        return x.prod(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved
        axis = ctx.options["axis"]
        flat = x.reshape(-1) if axis is None else np.moveaxis(x, axis, -1)  # the reduced axis last
        ones = np.ones(flat.shape[:-1] + (1,), dtype=x.dtype)
        before = np.cumprod(np.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)  # x_0 ... x_(i-1)
        after = np.cumprod(np.concatenate([ones, flat[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]  # x_(i+1) ...
        others = (before * after).reshape(x.shape) if axis is None else np.moveaxis(before * after, -1, axis)
        return unreduce(grad_out, x.shape, axis, ctx.options["keepdims"]) * others


class Clamp(Function):
    """out = x limited to [min, max] (None: no limit).   d out/d x = 1 where min <= x <= max, else 0.

    Its own op because maximum(x, min) gives half the gradient at x == min, where PyTorch gives 1."""

    @staticmethod
    def forward(ctx, x, min=None, max=None):
        ctx.save_for_backward(x)
        return np.clip(x, min, max)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved
        low, high = ctx.options["min"], ctx.options["max"]
        inside = np.ones(x.shape, dtype=bool)
        if low is not None:
            inside &= x >= low
        if high is not None:
            inside &= x <= high
        return grad_out * inside


_erf = np.frompyfunc(math.erf, 1, 1)  # numpy has no erf; math.erf is exact to double precision


class GELUOp(Function):
    """out = x Phi(x), Phi the normal CDF: 0.5 x (1 + erf(x / sqrt 2)).   d out/d x = Phi(x) + x phi(x).

    Its own op because erf is not among the ops (nor in numpy). math.erf one element at a time is
    exact and slow: 1.2 ms for 64 x 128 numbers, 100 times np.tanh (measured), so F.gelu's
    approximate="tanh", a composite of the ops, is the fast choice."""

    @staticmethod
    def forward(ctx, x):
        cdf = (0.5 * (1.0 + _erf(x / math.sqrt(2.0)))).astype(x.dtype)
        ctx.save_for_backward(x, cdf)
        return x * cdf

    @staticmethod
    def backward(ctx, grad_out):
        x, cdf = ctx.saved
        density = np.exp(-0.5 * x * x) / x.dtype.type(math.sqrt(2 * math.pi))
        return grad_out * (cdf + x * density)
