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
"""

from __future__ import annotations

import inspect

from . import modes


class Context:
    """What one call of an op remembers for its backward pass.

    Attributes a `forward` or `backward` may use:
      saved             the arrays given to `save_for_backward`, as a tuple
      needs_input_grad  one bool per input: does that input want a gradient?
                        `backward` may return None for inputs that don't, and skip the work.
    Attributes the engine uses (read them, don't write them):
      function          the Function subclass that made the output
      inputs            the input Tensors, in call order
      options           forward's keyword arguments as this call used them: the ones given to
                        `apply`, and forward's defaults for the rest (shown in graph pictures)
    """

    __slots__ = ("function", "inputs", "options", "needs_input_grad", "saved", "__dict__")

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

    Call an op with `MyOp.apply(*inputs, **options)`. Inputs may be Tensors, arrays, or numbers;
    non-Tensors become constants that take the dtype of the first Tensor input.
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
        tensors = _as_tensors(inputs)
        needs_input_grad = tuple([tensor.requires_grad for tensor in tensors])
        # backward reads forward's keywords from ctx.options, defaults included, so an op never
        # has to repeat its own defaults (the dict is built once per Function class)
        defaults = cls.__dict__.get("_keyword_defaults")
        if defaults is None:
            defaults = cls._keyword_defaults = _keyword_defaults(cls.forward)
        if defaults:
            # a default fills in a keyword the call left out, unless an input took its place
            options = {**{name: value for position, name, value in defaults if position > len(inputs)}, **options}
        ctx = Context(cls, tensors, options, needs_input_grad)

        out = cls.forward(ctx, *[tensor.data for tensor in tensors], **options)
        if modes.anomaly_enabled:
            modes.check_finite(out, cls, "forward", tensors)

        result = Tensor._from_op(out, tensors[0].data.dtype)
        if modes.grad_enabled and True in needs_input_grad:
            result.requires_grad = True
            result._ctx = ctx  # the link backward() follows from this output to its inputs
        return result


def _keyword_defaults(forward):
    """(position, name, default) for each parameter of forward(ctx, ...) that has a default."""
    parameters = inspect.signature(forward).parameters.values()
    return tuple(
        (position, p.name, p.default)
        for position, p in enumerate(parameters)
        if p.default is not inspect.Parameter.empty
    )


def _as_tensors(inputs):
    """Wrap non-Tensor inputs as constants with the dtype of the first Tensor input."""
    for item in inputs:
        if type(item) is not Tensor:
            break
    else:
        return inputs  # the common case: all Tensors already, nothing to convert
    like = next((item for item in inputs if isinstance(item, Tensor)), None)
    dtype = like.data.dtype if like is not None else None
    return tuple(item if isinstance(item, Tensor) else Tensor(item, dtype=dtype) for item in inputs)


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


# `apply` wraps every output in a Tensor, and tensor.py imports this module (through ops.py), so
# the import comes last: by the time tensor.py runs, everything it needs from here is defined.
# (An import inside `apply` would work too, but it costs half a microsecond on every op.)
from .tensor import Tensor  # noqa: E402
