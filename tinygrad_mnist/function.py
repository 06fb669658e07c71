"""The Function base class: the one way an op is defined, built-in or your own.

An op is a subclass with two static methods that work on plain numpy arrays:

    class Square(Function):
        '''out = x ** 2.   d out/d x = 2 x.'''

        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad_out):
            (x,) = ctx.saved
            return grad_out * 2 * x

    y = Square.apply(t)          # t is a Tensor; y is a Tensor that remembers how it was made

`apply` unwraps the input tensors, runs `forward`, wraps the result, and (when a gradient is
needed) keeps the context as the link from the output back to its inputs. `Tensor.backward()`
later walks those links and calls each op's `backward`.

The rule for what `backward` may read: arrays from `ctx.saved` (put there by
`ctx.save_for_backward`), and forward's keyword arguments from `ctx.options`, which holds every
one of them as the call used it, defaults included.
"""

from __future__ import annotations

import functools
import inspect

import numpy as np

from . import modes


class Context:
    """What one call of an op remembers for its backward pass.

    Attributes a `forward` or `backward` may use:
      saved             the arrays given to `save_for_backward`, as a tuple (None once a
                        backward() pass has used and released them)
      options           every keyword argument of forward as this call used it: the ones given
                        to `apply`, and forward's defaults for the rest
      needs_input_grad  one bool per input: does that input want a gradient?
                        `backward` may return None for inputs that don't, and skip the work.
    Attributes the engine uses (read them, don't write them):
      function          the Function subclass that made the output
      inputs            the input Tensors, in call order
    """

    def __init__(self, function, inputs, options, needs_input_grad):
        self.function = function
        self.inputs = inputs
        self.options = options
        self.needs_input_grad = needs_input_grad
        self.saved = ()

    def save_for_backward(self, *arrays):
        """Keep arrays for `backward` (read them back as `ctx.saved`)."""
        self.saved = arrays

    def __repr__(self):
        return f"<Context of {self.function.__name__}>"


class Function:
    """Base class of every op. Subclasses define:

      forward(ctx, *arrays, **options) -> ndarray
          The op on plain ndarrays, one per Tensor input, in the order given to `apply`.
          Keyword options (an axis, a slope) arrive unchanged and are not differentiated.
      backward(ctx, grad_out) -> one gradient per input (a tuple, or the array itself for one input)
          `grad_out` is d loss / d output, shaped like the output. Return d loss / d input for
          each input, shaped like that input, or None where `ctx.needs_input_grad` is False.
          Read arrays from `ctx.saved` and forward's keywords from `ctx.options`.

    Call an op with `MyOp.apply(*inputs, **options)`. At least one input is a Tensor; numbers and
    arrays among the inputs become constants with the dtype of the first Tensor input.
    """

    @staticmethod
    def forward(ctx, *arrays, **options):
        """The op on plain ndarrays: return the output array; save what backward needs on ctx."""
        raise NotImplementedError("a Function subclass must define forward(ctx, *arrays)")

    @staticmethod
    def backward(ctx, grad_out):
        """d loss/d input = grad_out * d output/d input, one array (or None) per input of forward."""
        raise NotImplementedError("a Function subclass must define backward(ctx, grad_out)")

    @classmethod
    def apply(cls, *inputs, **options):
        """Run the op on Tensors (arrays, numbers) and return a Tensor linked to its inputs."""
        tensors = _as_tensors(cls, inputs)
        needs_input_grad = tuple(tensor.requires_grad for tensor in tensors)
        ctx = Context(cls, tensors, {**_keyword_defaults(cls, len(inputs)), **options}, needs_input_grad)

        out = cls.forward(ctx, *[tensor.data for tensor in tensors], **ctx.options)
        if modes.anomaly_enabled:
            modes.check_finite(out, cls, "forward", tensors)

        # reductions return numpy scalars, a custom op may return ints or float16: the output
        # becomes an array with the first input's dtype unless it already is float32/float64
        out = np.asarray(out)
        if out.dtype not in FLOAT_DTYPES:
            out = out.astype(tensors[0].data.dtype)
        result = type(tensors[0])(out)
        if modes.grad_enabled and any(needs_input_grad):
            result.requires_grad = True
            result._ctx = ctx  # the link backward() follows from this output to its inputs
        return result


FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@functools.cache  # inspect.signature takes ~10 µs: once per op class and input count
def _keyword_defaults(function, input_count):
    """{name: default} for forward's keyword parameters that `input_count` inputs leave free."""
    parameters = list(inspect.signature(function.forward).parameters.values())[1 + input_count :]  # after ctx
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def _is_tensor(item):
    # tensor.py imports the ops, which import this module, so this module cannot import the
    # Tensor class; a Tensor is what carries a graph link `_ctx`
    return hasattr(item, "_ctx")


def _as_tensors(function, inputs):
    """The inputs as Tensors: numbers and arrays become constants with the first Tensor's dtype."""
    like = next((item for item in inputs if _is_tensor(item)), None)
    if like is None:
        raise TypeError(f"{function.__name__}.apply needs at least one Tensor input")
    tensor_type = type(like)
    return tuple(item if _is_tensor(item) else tensor_type(item, dtype=like.data.dtype) for item in inputs)


def unbroadcast(grad, shape):
    """Sum `grad` back down to `shape`, undoing numpy broadcasting.

    If forward broadcast an input of shape (3,) against (4, 3), that input was used 4 times,
    so its gradient is the sum of the 4 rows of the output gradient.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    # axes that broadcasting added in front, plus axes where the input had size 1
    axes = tuple(range(extra)) + tuple(
        extra + i for i, size in enumerate(shape) if size == 1 and grad.shape[extra + i] != 1
    )
    return grad.sum(axis=axes, keepdims=True).reshape(shape)


def unreduce(grad, input_shape, axis, keepdims):
    """Put back the axes a reduction removed (as size 1), so `grad` broadcasts to `input_shape`.

    If forward summed an input of shape (4, 3) over axis 1 to shape (4,), the gradient (4,)
    becomes (4, 1): each row's gradient then broadcasts to the 3 elements that row summed.
    """
    if keepdims or len(input_shape) == 0:  # no axis was removed (a 0-d tensor has none to lose)
        return grad
    if axis is None:
        return grad.reshape((1,) * len(input_shape))
    return np.expand_dims(grad, axis)
