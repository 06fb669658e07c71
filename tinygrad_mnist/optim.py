"""Optimizers: the Optimizer base class, SGD with momentum, Adam and AdamW, gradient clipping and
learning-rate schedules (LRScheduler, CosineAnnealingLR, StepLR), with the semantics of torch.optim
and torch.nn.utils.clip_grad_*_. Updates work in place on the parameters'
arrays."""

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


class Optimizer:
    """Base class of optimizers: holds the parameters and their per-parameter state arrays.

    A subclass calls `super().__init__(params)`, asks for the state it keeps per parameter with
    `self.per_parameter_state("name")` (a list with one array or None per parameter), and defines
    `step()`. `zero_grad`, `state_dict` and `load_state_dict` then work for it unchanged: the state
    dict holds one entry "name.i" for every parameter i that has that state.
    """

    def __init__(self, params):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list; pass model.parameters()")
        self.state = {}  # state name -> [array or None, one per parameter]

    def per_parameter_state(self, name, scalar=False):
        """A list of None, one per parameter, kept under `name` in state_dict (fill it in step()): arrays
        shaped and typed like their parameter, or with scalar=True 0-d float32 arrays (Adam's step count)."""
        self.state[name] = [None] * len(self.params)
        self._scalar_states = getattr(self, "_scalar_states", set()) | ({name} if scalar else set())
        return self.state[name]

    def zero_grad(self):
        """Forget the gradients of all parameters (set .grad to None), before the next backward()."""
        for parameter in self.params:
            parameter.grad = None

    def step(self):
        """Update every parameter that has a gradient, in place. Subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} must define step()")

    def state_dict(self):
        """{"name.i": a copy of the array} for each per-parameter state and each parameter i that has it."""
        return {
            f"{name}.{index}": array.copy()
            for name, arrays in self.state.items()
            for index, array in enumerate(arrays)
            if array is not None
        }

    def load_state_dict(self, state):
        """Restore arrays saved by state_dict(), checking names, indices, shapes and dtypes."""
        loaded = {name: [None] * len(self.params) for name in self.state}
        for key, array in state.items():
            name, _, index = key.rpartition(".")
            if name not in loaded or not index.isdigit() or int(index) >= len(self.params):
                raise KeyError(
                    f"{type(self).__name__} state has an unexpected entry {key!r} (this optimizer keeps "
                    f"{', '.join(loaded) or 'no state'} for {len(self.params)} parameters)"
                )
            parameter = self.params[int(index)]
            array = np.asarray(array)
            scalar = name in getattr(self, "_scalar_states", ())
            shape, dtype = ((), np.dtype(np.float32)) if scalar else (parameter.shape, parameter.dtype)
            if array.shape != shape or array.dtype != dtype:
                raise ValueError(
                    f"{type(self).__name__} state {key!r} is {array.dtype}{array.shape}, but it must be "
                    f"{dtype}{shape}" + ("" if scalar else f", as parameter {int(index)} is")
                )
            loaded[name][int(index)] = array.copy()
        for name, arrays in loaded.items():
            self.state[name][:] = arrays  # in place: a subclass holds these lists by reference


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with momentum, weight decay and clipping.

    Each step, for every parameter p with gradient g:
        g = g + weight_decay * p                      (L2 penalty)
        buffer = momentum * buffer + g                (a running direction; buffer = g at first)
        p = p - lr * buffer                           (or lr * g without momentum)
    clip_value / clip_norm clip the gradients first (see clip_grad_value_ / clip_grad_norm_).
    state_dict() holds "momentum_buffer.i" for every parameter i that has a momentum buffer.
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, clip_value=None, clip_norm=None):
        super().__init__(params)
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
        self.momentum_buffers = self.per_parameter_state("momentum_buffer")

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
            parameter.add_(grad, alpha=-self.lr)  # p -= lr * g, counted: backward() refuses a graph that saved the old p


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015) with torch.optim.Adam's defaults, formula and state.

    Each step t = 1, 2, ..., for every parameter p with gradient g (elementwise):
        g = g + weight_decay * p                        (L2 penalty, when weight_decay > 0)
        m = beta1 m + (1 - beta1) g                     running mean of the gradient
        v = beta2 v + (1 - beta2) g^2                   running mean of the squared gradient
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    Dividing by 1 - beta^t undoes the start of m and v at 0; so on the first step every weight moves
    by almost exactly lr against its gradient's sign, whatever the gradient's size. amsgrad=True
    divides by the largest v so far instead. state_dict() holds "step.i" (a float32 count, as torch),
    "exp_avg.i" and "exp_avg_sq.i" (and "max_exp_avg_sq.i") for every parameter i that has taken a step.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        super().__init__(params)
        if not lr > 0 or not all(0 <= beta < 1 for beta in betas) or not eps >= 0 or not weight_decay >= 0:
            raise ValueError(f"{type(self).__name__} needs lr > 0, 0 <= betas < 1, eps >= 0 and weight_decay >= 0; "
                             f"got lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")
        self.lr, self.betas, self.eps, self.weight_decay, self.amsgrad = lr, tuple(betas), eps, weight_decay, amsgrad
        self.steps = self.per_parameter_state("step", scalar=True)
        self.exp_avgs = self.per_parameter_state("exp_avg")
        self.exp_avg_sqs = self.per_parameter_state("exp_avg_sq")
        self.max_exp_avg_sqs = self.per_parameter_state("max_exp_avg_sq") if amsgrad else None

    def _decay(self, parameter, grad):
        """Adam's weight decay: an L2 penalty added to the gradient (AdamW decays the weight instead)."""
        return grad + self.weight_decay * parameter.data if self.weight_decay else grad

    def step(self):
        """Update every parameter that has a gradient, in place."""
        beta1, beta2 = self.betas
        for index, parameter in enumerate(self.params):
            if parameter.grad is None:
                continue
            grad = self._decay(parameter, parameter.grad)
            if self.steps[index] is None:  # the first step: state made now, as torch makes it
                self.steps[index] = np.array(0, dtype=np.float32)
                self.exp_avgs[index] = np.zeros_like(parameter.data)
                self.exp_avg_sqs[index] = np.zeros_like(parameter.data)
                if self.amsgrad:
                    self.max_exp_avg_sqs[index] = np.zeros_like(parameter.data)
            self.steps[index] += 1
            step, exp_avg, exp_avg_sq = float(self.steps[index]), self.exp_avgs[index], self.exp_avg_sqs[index]
            exp_avg += (1 - beta1) * (grad - exp_avg)  # beta1 m + (1 - beta1) g, as torch's lerp
            exp_avg_sq *= beta2
            exp_avg_sq += (1 - beta2) * grad * grad
            if self.amsgrad:
                np.maximum(self.max_exp_avg_sqs[index], exp_avg_sq, out=self.max_exp_avg_sqs[index])
                exp_avg_sq = self.max_exp_avg_sqs[index]
            denominator = np.sqrt(exp_avg_sq) / math.sqrt(1 - beta2**step) + self.eps  # eps keeps 0 / 0 away
            parameter.data -= (self.lr / (1 - beta1**step) * exp_avg / denominator).astype(parameter.dtype, copy=False)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter, 2019), as torch.optim.AdamW: each step first
    shrinks every weight, p = p (1 - lr weight_decay), then takes Adam's step on the plain gradient.
    Default weight_decay 0.01, as torch; the same state as Adam."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)

    def _decay(self, parameter, grad):
        if self.weight_decay:
            parameter.data *= parameter.dtype.type(1 - self.lr * self.weight_decay)
        return grad


class LRScheduler:
    """Base class of learning-rate schedules, as in torch.optim.lr_scheduler: it sets
    `optimizer.lr` once at the start and again at every `step()`.

    `last_epoch` counts the steps taken (PyTorch's name: it counts whatever you call step() for,
    here training steps); `base_lrs` holds the optimizer's starting rate. A subclass defines
    `get_lr()`, the rate after `last_epoch` steps, from `base_lrs` alone, so a schedule resumed from
    `state_dict()` gives exactly the rates of one that never stopped.
    """

    def __init__(self, optimizer, last_epoch=-1):
        self.optimizer = optimizer
        self.base_lrs = [optimizer.lr]
        self.last_epoch = last_epoch
        self.step()  # last_epoch -1 -> 0: the optimizer starts at the schedule's first rate

    def get_lr(self):
        """[the learning rate after `last_epoch` steps]. Subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} must define get_lr()")

    def step(self):
        """Count one step and set the optimizer's learning rate to the schedule's next value."""
        self.last_epoch += 1
        (self.optimizer.lr,) = self._last_lr = self.get_lr()

    def get_last_lr(self):
        """[the learning rate the last step() set]."""
        return list(self._last_lr)

    def state_dict(self):
        """Everything but the optimizer: plain numbers and lists (JSON can hold it)."""
        return {key: (list(value) if isinstance(value, list) else value)
                for key, value in vars(self).items() if key not in ("optimizer", "_last_lr")}

    def load_state_dict(self, state):
        """Take up a schedule where state_dict() left it, and set the optimizer's rate to match."""
        vars(self).update(state)
        (self.optimizer.lr,) = self._last_lr = self.get_lr()


class CosineAnnealingLR(LRScheduler):
    """A cosine from the optimizer's rate down to `eta_min` over `T_max` steps (PyTorch's closed form):

        lr(t) = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2,   t = last_epoch

    A large rate early moves far; a small one late settles into the minimum found.
    """

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.T_max == 0:  # no steps to anneal over
            return list(self.base_lrs)
        return [self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
                for base_lr in self.base_lrs]


class StepLR(LRScheduler):
    """Multiply the learning rate by gamma every step_size steps, as torch.optim.lr_scheduler.StepLR:
    after n calls of step(), lr = base_lr * gamma ** (n // step_size). Call step() once per whatever
    you count (an epoch, as PyTorch's examples do, or a training step). state_dict() holds
    step_size, gamma, base_lrs and last_epoch."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        if not isinstance(step_size, int) or isinstance(step_size, bool) or step_size < 1:
            raise ValueError(f"StepLR step_size must be a positive int, got {step_size!r}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        """[base_lr * gamma ** (last_epoch // step_size)]: from base_lrs alone, so a resumed schedule is exact."""
        return [base_lr * self.gamma ** (self.last_epoch // self.step_size) for base_lr in self.base_lrs]
