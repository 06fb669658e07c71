"""Exercise 5: the RMSprop optimizer, on the Optimizer base. See docs/exercises.md.

Copy this file, fill in the methods, then check your copy:

    python -m tinygrad_mnist.exercises check rmsprop my_rmsprop.py
"""

import numpy as np

from tinygrad_mnist.optim import Optimizer


class RMSprop(Optimizer):
    """RMSprop, with torch.optim.RMSprop's formula. For every parameter p with gradient g, each
    step, elementwise:

        square = alpha * square + (1 - alpha) * g^2
        step   = g / (sqrt(square) + eps)
        buffer = momentum * buffer + step              (with momentum > 0; else buffer = step)
        p      = p - lr * buffer
    """

    def __init__(self, params, lr=0.01, alpha=0.99, eps=1e-8, momentum=0.0):
        super().__init__(params)  # keeps self.params as a list, gives zero_grad() and state_dict()
        # keep the settings, and ask the base for each kind of per-parameter state:
        # self.per_parameter_state("square_average") is a list with None per parameter that you
        # fill in step(); state_dict() saves it and load_state_dict() restores it
        raise NotImplementedError("RMSprop.__init__")

    def step(self):
        """Update every parameter that has a gradient (skip those whose .grad is None), in place."""
        raise NotImplementedError("RMSprop.step")
