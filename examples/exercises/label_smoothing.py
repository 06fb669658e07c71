"""Exercise 6: label-smoothing cross-entropy two ways, composite and fused, and a measurement of
what the fusing buys. See docs/exercises.md.

Copy this file, fill in the functions, then check your copy:

    python -m tinygrad_mnist.exercises check label_smoothing my_label_smoothing.py
"""

import time
import tracemalloc

import numpy as np

from tinygrad_mnist import Function, Tensor


def smoothed_cross_entropy_composite(logits, labels, smoothing=0.1):
    """Label-smoothing cross-entropy from existing Tensor ops (log_softmax, indexing, mean):
    (N, C) logits Tensor, (N,) integer labels -> a scalar Tensor.

    The target of row i is q = (1 - s) onehot(y_i) + s / C.
    """
    raise NotImplementedError("smoothed_cross_entropy_composite")


class SmoothedCrossEntropy(Function):
    """loss = -(1/N) sum_i sum_c q_ic log softmax(logits)_ic, q = (1 - s) onehot(labels) + s / C.

    d loss/d logits = ... (derive it). The labels are class indices (a constant input, no gradient).
    """

    @staticmethod
    def forward(ctx, logits, labels, smoothing=0.1):
        raise NotImplementedError("SmoothedCrossEntropy.forward")

    @staticmethod
    def backward(ctx, grad_out):
        raise NotImplementedError("SmoothedCrossEntropy.backward")


def smoothed_cross_entropy_fused(logits, labels, smoothing=0.1):
    """The same loss as one op: (N, C) logits, (N,) labels -> scalar."""
    return SmoothedCrossEntropy.apply(logits, Tensor(np.asarray(labels), dtype=logits.dtype), smoothing=smoothing)


def measure(batch=512, classes=1000, repeats=20, seed=0):
    """{"composite": {"seconds": s, "peak_bytes": b}, "fused": {...}}: for each way, the median
    time of one forward + backward on random float32 logits, and the peak memory allocated
    during one (tracemalloc sees numpy's allocations)."""
    raise NotImplementedError("measure")


if __name__ == "__main__":
    for name, numbers in measure().items():
        print(f"{name:9}  {1000 * numbers['seconds']:7.2f} ms  {numbers['peak_bytes'] / 2**20:6.1f} MiB peak")
