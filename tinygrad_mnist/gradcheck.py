"""gradcheck: compare backward() against central differences, the definition of a derivative.

    d f / d x_i  ~  (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)

The error of this estimate shrinks like eps^2, so in float64 with eps = 1e-6 it agrees with a
correct analytic gradient to about 1e-9. float32 has too few digits for that: the check always
runs in float64.
"""

from __future__ import annotations

import numpy as np

from .tensor import Tensor


class GradcheckError(AssertionError):
    """backward() and the numerical gradient disagree (the message names input, index, values)."""


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, grad_out=None, seed=0):
    """Check the gradients of `fn(*inputs)` with respect to every input that requires grad.

    fn       a function of Tensors returning a Tensor (of any shape)
    inputs   a sequence of Tensors (or arrays); they are copied to float64 for the check, and the
             copies of those with requires_grad=True are checked (all of them if none is marked)
    grad_out the upstream gradient for a non-scalar output; by default a fixed random one, so
             every output element is checked with a different weight, as in (out * grad_out).sum()

    Returns True, or raises GradcheckError naming the first input and index that disagree.
    """
    tensors = [item if isinstance(item, Tensor) else Tensor(item) for item in inputs]
    checked = [tensor.requires_grad for tensor in tensors]
    if not any(checked):
        checked = [True] * len(tensors)
    copies = [Tensor(np.array(tensor.data, dtype=np.float64), requires_grad=wanted) for tensor, wanted in zip(tensors, checked)]

    output = fn(*copies)
    if not isinstance(output, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(output).__name__}")
    if grad_out is None:
        grad_out = np.random.default_rng(seed).standard_normal(output.shape)
    grad_out = np.asarray(grad_out, dtype=np.float64)

    def weighted_output():  # the scalar (fn(inputs) * grad_out).sum(), in float64
        return float((np.asarray(fn(*copies).data, dtype=np.float64) * grad_out).sum())

    if not output.requires_grad:
        raise ValueError("gradcheck: fn's output does not depend on any input that requires grad")
    output.backward(grad_out)

    for position, (copy, wanted) in enumerate(zip(copies, checked)):
        if not wanted:
            continue
        analytic = copy.grad if copy.grad is not None else np.zeros_like(copy.data)
        flat = copy.data.reshape(-1)  # a view: changing it changes the input fn sees
        for flat_index in range(flat.size):
            original = flat[flat_index]
            flat[flat_index] = original + eps
            above = weighted_output()
            flat[flat_index] = original - eps
            below = weighted_output()
            flat[flat_index] = original
            numeric = (above - below) / (2 * eps)
            index = np.unravel_index(flat_index, copy.shape) if copy.ndim else ()
            value = analytic[index]
            if not abs(value - numeric) <= atol + rtol * abs(numeric):
                raise GradcheckError(
                    f"gradcheck failed for input {position} (shape {copy.shape}) at index "
                    f"{tuple(int(i) for i in index)}: backward() gives {value:.10g}, "
                    f"central differences give {numeric:.10g} (difference {abs(value - numeric):.3g}, "
                    f"allowed {atol + rtol * abs(numeric):.3g}); "
                    + _where(flat[flat_index], index, copy.shape, grad_out)
                )
    return True


def _where(value, index, shape, grad_out):
    """The input value at the failing index and the upstream weight that met it: a wrong sign, a
    missing grad_out or a branch taken on the wrong side of 0 shows in these two numbers."""
    text = f"there the input is {value:.10g}"
    if grad_out.shape == shape:  # elementwise: one output, one upstream weight per input element
        return text + f" and the upstream gradient grad_out is {grad_out[index]:.10g}"
    if grad_out.size == 1:
        return text + f" and the upstream gradient grad_out is {grad_out.reshape(-1)[0]:.10g}"
    return text + f" (the output has shape {grad_out.shape}, so several upstream gradients meet there)"
