"""Exercise 0: write backward() yourself. See docs/exercises.md.

Copy this file, fill in the two functions, then check your copy:

    python -m tinygrad_mnist.exercises check backward my_backward.py

Use only the public API of a Tensor: `tensor.grad_fn` (the Context of the op that made it, None
for a leaf), `grad_fn.inputs` (the op's input Tensors), `grad_fn.function.backward(grad_fn,
grad_out)` (the op's own backward: one gradient per input, or None), `tensor.requires_grad`
and `tensor.grad`. Not `root.backward()` or `root.graph_order()`: those are the engine's answer.
"""

import numpy as np


def topological_order(root):
    """Every tensor `root` depends on (root included), each after every tensor it was made from.

    Without recursion: a chain of 10,000 ops must work (Python stops at about 1,000 nested calls).
    """
    raise NotImplementedError("topological_order")


def backward(root):
    """Add d root / d t to t.grad for every tensor t that root depends on and that requires grad,
    as root.backward() does. root is a scalar (a loss): d root / d root = 1.
    """
    # walk topological_order(root) backwards: for each tensor, take the gradient summed over all
    # of its uses, add it to its .grad, and send the op's input gradients on to its inputs
    raise NotImplementedError("backward")
