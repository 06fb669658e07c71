"""SGD with momentum, and gradient clipping, with the semantics of torch.optim.SGD and
torch.nn.utils.clip_grad_*_. Updates work in place on the parameters' arrays."""

from __future__ import annotations

import math

import numpy as np


def clip_grad_value_(parameters, clip_value):
    """Clamp every gradient element into [-clip_value, clip_value], in place.

    Guards against a single huge gradient entry (from an outlier example) throwing a weight far off.
    """
    if clip_value <= 0:
        raise ValueError(f"clip_value must be positive, got {clip_value}")
    for parameter in parameters:
        if parameter.grad is not None:
            np.clip(parameter.grad, -clip_value, clip_value, out=parameter.grad)


def clip_grad_norm_(parameters, max_norm):
    """Scale all gradients together so their joint L2 norm is at most `max_norm`, in place.

    Unlike clipping by value this keeps the gradient's direction, only shortening the step.
    Returns the total norm before clipping (as a float).
    """
    if max_norm <= 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}")
    grads = [parameter.grad for parameter in parameters if parameter.grad is not None]
    total_norm = math.sqrt(sum(float(np.vdot(grad, grad)) for grad in grads))
    scale = max_norm / (total_norm + 1e-6)  # the 1e-6 avoids dividing by a zero norm
    if scale < 1:
        for grad in grads:
            grad *= grad.dtype.type(scale)
    return total_norm


class SGD:
    """Stochastic gradient descent, optionally with momentum, weight decay and clipping.

    Each step, for every parameter p with gradient g:
        g = g + weight_decay * p                      (L2 penalty)
        buffer = momentum * buffer + g                (a running direction; buffer = g at first)
        p = p - lr * buffer                           (or lr * g without momentum)
    clip_value / clip_norm clip the gradients first (see clip_grad_value_ / clip_grad_norm_).
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, clip_value=None, clip_norm=None):
        self.params = list(params)
        if not self.params:
            raise ValueError("SGD got an empty parameter list; pass model.parameters()")
        for name, value in (("lr", lr), ("clip_value", clip_value), ("clip_norm", clip_norm)):
            if value is not None and not value > 0:
                raise ValueError(f"SGD {name} must be positive, got {value}")
        if not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(f"SGD needs 0 <= momentum < 1 and weight_decay >= 0, got {momentum} and {weight_decay}")
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.clip_value = clip_value
        self.clip_norm = clip_norm
        self.momentum_buffers = [None] * len(self.params)

    def zero_grad(self):
        """Forget the gradients of all parameters (set .grad to None), before the next backward()."""
        for parameter in self.params:
            parameter.grad = None

    def step(self):
        """Update every parameter that has a gradient, in place."""
        if self.clip_value is not None:
            clip_grad_value_(self.params, self.clip_value)
        if self.clip_norm is not None:
            clip_grad_norm_(self.params, self.clip_norm)
        for index, parameter in enumerate(self.params):
            grad = parameter.grad
            if grad is None:
                continue
            if self.weight_decay:
                grad = grad + self.weight_decay * parameter.data
            if self.momentum:
                buffer = self.momentum_buffers[index]
                if buffer is None:
                    buffer = self.momentum_buffers[index] = grad.copy()
                else:
                    buffer *= self.momentum
                    buffer += grad
                grad = buffer
            parameter.data -= self.lr * grad

    def state_dict(self):
        """{"momentum_buffer.i": array} for every parameter i that has a momentum buffer."""
        return {f"momentum_buffer.{index}": buffer.copy() for index, buffer in enumerate(self.momentum_buffers) if buffer is not None}

    def load_state_dict(self, state):
        """Restore momentum buffers saved by state_dict(), checking indices, shapes and dtypes."""
        buffers = [None] * len(self.params)
        for key, array in state.items():
            prefix, _, index = key.partition(".")
            if prefix != "momentum_buffer" or not index.isdigit() or int(index) >= len(self.params):
                raise KeyError(f"SGD state has an unexpected entry {key!r} (this optimizer has {len(self.params)} parameters)")
            parameter = self.params[int(index)]
            array = np.asarray(array)
            if array.shape != parameter.shape or array.dtype != parameter.dtype:
                raise ValueError(
                    f"SGD state {key!r} is {array.dtype}{array.shape}, but parameter {int(index)} is "
                    f"{parameter.dtype}{parameter.shape}"
                )
            buffers[int(index)] = array.copy()
        self.momentum_buffers = buffers
