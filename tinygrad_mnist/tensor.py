"""Tensor: an ndarray that remembers how it was computed, and `backward()` that walks it back.

Every op on a Tensor is a `Function` (ops.py, fused.py). When an input requires a gradient, the
output keeps a link `_ctx` to the op's context, which holds the inputs: a graph from the loss back
to the parameters, which `backward()` visits in reverse topological order, applying the chain rule.
"""

from __future__ import annotations

import math

import numpy as np

from . import function, fused, modes, ops
from .function import FLOAT_DTYPES

BOOL = np.dtype(np.bool_)


class Tensor:
    """An n-dimensional array of float32 (the default) or float64 that can compute gradients, or of
    bool: a mask, the result of a comparison, which has no gradient.

    data: an ndarray, a nested list, a number or a Tensor. float32, float64 and bool arrays keep their
    dtype and are not copied; bools become bool, other real numbers float32 (or `dtype`: "float32",
    "float64", "bool"); integers that float32 cannot hold exactly are refused.
    requires_grad: True for the tensors you want d loss / d tensor of (parameters).
    name: a label for graph pictures. After `loss.backward()`, `.grad` holds d loss / d tensor,
    shaped and typed like the data; it adds up over backward() calls until `zero_grad()`, as in PyTorch.
    """

    __slots__ = ("data", "grad", "requires_grad", "name", "_ctx", "_version_counter", "__weakref__")
    __array_priority__ = 1000  # so `ndarray + Tensor` calls Tensor.__radd__, not numpy's loop
    __hash__ = object.__hash__  # by identity, as PyTorch's (== compares values): the graph walk keeps tensors in dicts

    def __init__(self, data, requires_grad=False, dtype=None, name=None):
        self.data = _to_array(data, dtype)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        if self.requires_grad and self.data.dtype is BOOL:
            raise TypeError("a bool tensor (a mask) cannot require grad; use dtype='float32' for numbers to differentiate")
        self.name = name
        self._ctx = None  # the Context of the op that made this tensor; None for a leaf
        self._version_counter = [0, 0]  # [in-place changes, function.in_place_changes at the last]; views share it

    # ----- what a tensor is --------------------------------------------------------------------
    shape = property(lambda self: self.data.shape, doc="The size of each axis, a tuple: (64, 784) for 64 flat images.")
    ndim = property(lambda self: self.data.ndim, doc="The number of axes: 0 for a scalar, 2 for (batch, features).")
    dtype = property(lambda self: self.data.dtype, doc="The numpy dtype of the data: float32 (default), float64 or bool.")
    size = property(lambda self: self.data.size, doc="The number of elements, the product of the shape.")
    is_leaf = property(lambda self: self._ctx is None, doc="True for tensors the user made (parameters, inputs).")
    grad_fn = property(lambda self: self._ctx, doc="The op call that made this tensor, a Context (None for a leaf).")
    _version = property(lambda self: self._version_counter[0], doc="How many times the library changed the data in "
                        "place (add_, an optimizer's step), as PyTorch's _version; writes into .data are not counted.")

    def numpy(self):
        """The data as an ndarray (shared, not copied)."""
        return self.data

    def item(self):
        """The value of a one-element tensor as a Python float (a bool for a bool tensor)."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element; this one has shape {self.shape}")
        return self.data.item()

    def detach(self):
        """The same data, cut off from the graph (requires_grad=False); it shares the version counter, as in PyTorch."""
        detached = Tensor(self.data)
        detached._version_counter = self._version_counter
        return detached

    def float(self):
        """The tensor as float32, as PyTorch's .float(): a mask becomes 0.0 and 1.0; float64 is cast (with a gradient)."""
        if self.data.dtype is BOOL:
            return Tensor(self.data, dtype=np.float32)
        return self if self.data.dtype == np.float32 else ops.Cast.apply(self, dtype=np.float32)

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    def __bool__(self):
        if self.data.size != 1:  # as PyTorch: `if x == y:` on arrays has no single answer
            raise RuntimeError(f"the truth value of a tensor of shape {self.shape} is ambiguous; use .all() or .any()")
        return bool(self.data)

    def __repr__(self):
        body = np.array2string(self.data, precision=4, separator=", ", threshold=20, prefix="Tensor(")
        extras = [f"dtype={self.dtype}"] if self.dtype != np.float32 else []
        if self._ctx is not None or self.requires_grad:
            extras.append(f"op={self._ctx.function.__name__}" if self._ctx is not None else "requires_grad=True")
        extras += [f"name={self.name!r}"] if self.name else []
        return f"Tensor({body}{''.join(', ' + extra for extra in extras)})"

    # ----- backpropagation ---------------------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Compute d self / d t for every tensor t in the graph that requires grad; add it to t.grad.
        `grad` is d loss / d self (1 when left out for a scalar). As in PyTorch, each op's saved arrays
        are released after its backward, so a second backward() needs retain_graph=True in the first."""
        grads = {self: _seed_grad(self, grad)}  # tensor -> d self / d tensor, summed over its uses
        kept = set()  # ids of the arrays kept as some .grad in this pass (see _keep_grad)
        for tensor in reversed(self.graph_order()):
            grad = grads.pop(tensor, None)
            if grad is None:
                continue  # no path from here to self carried a gradient
            _keep_grad(tensor, grad, kept)
            ctx = tensor._ctx
            if ctx is None:
                continue  # a leaf: nothing further back
            if ctx.saved is None:  # released by an earlier backward()
                raise RuntimeError(f"backward() through a graph a second time: {ctx.function.__name__}'s saved arrays "
                                   "were released; call backward(retain_graph=True) the first time, or compute again")
            if ctx.changes_before != function.in_place_changes:  # something changed in place since the op ran
                _check_saved_unchanged(tensor, ctx)
            input_grads = _checked_input_grads(ctx, _call_backward(ctx, grad))
            if not retain_graph:
                ctx.saved = None  # release the saved arrays: their memory is freed now
            for parent, parent_grad in zip(ctx.inputs, input_grads):
                if parent_grad is None or not parent.requires_grad:
                    continue  # a constant, such as the labels: its gradient goes nowhere
                # a tensor used twice receives the sum of both gradients (the chain rule)
                grads[parent] = grads[parent] + parent_grad if parent in grads else parent_grad

    def graph_order(self):
        """Every tensor that self depends on and that requires grad, each after all of its inputs: backward()
        visits them in reverse (public so a tool can follow its exact order, as viz's step-by-step page does).
        Depth-first, with an explicit stack: a chain of 10,000 ops does not hit the recursion limit."""
        order, visited, stack = [], set(), [(self, False)]
        while stack:
            tensor, inputs_done = stack.pop()
            if inputs_done:
                order.append(tensor)
            elif tensor not in visited:
                visited.add(tensor)
                stack.append((tensor, True))
                if tensor._ctx is not None:
                    stack.extend((parent, False) for parent in tensor._ctx.inputs
                                 if parent.requires_grad and parent not in visited)
        return order

    def zero_grad(self):
        """Forget the accumulated gradient (sets .grad to None)."""
        self.grad = None

    # ----- arithmetic: each operator is a one-line call of its op ------------------------------
    def __add__(self, other): return ops.Add.apply(self, other)
    def __radd__(self, other): return ops.Add.apply(other, self)
    def __sub__(self, other): return self + (-other)  # as micrograd: a - b is a + (-b), no op of its own
    def __rsub__(self, other): return other + (-self)
    def __mul__(self, other): return ops.Mul.apply(self, other)
    def __rmul__(self, other): return ops.Mul.apply(other, self)
    def __truediv__(self, other): return ops.Div.apply(self, other)
    def __rtruediv__(self, other): return ops.Div.apply(other, self)
    def __matmul__(self, other): return ops.MatMul.apply(self, other)
    def __rmatmul__(self, other): return ops.MatMul.apply(other, self)
    def __pow__(self, exponent): return ops.Pow.apply(self, exponent=_scalar_exponent(exponent, "x ** p"))
    def __rpow__(self, base): return ops.RPow.apply(self, base=_scalar_exponent(base, "p ** x"))
    def __neg__(self): return self * -1.0  # exact in floating point, so -x costs no op of its own

    # ----- comparisons: elementwise, broadcasting, a bool tensor without a gradient (as in PyTorch) --
    def __eq__(self, other): return _compare(np.equal, "==", self, other)
    def __ne__(self, other): return _compare(np.not_equal, "!=", self, other)
    def __lt__(self, other): return _compare(np.less, "<", self, other)
    def __le__(self, other): return _compare(np.less_equal, "<=", self, other)
    def __gt__(self, other): return _compare(np.greater, ">", self, other)
    def __ge__(self, other): return _compare(np.greater_equal, ">=", self, other)
    def __and__(self, other): return _compare(np.logical_and, "&", _mask(self, "&"), _mask(other, "&"))
    def __or__(self, other): return _compare(np.logical_or, "|", _mask(self, "|"), _mask(other, "|"))
    def __invert__(self): return Tensor(~_mask(self, "~").data)
    __rand__, __ror__ = __and__, __or__

    def all(self, axis=None, keepdims=False):
        """True where every element over `axis` is True (nonzero): a bool tensor, no gradient."""
        return Tensor(np.all(self.data, axis=_check_axis(axis, self.ndim), keepdims=keepdims))

    def any(self, axis=None, keepdims=False):
        """True where some element over `axis` is True (nonzero): a bool tensor, no gradient."""
        return Tensor(np.any(self.data, axis=_check_axis(axis, self.ndim), keepdims=keepdims))

    # ----- in place: the data changes and the version goes up; no graph is recorded -------------
    def add_(self, other, alpha=1):
        """self += alpha * other, in place (an optimizer's step); returns self."""
        other = _in_place(self, "add_", other)
        self.data += other if alpha == 1 else alpha * other
        return self

    def mul_(self, other):
        """self *= other, in place; returns self."""
        self.data *= _in_place(self, "mul_", other)
        return self

    def copy_(self, source):
        """Copy `source` (broadcast to self's shape, cast to its dtype) into self, in place; returns self."""
        np.copyto(self.data, _in_place(self, "copy_", source), casting="same_kind")
        return self

    def zero_(self):
        """Set every element to 0, in place (NaN too); returns self."""
        return self.copy_(0.0)

    # ----- reductions --------------------------------------------------------------------------
    def sum(self, axis=None, keepdims=False):
        """Sum over `axis` (all axes by default): (N, C).sum(axis=1) -> (N,).   d out/d x_i = 1.
        Of a mask: the count of True, as float64 (exact up to 2^53; PyTorch gives int64)."""
        if self.data.dtype is BOOL:
            return Tensor(self.data.sum(axis=_check_axis(axis, self.ndim), keepdims=keepdims, dtype=np.float64))
        return ops.Sum.apply(self, axis=_check_axis(axis, self.ndim), keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        """Mean over `axis` (all axes by default): the sum divided by n.   d out/d x_i = 1/n."""
        out = self.sum(axis, keepdims)
        return out / (self.size // max(out.size, 1))

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
        return ops.ReLUOp.apply(self)

    def leaky_relu(self, negative_slope=0.01):
        """x where x > 0, else negative_slope * x; same shape.   d out/d x = 1 or negative_slope."""
        return ops.LeakyReLUOp.apply(self, negative_slope=negative_slope)

    def tanh(self):
        """tanh x elementwise, same shape.   d out/d x = 1 - tanh^2 x."""
        return ops.TanhOp.apply(self)

    def sigmoid(self):
        """1 / (1 + e^-x) elementwise, same shape.   d out/d x = out (1 - out)."""
        return ops.SigmoidOp.apply(self)

    def softmax(self, axis=-1):
        """e^x_i / sum_j e^x_j along `axis`, computed stably; same shape, rows sum to 1 (fused.SoftmaxOp)."""
        return fused.SoftmaxOp.apply(self, axis=_check_axis(axis, self.ndim))

    def log_softmax(self, axis=-1):
        """x_i - log sum_j e^x_j along `axis`, computed stably; same shape (fused.LogSoftmaxOp)."""
        return fused.LogSoftmaxOp.apply(self, axis=_check_axis(axis, self.ndim))

    # ----- shapes ------------------------------------------------------------------------------
    def reshape(self, *shape):
        """The same elements in a new shape; one size may be -1: (64, 28, 28) -> reshape(64, -1)."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return ops.Reshape.apply(self, shape=shape)

    def flatten(self, start_axis=1):
        """Merge every axis from `start_axis` on: (64, 28, 28) -> (64, 784)."""
        return self.reshape(*self.shape[:start_axis], math.prod(self.shape[start_axis:]))  # not -1: (0, 28, 28) too

    def transpose(self, *axes):
        """Permute the axes (reverse them when none are given): (N, C) -> (C, N)."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        # negative axes as 0..ndim-1: Transpose.backward inverts the permutation with argsort
        normalized = tuple(_check_axis(axis, self.ndim) % self.ndim for axis in axes) if self.ndim else ()
        if axes and sorted(normalized) != list(range(self.ndim)):
            raise ValueError(f"transpose{axes} must list each axis of a {self.ndim}-d tensor once")
        return ops.Transpose.apply(self, axes=normalized or None)

    T = property(lambda self: self.transpose(), doc="The transpose, axes reversed: (out, in) -> (in, out).")

    def __getitem__(self, index):
        if self.data.dtype is BOOL:  # a mask has no graph: pick from its 0/1 floats (exact) and read them back
            return self.float()[index] != 0
        return ops.Index.apply(self, index=_plain_index(index))

    # ----- PyTorch's everyday toolkit: composites of the ops above, except where a comment says -----
    def min(self, axis=None, keepdims=False):
        """Smallest element over `axis`: -max(-x), exact. The gradient is split evenly among ties."""
        return -((-self).max(axis, keepdims))

    def argmax(self, axis=None, keepdims=False):
        """The index of the largest element over `axis` (of the flattened tensor when None), the
        first among ties, as whole numbers in this tensor's dtype; no gradient (it is a constant)."""
        return Tensor(_arg_reduce(np.argmax, self, axis, keepdims), dtype=self.dtype)

    def argmin(self, axis=None, keepdims=False):
        """The index of the smallest element over `axis` (as argmax); no gradient."""
        return Tensor(_arg_reduce(np.argmin, self, axis, keepdims), dtype=self.dtype)

    def maximum(self, other):
        """Elementwise larger of self and other (broadcast): the max of the two stacked, exact; a tie
        gives each half the gradient, as torch.maximum."""
        first, second = _broadcast_pair(self, other)
        return stack([first, second]).max(axis=0)

    def minimum(self, other):
        """Elementwise smaller of self and other: -maximum(-self, -other), exact; ties split the gradient."""
        return -((-self).maximum(-other))

    def clamp(self, min=None, max=None):
        """x limited to [min, max] (either may be None), as torch.clamp; d out/d x = 1 inside, boundaries
        included, 0 outside (ops.Clamp: maximum/minimum would split the gradient at a boundary)."""
        if min is None and max is None:
            raise ValueError("clamp needs min or max (or both)")
        if any(bound is not None and (isinstance(bound, (Tensor, bool)) or np.ndim(bound) != 0) for bound in (min, max)):
            raise TypeError(f"clamp takes numbers for min and max, not {type(min).__name__} and {type(max).__name__}")
        return ops.Clamp.apply(self, min=min, max=max)

    def abs(self):
        """|x| = relu(x) + relu(-x), exact (one of the two is 0); d out/d x = sign(x), 0 at 0 (as PyTorch)."""
        return self.relu() + (-self).relu()

    def sqrt(self):
        """sqrt(x) = x ** 0.5 (numpy computes that power with sqrt); d out/d x = 1 / (2 sqrt(x))."""
        return self**0.5

    def prod(self, axis=None, keepdims=False):
        """The product over `axis` (an int, or all elements when None); d out/d x_i = the product of the
        others, right even where x has zeros (ops.Prod: exp(sum(log)) fails for x <= 0)."""
        if isinstance(axis, (tuple, list)):
            raise TypeError("prod takes one axis (an int) or None, as torch.prod")
        return ops.Prod.apply(self, axis=_check_axis(axis, self.ndim), keepdims=keepdims)

    def var(self, axis=None, correction=1, keepdims=False):
        """sum((x - mean)^2) / (n - correction) over `axis`: the unbiased variance by default, as
        torch.var; correction=0 is the biased one (numpy's default)."""
        mean = self.mean(axis, keepdims=True)
        squares = ((self - mean) ** 2).sum(axis, keepdims)
        return squares / max(self.size // max(squares.size, 1) - correction, 0)

    def std(self, axis=None, correction=1, keepdims=False):
        """sqrt(var(axis, correction)): the unbiased standard deviation by default, as torch.std."""
        return self.var(axis, correction, keepdims).sqrt()

    def squeeze(self, axis=None):
        """Remove axes of size 1 (all of them, or `axis` if it has size 1), as torch.squeeze."""
        axes = range(self.ndim) if axis is None else [_check_axis(axis, self.ndim) % max(self.ndim, 1)]
        return self.reshape(tuple(size for index, size in enumerate(self.shape) if not (index in axes and size == 1)))

    def unsqueeze(self, axis):
        """Insert an axis of size 1 at position `axis` (-1 appends), as torch.unsqueeze: (3,) -> (1, 3)."""
        position = _check_axis(axis, self.ndim + 1) % (self.ndim + 1)
        return self.reshape(self.shape[:position] + (1,) + self.shape[position:])


def cat(tensors, axis=0):
    """Join tensors along an existing axis, as torch.cat: (2, 3) and (4, 3) -> (6, 3) (ops.Cat: forward
    copies, backward hands each input its slice of the gradient; no composite of the ops can grow an array)."""
    tensors = list(tensors)
    if not tensors or not any(isinstance(tensor, Tensor) for tensor in tensors):
        raise TypeError("cat needs a non-empty sequence of Tensors")
    ndim = next(tensor for tensor in tensors if isinstance(tensor, Tensor)).ndim
    if ndim == 0:
        raise ValueError("cat joins tensors along an axis; 0-d tensors have none: use stack")
    return ops.Cat.apply(*tensors, axis=_check_axis(axis, ndim) % ndim)


def stack(tensors, axis=0):
    """Join tensors of one shape along a new axis, as torch.stack: two (3,) -> (2, 3). A composite:
    unsqueeze each, then cat."""
    tensors = [tensor if isinstance(tensor, Tensor) else Tensor(tensor) for tensor in tensors]
    if not tensors:
        raise TypeError("stack needs a non-empty sequence of Tensors")
    if len({tensor.shape for tensor in tensors}) > 1:
        raise ValueError(f"stack needs tensors of one shape, got {[tensor.shape for tensor in tensors]}")
    return cat([tensor.unsqueeze(axis) for tensor in tensors], axis=_check_axis(axis, tensors[0].ndim + 1))


def _arg_reduce(function, tensor, axis, keepdims):
    """np.argmax / np.argmin over one axis (or the flattened tensor), the axis kept as size 1 if asked."""
    if isinstance(axis, (tuple, list)):
        raise TypeError("argmax and argmin take one axis (an int) or None")
    if tensor.size == 0:
        raise ValueError("argmax/argmin of an empty tensor is undefined")
    axis = _check_axis(axis, tensor.ndim)
    indices = function(tensor.data, axis=axis, keepdims=keepdims)
    return indices.reshape((1,) * tensor.ndim) if keepdims and axis is None else indices


def _broadcast_pair(first, second):
    """Both operands broadcast to their common shape (adding 0 is exact), for an op that needs equal shapes."""
    first = first if isinstance(first, Tensor) else Tensor(first, dtype=second.dtype)
    second = second if isinstance(second, Tensor) else Tensor(second, dtype=first.dtype)
    try:
        shape = np.broadcast_shapes(first.shape, second.shape)
    except ValueError:
        raise ValueError(f"shapes {first.shape} and {second.shape} do not broadcast (each axis, counted from the "
                         "right, must be equal or 1); reshape one of them") from None
    return [tensor if tensor.shape == shape else tensor + np.zeros(shape, tensor.dtype) for tensor in (first, second)]


def _to_array(data, dtype=None):
    """The ndarray a Tensor holds: float32/float64/bool kept, other numbers to float32, the rest refused."""
    if type(data) is np.ndarray and dtype is None and data.dtype in FLOAT_DTYPES:
        return data  # every op's output: 0.25 µs instead of 0.6, 1.5% of a 16x128 training step
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None and np.dtype(dtype) not in FLOAT_DTYPES + (BOOL,):
        raise TypeError(f"Tensor dtype must be float32, float64 or bool, not {np.dtype(dtype)}")
    if isinstance(data, (str, bytes)):
        raise TypeError(f"Tensor data must be numbers, not a string ({data!r})")
    try:
        array = np.asarray(data)
    except ValueError as error:  # ragged nested lists
        raise ValueError(f"Tensor data must be rectangular (every row the same length): {error}") from None
    if array.dtype.kind not in "biuf":
        kinds = {"c": "complex numbers", "U": "strings", "S": "bytes", "O": "Python objects"}
        what = "None" if data is None else kinds.get(array.dtype.kind, f"dtype {array.dtype}")
        raise TypeError(f"Tensor data must be real numbers (bool, int or float), not {what}")
    if dtype is None:
        keeps_dtype = array.dtype is BOOL or (isinstance(data, (np.ndarray, np.generic)) and array.dtype in FLOAT_DTYPES)
        dtype = array.dtype if keeps_dtype else np.dtype(np.float32)  # lists and Python floats too
        # uint8 and int16 always fit; int32 and int64 labels or counts past 2^24 would change silently
        if array.dtype.kind in "iu" and array.itemsize > 2 and not np.array_equal(array.astype(dtype), array):
            raise ValueError(f"Tensor: integers up to {np.abs(array).max()} do not fit float32 exactly (it holds whole "
                             "numbers up to 2^24 = 16777216); pass dtype='float64' or scale them first")
    return array.astype(dtype, copy=False)


def _seed_grad(tensor, grad):
    """d tensor / d tensor for backward(): ones for a scalar, else the given `grad`, checked."""
    if not tensor.requires_grad:
        raise RuntimeError("backward() called on a tensor that does not require grad: no input of the "
                           "computation had requires_grad=True (or it ran under no_grad())")
    if grad is None:
        if tensor.data.size != 1:
            raise RuntimeError(f"backward() without a gradient needs a scalar, but this tensor has shape "
                               f"{tensor.shape}; reduce it first (e.g. loss.mean()) or pass grad= of that shape")
        return np.ones_like(tensor.data)
    grad = np.array(getattr(grad, "data", grad), dtype=tensor.dtype)  # a copy we own
    if grad.shape != tensor.shape:
        raise ValueError(f"backward(grad) got grad of shape {grad.shape} for a tensor of shape {tensor.shape}")
    return grad


def _keep_grad(tensor, grad, kept):
    """Add `grad` into tensor.grad. A shared array (Add gives grad_out to both inputs) or a read-only view
    is copied, so clipping one .grad in place never changes another; fresh arrays are kept as they are:
    copying all would add 7-10% to a training step (docs/performance.md)."""
    if tensor.grad is None:
        if grad.base is not None or not grad.flags.writeable or id(grad) in kept:
            grad = grad.copy()
        kept.add(id(grad))
        tensor.grad = grad
    else:
        tensor.grad += grad  # accumulate over backward() calls, like PyTorch


def _check_saved_unchanged(tensor, ctx):
    """A RuntimeError if the op saved data of its output or an input that changed in place after the op ran
    (stamped later than ctx.changes_before), as PyTorch's check: backward would compute a wrong gradient."""
    saved = [array for array in ctx.saved if isinstance(array, np.ndarray)]
    for index, changed in enumerate([tensor, *ctx.inputs]):
        version, stamp = changed._version_counter
        if stamp > ctx.changes_before and any(np.may_share_memory(array, changed.data) for array in saved):
            what = "the output" if index == 0 else f"input {index - 1}"
            name, op = (f" {changed.name!r}" if changed.name else ""), ctx.function.__name__
            raise RuntimeError(f"{what} of {op} (a tensor{name} of shape {changed.shape}, now at version {version}) was "
                               f"modified in place after {op} saved it for backward; call backward() before "
                               "optimizer.step(), or compute the forward pass again")


def _call_backward(ctx, grad):
    """The op's backward on a read-only view of `grad`: .grad and other branches (Add gives one array to
    both inputs) may share that array, so a backward that wrote into it would corrupt their gradients."""
    grad_out = grad.view()
    grad_out.setflags(write=False)
    try:
        return ctx.function.backward(ctx, grad_out)
    except ValueError as error:
        if "read-only" not in str(error):
            raise
        raise RuntimeError(f"{ctx.function.__name__}.backward wrote into a read-only array: grad_out is read-only, since "
                           ".grad and other branches may share it; compute a new array (grad_out * 2, not grad_out *= 2)"
                           ) from error


def _checked_input_grads(ctx, input_grads):
    """An op's backward result as one gradient per input, each shaped and typed like it (and finite,
    under detect_anomaly()). Built-in ops always return that; the errors tell a learner's op how to."""
    if type(input_grads) is not tuple:
        input_grads = (input_grads,)
    if len(input_grads) != len(ctx.inputs):
        raise RuntimeError(f"{ctx.function.__name__}.backward returned {len(input_grads)} gradient(s) for "
                           f"{len(ctx.inputs)} input(s); return one per input of forward, None where none is needed")
    checked = []
    for index, (parent, parent_grad) in enumerate(zip(ctx.inputs, input_grads)):
        if parent_grad is not None:
            # a number, a float64 array from a float32 op: the gradient takes its input's dtype
            parent_grad = np.asarray(parent_grad, dtype=parent.data.dtype)
            if parent_grad.shape != parent.data.shape:
                raise RuntimeError(_wrong_shape_message(ctx, index, parent_grad.shape))
        checked.append(parent_grad)
    if modes.anomaly_enabled:
        modes.check_finite(tuple(checked), ctx.function, "backward", ctx.inputs)
    return checked


def _wrong_shape_message(ctx, index, grad_shape):
    """Which input got a gradient of the wrong shape, and the helper that fixes the usual cause."""
    input_shape, fix = ctx.inputs[index].data.shape, ""
    trailing = grad_shape[len(grad_shape) - len(input_shape):]  # the axes broadcasting lines up with the input's
    if _is_reduced(grad_shape, input_shape):  # a reduction's backward that forgot its axes
        fix = "; use unreduce() to put back the axes forward reduced, then broadcast it to the input's shape"
    elif len(grad_shape) >= len(input_shape) and all(size in (1, full) for size, full in zip(input_shape, trailing)):
        fix = "; use unbroadcast() to sum it back, forward broadcast this input"
    return (f"{ctx.function.__name__}.backward returned a gradient of shape {grad_shape} for input {index} "
            f"of shape {input_shape}: a gradient has the shape of its input{fix}")


def _is_reduced(small, big):
    """True if shape `small` is shape `big` with some axes removed or set to 1, as a reduction leaves it."""
    if len(small) == len(big):
        return all(size in (full, 1) for size, full in zip(small, big))
    remaining = iter(big)  # `small` must appear in `big` in order: a subsequence
    return len(small) < len(big) and all(any(size == full for full in remaining) for size in small)


def _check_axis(axis, ndim):
    """Validate an axis (or tuple of axes) against a tensor's number of dimensions."""
    if axis is None:
        return None
    if isinstance(axis, (tuple, list)):
        axes = tuple(_check_axis(single, ndim) for single in axis)
        return axes if ndim else None
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"axis must be an int or a tuple of ints, not {type(axis).__name__}")
    # like PyTorch, a 0-d tensor takes axis 0 or -1 (reducing it changes nothing)
    if not -max(ndim, 1) <= axis < max(ndim, 1):
        raise ValueError(f"axis {axis} does not exist for a tensor with {ndim} dimension(s) "
                         f"(valid: {-max(ndim, 1)}..{max(ndim, 1) - 1})")
    return int(axis) if ndim else None  # a 0-d tensor's only "axis" is all of it


def _scalar_exponent(number, expression):
    """`number` as an int or float, or a TypeError: the other side of ** must be a plain number."""
    if isinstance(number, Tensor) or np.ndim(number) != 0 or isinstance(number, (bool, complex)):
        raise TypeError(f"{expression} takes a number p (int or float), not {type(number).__name__}")
    return float(number) if not isinstance(number, int) else number


def _in_place(tensor, name, other):
    """`other` as an array for an in-place method on `tensor`, after the checks; counts the change."""
    if tensor._ctx is not None and modes.grad_mode.enabled:
        raise RuntimeError(f"{name} on the result of {tensor._ctx.function.__name__}, in the graph: it cannot record "
                           "an in-place change; compute a new tensor, or do it inside no_grad()")
    other = other.data if isinstance(other, Tensor) else np.asarray(other)
    if other.shape != tensor.data.shape:
        try:
            np.broadcast_to(other, tensor.shape)
        except ValueError:
            raise ValueError(f"{name}: a value of shape {other.shape} does not broadcast to the tensor's shape "
                             f"{tensor.shape}") from None
    # count the change: the version goes up (as PyTorch's), and the stamp tells backward() it came after
    # every op recorded before it, so an op that saved this tensor's data refuses to compute with it
    function.in_place_changes += 1
    tensor._version_counter[:] = tensor._version_counter[0] + 1, function.in_place_changes
    return other


def _compare(op, symbol, tensor, other):
    """`tensor symbol other` by numpy's rules (Python numbers take the tensor's dtype, as in PyTorch), as
    a bool tensor; NotImplemented for a non-number, so `x == None` is False and `x < "a"` a TypeError."""
    other = other.data if isinstance(other, Tensor) else other
    try:
        if np.asarray(other).dtype.kind not in "biuf":
            return NotImplemented
    except ValueError:  # ragged lists
        return NotImplemented
    try:
        return Tensor(op(tensor.data, other))
    except ValueError:
        raise ValueError(f"{symbol}: shapes {tensor.shape} and {np.shape(other)} do not broadcast (each axis, counted "
                         "from the right, must be equal or 1); reshape one of them") from None


def _mask(item, symbol):
    """`item` if it is a bool tensor or array (a mask), else a TypeError: & | ~ combine masks."""
    dtype = np.asarray(item.data if isinstance(item, Tensor) else item).dtype
    if dtype is not BOOL:
        raise TypeError(f"{symbol} combines masks (bool tensors, such as x > 0), not {dtype} values")
    return item


def _plain_index(index):
    """Indices for numpy: bool tensors inside an index become masks, other Tensors integer arrays."""
    if isinstance(index, tuple):
        return tuple(_plain_index(part) for part in index)
    if isinstance(index, Tensor) and index.data.dtype is BOOL:
        return index.data  # a mask selects where it is True, as in numpy and PyTorch
    if isinstance(index, Tensor):
        if not (np.isfinite(index.data).all() and np.array_equal(index.data, np.round(index.data))):
            # refused, not truncated: t[Tensor(1.1)] is a mistake, not t[1]
            raise IndexError(f"an index tensor must hold whole numbers, got {index.data.ravel()[:5]}")
        return index.data.astype(np.intp)
    return index
