"""Exercise 0, solved: backward() written from the public API (docs/exercises.md).

    python -m tinygrad_mnist.exercises check backward examples/solutions/backward.py
"""

import numpy as np


def topological_order(root):
    """Every tensor `root` depends on (root included), each after every tensor it was made from.

    Depth-first with a stack of (tensor, are its inputs done?) pairs instead of recursion, so a
    chain of 10,000 ops never meets Python's recursion limit.
    """
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        tensor, inputs_done = stack.pop()
        if inputs_done:
            order.append(tensor)  # every input was appended before: it comes after all of them
            continue
        if tensor in seen:
            continue  # reached again through another path (a tensor used twice)
        seen.add(tensor)
        stack.append((tensor, True))  # come back to it once its inputs are done
        if tensor.grad_fn is not None:
            stack.extend((parent, False) for parent in tensor.grad_fn.inputs)
    return order


def backward(root):
    """Add d root / d t to t.grad for every tensor t that root depends on and that requires grad,
    as root.backward() does. root is a scalar (a loss): d root / d root = 1.
    """
    grads = {root: np.ones_like(root.data)}  # tensor -> its gradient, summed over the uses seen so far
    for tensor in reversed(topological_order(root)):
        # reversed: every tensor that uses this one has been visited and has sent its gradient
        grad = grads.pop(tensor, None)
        if grad is None:
            continue  # no gradient reached it (an input, or an op sent None)
        # a new array, never one an op may share with another tensor (or a read-only view)
        tensor.grad = grad.copy() if tensor.grad is None else tensor.grad + grad
        ctx = tensor.grad_fn
        if ctx is None:
            continue  # a leaf: nothing further back
        input_grads = ctx.function.backward(ctx, grad)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)  # an op with one input may return the array itself
        for parent, parent_grad in zip(ctx.inputs, input_grads):
            if parent_grad is None or not parent.requires_grad:
                continue  # a constant or the labels: their gradient goes nowhere
            # a tensor used twice receives the sum of both gradients (the chain rule)
            grads[parent] = grads[parent] + parent_grad if parent in grads else parent_grad
