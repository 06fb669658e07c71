"""The Function base class: the one way an op is defined, built-in or your own (docs/extending.md).

An op subclasses Function with static methods `forward(ctx, ...)` and `backward(ctx, grad_out)` on
plain numpy arrays; `MyOp.apply(tensor, option=value)` runs it on Tensors and links the result to
its inputs for `Tensor.backward()`. The rule for what `backward` may read: arrays from `ctx.saved`
(put there by `ctx.save_for_backward`), forward's keyword arguments from `ctx.options`, defaults included.
"""

from __future__ import annotations

import functools
import inspect

import numpy as np

from . import modes


class Context:
    """What one call of an op remembers for its backward pass.

      saved             the arrays given to `save_for_backward`, a tuple (None once backward() released them)
      options           every keyword argument of forward as this call used it, defaults included
      needs_input_grad  one bool per input: `backward` may return None where it is False
      function, inputs  the Function subclass and the input Tensors (the engine's; read only)
      changes_before    how many in-place changes the library had made when the op ran (in_place_changes)
    """

    def __init__(self, function, inputs, options, needs_input_grad):
        self.function = function
        self.inputs = inputs
        self.options = options
        self.needs_input_grad = needs_input_grad
        self.saved = ()
        self.changes_before = in_place_changes

    def save_for_backward(self, *arrays):
        """Keep arrays for `backward` (read them back as `ctx.saved`); under no_grad, keep nothing."""
        if modes.grad_mode.enabled and any(self.needs_input_grad):  # else no backward will ever read them
            self.saved = arrays

    def __getattr__(self, name):  # only for a name no attribute has: say what PyTorch's is called here
        if name == "saved_tensors":
            raise AttributeError("ctx.saved_tensors is PyTorch's name; here what save_for_backward kept is ctx.saved")
        raise AttributeError(f"'Context' object has no attribute {name!r}")

    def __repr__(self):
        return f"<Context of {self.function.__name__}>"


class Function:
    """Base class of every op: subclasses define `forward` and `backward` as static methods.

    Call an op with `MyOp.apply(*inputs, **options)`: numbers and arrays among the inputs become
    constants of the first Tensor's dtype; options (an axis, a slope) reach forward unchanged.
    """

    @staticmethod
    def forward(ctx, *arrays, **options):
        """The op on plain ndarrays, one per input: return the output; ctx.save_for_backward what backward needs."""
        raise NotImplementedError("a Function subclass must define forward(ctx, *arrays)")

    @staticmethod
    def backward(ctx, grad_out):
        """From grad_out = d loss/d output, return d loss/d input: one array shaped like it (or None) per input."""
        raise NotImplementedError("a Function subclass must define backward(ctx, grad_out)")

    @classmethod
    def apply(cls, *inputs, **options):
        """Run the op on Tensors (arrays, numbers) and return a Tensor linked to its inputs."""
        tensors = _as_tensors(cls, inputs)
        needs_input_grad = tuple(tensor.requires_grad for tensor in tensors)
        ctx = Context(cls, tensors, {**forward_defaults(cls, len(inputs)), **options}, needs_input_grad)

        out = cls.forward(ctx, *[tensor.data for tensor in tensors], **ctx.options)
        if modes.anomaly_enabled:
            modes.check_finite(out, cls, "forward", tensors)

        # reductions return numpy scalars, a custom op may return ints or float16
        out = np.asarray(out)
        if out.dtype not in FLOAT_DTYPES:
            out = out.astype(tensors[0].data.dtype)
        result = type(tensors[0])(out)
        if out.base is not None:  # a view (reshape, transpose, a slice) shares its input's version counter
            _share_version_counter(result, tensors)
        if modes.grad_mode.enabled and any(needs_input_grad):
            result.requires_grad = True
            result._ctx = ctx  # the link backward() follows from this output to its inputs
        return result


# every in-place change the library made, in any tensor (Tensor.add_ and the others count them): a
# clock that only moves forward. A Context keeps its value; a changed tensor is stamped with it.
in_place_changes = 0


FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
BOOL = np.dtype(np.bool_)


@functools.cache  # inspect.signature takes 10-50 µs, more than the op: once per op class and input count
def forward_defaults(function, input_count=0):
    """{name: default} of function.forward's parameters after ctx and `input_count` inputs (shared: read
    only); for forward(ctx, *arrays, axis=0), whatever the count, its keyword-only parameters."""
    parameters = list(inspect.signature(function.forward).parameters.values())[1:]  # after ctx
    variadic = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)
    parameters = [p for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY] if variadic else parameters[input_count:]
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def _is_tensor(item):
    return hasattr(item, "_ctx")  # not isinstance: Tensor's module imports this one (no cycles)


def _as_tensors(function, inputs):
    """The inputs as float Tensors: numbers, arrays and bool tensors (masks) become constants with the
    first float Tensor's dtype (exact for bools, as PyTorch promotes them); bool tensors alone are refused."""
    for item in inputs:
        if not _is_tensor(item) or item.data.dtype is BOOL:
            break
    else:
        return inputs  # all float Tensors, the common case: 1.5 µs less per op, 4% of a 16x128 training step
    like = next((item for item in inputs if _is_tensor(item) and item.data.dtype is not BOOL), None)
    if like is None and any(_is_tensor(item) for item in inputs):
        raise TypeError(f"{function.__name__} computes with float tensors, not bool ones (masks); convert with "
                        ".float() first (or count with .sum(), test with .all() / .any())")
    if like is None:
        raise TypeError(f"{function.__name__}.apply needs at least one Tensor input")
    return tuple(item if _is_tensor(item) and item.data.dtype is not BOOL
                 else type(like)(item.data if _is_tensor(item) else item, dtype=like.data.dtype) for item in inputs)


def _share_version_counter(result, tensors):
    """Give a view of an input's memory that input's version counter (as PyTorch does), so a change of
    either in place is seen by every op that saved the other: w.T in x @ w.T changes with w."""
    for tensor in tensors:
        if result.data.base is tensor.data or result.data.base is tensor.data.base:
            result._version_counter = tensor._version_counter
            return


def unbroadcast(grad, shape):
    """Sum `grad` back down to `shape`, undoing numpy broadcasting: an input of shape (3,) broadcast
    against (4, 3) was used 4 times, so its gradient is the sum of the 4 rows of `grad`."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    # axes that broadcasting added in front, plus axes where the input had size 1
    axes = tuple(range(extra)) + tuple(
        extra + i for i, size in enumerate(shape) if size == 1 and grad.shape[extra + i] != 1
    )
    return grad.sum(axis=axes, keepdims=True).reshape(shape)


def unreduce(grad, input_shape, axis, keepdims):
    """Put back the axes a reduction removed (as size 1), so `grad` broadcasts to `input_shape`: an
    input (4, 3) summed over axis 1 has a gradient (4,), which becomes (4, 1), one value per row."""
    if keepdims or len(input_shape) == 0:  # no axis was removed (a 0-d tensor has none to lose)
        return grad
    if axis is None:
        return grad.reshape((1,) * len(input_shape))
    return np.expand_dims(grad, axis)
