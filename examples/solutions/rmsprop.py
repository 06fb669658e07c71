"""Exercise 5, solved: the RMSprop optimizer, on the Optimizer base (docs/exercises.md).

    python -m tinygrad_mnist.exercises check rmsprop examples/solutions/rmsprop.py
"""

import numpy as np

from tinygrad_mnist.optim import Optimizer


class RMSprop(Optimizer):
    """RMSprop (Hinton, 2012), with torch.optim.RMSprop's formula. For every parameter p with
    gradient g, each step, elementwise:

        square = alpha * square + (1 - alpha) * g^2    a running mean of g^2: this weight's scale
        step   = g / (sqrt(square) + eps)              the gradient in units of its usual size
        buffer = momentum * buffer + step              (with momentum > 0; else buffer = step)
        p      = p - lr * buffer
    """

    def __init__(self, params, lr=0.01, alpha=0.99, eps=1e-8, momentum=0.0):
        super().__init__(params)  # keeps self.params, gives zero_grad()
        if not lr > 0 or not 0 <= alpha < 1 or not eps > 0 or not 0 <= momentum < 1:
            raise ValueError(f"RMSprop needs lr > 0, 0 <= alpha < 1, eps > 0, 0 <= momentum < 1; got {lr}, {alpha}, {eps}, {momentum}")
        self.lr, self.alpha, self.eps, self.momentum = lr, alpha, eps, momentum
        # per-parameter state, asked of the base so that state_dict() saves it and
        # load_state_dict() restores it: one array per parameter, made at its first step
        self.square_averages = self.per_parameter_state("square_average")
        self.momentum_buffers = self.per_parameter_state("momentum_buffer")

    def step(self):
        """Update every parameter that has a gradient, in place."""
        for index, parameter in enumerate(self.params):
            grad = parameter.grad
            if grad is None:
                continue
            if self.square_averages[index] is None:
                self.square_averages[index] = np.zeros_like(parameter.data)
            square = self.square_averages[index]
            square *= self.alpha
            square += (1 - self.alpha) * grad * grad
            update = grad / (np.sqrt(square) + self.eps)
            if self.momentum:
                if self.momentum_buffers[index] is None:
                    self.momentum_buffers[index] = np.zeros_like(parameter.data)
                buffer = self.momentum_buffers[index]
                buffer *= self.momentum
                buffer += update
                update = buffer
            parameter.data -= (self.lr * update).astype(parameter.dtype, copy=False)
