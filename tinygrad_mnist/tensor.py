"""Tensor: an ndarray that remembers how it was computed, and `backward()` that walks it back.

Every op on a Tensor is a `Function` (see ops.py). When any input requires a gradient, the output
keeps a link to the op's context (`_ctx`), which holds the inputs. Those links form a graph from
the loss back to the parameters; `backward()` visits it in reverse topological order and applies
the chain rule at every op.
"""

from __future__ import annotations

import numpy as np

from . import modes, ops

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Tensor:
    """An n-dimensional array of float32 (the default) or float64 that can compute gradients.

    Tensor(data, requires_grad=False, dtype=None, name=None)
      data           an ndarray, a nested list, a number, or a Tensor. float32 and float64 arrays
                     keep their dtype and are used without a copy; anything else numeric becomes
                     float32. Strings, objects and complex numbers are refused with a TypeError.
      requires_grad  True for tensors you want d loss / d tensor of (parameters).
      dtype          "float32" or "float64" to force a dtype.
      name           a label, shown in graph pictures (parameters get their attribute path).

    After `loss.backward()`, `.grad` holds d loss / d tensor, an ndarray of the same shape and
    dtype, for every tensor that took part and requires grad. Like PyTorch, gradients add up over
    several `backward()` calls until you reset them (`optimizer.zero_grad()`).
    """

    __slots__ = ("data", "grad", "requires_grad", "name", "_ctx", "__weakref__")
    __array_priority__ = 1000  # so `ndarray + Tensor` calls Tensor.__radd__, not numpy's loop

    def __init__(self, data, requires_grad=False, dtype=None, name=None):
        self.data = _to_float_array(data, dtype)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.name = name
        self._ctx = None  # the Context of the op that made this tensor; None for a leaf

    @classmethod
    def _from_op(cls, array, dtype):
        """A new tensor around an op's output (no checks: ops return float arrays)."""
        tensor = cls.__new__(cls)
        if type(array) is not np.ndarray:
            array = np.asarray(array)  # reductions return numpy scalars, not 0-d arrays
        if array.dtype not in FLOAT_DTYPES:
            array = array.astype(dtype)  # a custom op returned ints, bools or float16
        tensor.data = array
        tensor.grad = None
        tensor.requires_grad = False
        tensor.name = None
        tensor._ctx = None
        return tensor

    # ----- what a tensor is --------------------------------------------------------------------
    @property
    def shape(self):
        """The size of each axis, a tuple: (64, 784) for a batch of flattened images."""
        return self.data.shape

    @property
    def ndim(self):
        """The number of axes: 0 for a scalar, 2 for a (batch, features) matrix."""
        return self.data.ndim

    @property
    def dtype(self):
        """The numpy dtype of the data: float32 (the default) or float64."""
        return self.data.dtype

    @property
    def size(self):
        """The number of elements, the product of the shape."""
        return self.data.size

    @property
    def is_leaf(self):
        """True for tensors made by the user (parameters, inputs), False for op results."""
        return self._ctx is None

    def numpy(self):
        """The data as an ndarray (shared, not copied)."""
        return self.data

    def item(self):
        """The value of a one-element tensor as a Python float."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element; this one has shape {self.shape}")
        return self.data.item()

    def detach(self):
        """The same data, cut off from the graph (requires_grad=False)."""
        return Tensor(self.data)

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    def __repr__(self):
        body = np.array2string(self.data, precision=4, separator=", ", threshold=20, prefix="Tensor(")
        extras = []
        if self.data.dtype != np.float32:
            extras.append(f"dtype={self.data.dtype}")
        if self._ctx is not None:
            extras.append(f"op={self._ctx.function.__name__}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        if self.name:
            extras.append(f"name={self.name!r}")
        return f"Tensor({body}{''.join(', ' + extra for extra in extras)})"

    # ----- backpropagation ---------------------------------------------------------------------
    def backward(self, grad=None):
        """Compute d self / d t for every tensor t in the graph that requires grad; add it to t.grad.

        `grad` is d loss / d self; leave it out when self is a scalar (it is then 1).
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() called on a tensor that does not require grad: no input of the "
                "computation had requires_grad=True (or it ran under no_grad())"
            )
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient needs a scalar, but this tensor has shape "
                    f"{self.shape}; reduce it first (e.g. loss.mean()) or pass grad= of that shape"
                )
            grad = np.ones_like(self.data)
        else:
            grad = np.array(getattr(grad, "data", grad), dtype=self.dtype)  # a copy we own
            if grad.shape != self.shape:
                raise ValueError(f"backward(grad) got grad of shape {grad.shape} for a tensor of shape {self.shape}")

        grads = {self: grad}  # tensor -> d loss / d tensor, summed over all its uses so far
        stored = set()  # ids of arrays already kept as some .grad (see _keep_grad)
        for tensor in reversed(self._graph_order()):
            grad = grads.pop(tensor, None)
            if grad is None:
                continue  # no path from here to self carried a gradient
            _keep_grad(tensor, grad, stored)
            ctx = tensor._ctx
            if ctx is None:
                continue  # a leaf: nothing further back
            input_grads = ctx.function.backward(ctx, grad)
            if type(input_grads) is not tuple:
                input_grads = (input_grads,)
            if len(input_grads) != len(ctx.inputs):
                raise _bad_input_grads(ctx, input_grads)
            for parent, parent_grad in zip(ctx.inputs, input_grads):
                if parent_grad is None:
                    continue
                parent_data = parent.data
                if type(parent_grad) is not np.ndarray or parent_grad.dtype != parent_data.dtype:
                    parent_grad = np.asarray(parent_grad, dtype=parent_data.dtype)  # a number, or float64
                if parent_grad.shape != parent_data.shape:
                    raise _bad_input_grads(ctx, input_grads)
                if not parent.requires_grad:
                    continue  # a constant, such as the labels: its gradient goes nowhere
                if parent in grads:
                    grads[parent] = grads[parent] + parent_grad  # a tensor used twice: add up
                else:
                    grads[parent] = parent_grad
            if modes.anomaly_enabled:
                modes.check_finite(input_grads, ctx.function, "backward", ctx.inputs)

    def _graph_order(self):
        """Every tensor that self depends on and that requires grad, inputs before outputs.

        Depth-first search with an explicit stack instead of recursion, so a chain of 10,000 ops
        does not hit Python's recursion limit. A tensor is appended after all of its inputs.
        """
        order, visited = [], set()
        stack = [(self, False)]
        while stack:
            tensor, inputs_done = stack.pop()
            if inputs_done:
                order.append(tensor)
                continue
            if tensor in visited:
                continue
            visited.add(tensor)
            stack.append((tensor, True))
            if tensor._ctx is not None:
                for parent in tensor._ctx.inputs:
                    if parent.requires_grad and parent not in visited:
                        stack.append((parent, False))
        return order

    def zero_grad(self):
        """Forget the accumulated gradient (sets .grad to None)."""
        self.grad = None

    def draw(self, **options):
        """Draw the graph that produced this tensor; see `tinygrad_mnist.viz.draw_graph`."""
        from .viz import draw_graph

        return draw_graph(self, **options)

    # ----- arithmetic: each operator is a one-line call of its op ------------------------------
    def __add__(self, other):
        return ops.Add.apply(self, other)

    def __radd__(self, other):
        return ops.Add.apply(other, self)

    def __sub__(self, other):
        return ops.Sub.apply(self, other)

    def __rsub__(self, other):
        return ops.Sub.apply(other, self)

    def __mul__(self, other):
        return ops.Mul.apply(self, other)

    def __rmul__(self, other):
        return ops.Mul.apply(other, self)

    def __truediv__(self, other):
        return ops.Div.apply(self, other)

    def __rtruediv__(self, other):
        return ops.Div.apply(other, self)

    def __matmul__(self, other):
        return ops.MatMul.apply(self, other)

    def __rmatmul__(self, other):
        return ops.MatMul.apply(other, self)

    def __pow__(self, exponent):
        return ops.Pow.apply(self, exponent=_scalar_exponent(exponent))

    def __rpow__(self, base):
        # base ** x = exp(x * ln(base)) for a positive number base
        return (self * float(np.log(base))).exp()

    def __neg__(self):
        return ops.Neg.apply(self)

    # ----- reductions --------------------------------------------------------------------------
    def sum(self, axis=None, keepdims=False):
        """Sum over `axis` (all axes by default): (N, C).sum(axis=1) -> (N,).   d out/d x_i = 1."""
        return ops.Sum.apply(self, axis=_check_axis(axis, self.ndim), keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        """Mean over `axis` (all axes by default) of n elements each.   d out/d x_i = 1/n."""
        return ops.Mean.apply(self, axis=_check_axis(axis, self.ndim), keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        """Largest element over `axis`.   d out/d x_i = 1/k for each of k tied maxima, else 0."""
        return ops.Max.apply(self, axis=_check_axis(axis, self.ndim), keepdims=keepdims)

    # ----- elementwise functions ---------------------------------------------------------------
    def exp(self):
        """e^x elementwise, same shape.   d out/d x = e^x."""
        return ops.Exp.apply(self)

    def log(self):
        """ln x elementwise, same shape.   d out/d x = 1/x."""
        return ops.Log.apply(self)

    def relu(self):
        """max(x, 0) elementwise, same shape.   d out/d x = 1 where x > 0, else 0."""
        return ops.ReLU.apply(self)

    def leaky_relu(self, negative_slope=0.01):
        """x where x > 0, else negative_slope * x; same shape.   d out/d x = 1 or negative_slope."""
        return ops.LeakyReLU.apply(self, negative_slope=negative_slope)

    def tanh(self):
        """tanh x elementwise, same shape.   d out/d x = 1 - tanh^2 x."""
        return ops.Tanh.apply(self)

    def sigmoid(self):
        """1 / (1 + e^-x) elementwise, same shape.   d out/d x = out (1 - out)."""
        return ops.Sigmoid.apply(self)

    def softmax(self, axis=-1):
        """e^x_i / sum_j e^x_j along `axis` (max subtracted first), same shape; rows sum to 1.

        d loss/d x = out * (grad_out - sum(grad_out * out)) along `axis`.
        """
        return ops.Softmax.apply(self, axis=_check_axis(axis, self.ndim))

    def log_softmax(self, axis=-1):
        """x_i - log sum_j e^x_j along `axis`, computed stably; same shape.

        d loss/d x = grad_out - softmax(x) * sum(grad_out) along `axis`.
        """
        return ops.LogSoftmax.apply(self, axis=_check_axis(axis, self.ndim))

    # ----- shapes ------------------------------------------------------------------------------
    def reshape(self, *shape):
        """The same elements in a new shape; one size may be -1: (64, 28, 28) -> reshape(64, -1)."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return ops.Reshape.apply(self, shape=shape)

    def flatten(self, start_axis=1):
        """Merge every axis from `start_axis` on: (64, 28, 28) -> (64, 784)."""
        return self.reshape(*self.shape[:start_axis], -1)

    def transpose(self, *axes):
        """Permute the axes (reverse them when none are given): (N, C) -> (C, N)."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        # negative axes count from the end, as in numpy; Transpose.backward inverts the
        # permutation with argsort, which needs them as 0..ndim-1
        normalized = tuple(_check_axis(axis, self.ndim) % max(self.ndim, 1) for axis in axes)
        if axes and sorted(normalized) != list(range(self.ndim)):
            raise ValueError(f"transpose{axes} must list each axis of a {self.ndim}-d tensor once")
        return ops.Transpose.apply(self, axes=normalized or None)

    @property
    def T(self):
        """The transpose, axes reversed: (out, in) -> (in, out)."""
        return self.transpose()

    def __getitem__(self, index):
        return ops.Index.apply(self, index=_plain_index(index))


def _to_float_array(data, dtype=None):
    """The ndarray a Tensor holds: float32/float64 kept, other numbers to float32, the rest refused."""
    if type(data) is np.ndarray and dtype is None and data.dtype in FLOAT_DTYPES:
        return data  # the common case (a batch of inputs): nothing to check or convert
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"Tensor dtype must be float32 or float64, not {dtype}")
    if data is None:
        raise TypeError("Tensor data must be numbers, not None")
    if isinstance(data, (str, bytes)):
        raise TypeError(f"Tensor data must be numbers, not a string ({data!r})")
    try:
        array = np.asarray(data)
    except ValueError as error:  # ragged nested lists
        raise ValueError(f"Tensor data must be rectangular (every row the same length): {error}") from None
    if array.dtype.kind not in "biuf":
        what = {"c": "complex numbers", "U": "strings", "S": "bytes", "O": "Python objects"}.get(
            array.dtype.kind, f"dtype {array.dtype}"
        )
        raise TypeError(f"Tensor data must be real numbers (bool, int or float), not {what}")
    if dtype is None:
        keeps_dtype = isinstance(data, (np.ndarray, np.generic)) and array.dtype in FLOAT_DTYPES
        dtype = array.dtype if keeps_dtype else np.dtype(np.float32)  # lists and Python floats too
    return array.astype(dtype, copy=False)


def _keep_grad(tensor, grad, stored):
    """Add `grad` into tensor.grad, making sure each .grad is an array of its own.

    An op's backward may hand the very same array (or a read-only broadcast view of one) to
    several inputs: Add returns grad_out for both sides. Kept as is, two tensors would share one
    .grad, and an in-place change to one (gradient clipping) would change the other. So the
    first time a gradient is kept, it is copied unless it is a fresh array nobody else holds.
    """
    if tensor.grad is None:
        if grad.base is not None or not grad.flags.writeable or id(grad) in stored:
            grad = grad.copy()
        stored.add(id(grad))
        tensor.grad = grad
    else:
        tensor.grad += grad  # accumulate over backward() calls, like PyTorch


def _bad_input_grads(ctx, input_grads):
    """The error for a backward() that returned the wrong number of gradients or a wrong shape.

    Built-in ops never do; a custom op can, and the message says which input and how to fix it.
    """
    name = ctx.function.__name__
    if len(input_grads) != len(ctx.inputs):
        return RuntimeError(
            f"{name}.backward returned {len(input_grads)} gradient(s) for {len(ctx.inputs)} input(s); "
            f"return one per input of forward, None for inputs that need none"
        )
    for index, (parent, parent_grad) in enumerate(zip(ctx.inputs, input_grads)):
        if parent_grad is not None and np.shape(parent_grad) != parent.data.shape:
            return RuntimeError(
                f"{name}.backward returned a gradient of shape {np.shape(parent_grad)} for input "
                f"{index} of shape {parent.data.shape}; a gradient has the shape of its input "
                f"(use unbroadcast() if forward broadcast it)"
            )
    return RuntimeError(f"{name}.backward returned gradients that do not fit its inputs")


def _check_axis(axis, ndim):
    """Validate an axis (or tuple of axes) against a tensor's number of dimensions."""
    if axis is None:
        return None
    if isinstance(axis, (tuple, list)):
        return tuple(_check_axis(single, ndim) for single in axis)
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"axis must be an int or a tuple of ints, not {type(axis).__name__}")
    if not -ndim <= axis < max(ndim, 1):
        raise ValueError(f"axis {axis} does not exist for a tensor with {ndim} dimension(s) (valid: {-ndim}..{ndim - 1})")
    return int(axis)


def _scalar_exponent(exponent):
    if isinstance(exponent, Tensor) or np.ndim(exponent) != 0 or isinstance(exponent, (bool, complex)):
        raise TypeError(f"x ** p takes a number p (int or float), not {type(exponent).__name__}")
    return float(exponent) if not isinstance(exponent, int) else exponent


def _plain_index(index):
    """Indices for numpy: Tensors inside an index become integer arrays."""
    if isinstance(index, tuple):
        return tuple(_plain_index(part) for part in index)
    if isinstance(index, Tensor):
        return index.data.astype(np.intp)
    return index
