"""Exercise 6, solved: label-smoothing cross-entropy two ways, composite and fused, and what the
fusing buys (docs/exercises.md).

    python -m tinygrad_mnist.exercises check label_smoothing examples/solutions/label_smoothing.py
    python examples/solutions/label_smoothing.py        # prints the measurement
"""

import time
import tracemalloc

import numpy as np

from tinygrad_mnist import Function, Tensor


def smoothed_cross_entropy_composite(logits, labels, smoothing=0.1):
    """Label-smoothing cross-entropy from existing Tensor ops: (N, C) logits, (N,) labels -> scalar.

    The target of row i is q = (1 - s) onehot(y_i) + s / C, so the loss is
    mean_i [ -(1 - s) log p_(i, y_i) - s mean_c log p_(i, c) ].
    """
    count = logits.shape[0]
    log_probs = logits.log_softmax(axis=1)  # (N, C)
    picked = log_probs[np.arange(count), np.asarray(labels)]  # (N,): log p of each row's label
    # log_probs.mean() is the mean over rows of the mean over classes
    return -((1 - smoothing) * picked.mean() + smoothing * log_probs.mean())


class SmoothedCrossEntropy(Function):
    """loss = -(1/N) sum_i sum_c q_ic log softmax(logits)_ic, q = (1 - s) onehot(labels) + s / C.

    d loss/d logits = (softmax(logits) - q) / N: predicted minus wanted, as for the plain loss.
    The labels are class indices (a constant input, no gradient).
    """

    @staticmethod
    def forward(ctx, logits, labels, smoothing=0.1):
        count, classes = logits.shape
        rows, labels = np.arange(count), labels.astype(np.intp)
        # one (N, C) array reused in place where possible: memory is what fusing can save
        log_probs = logits - logits.max(axis=1, keepdims=True)  # the largest of a row is 0: no overflow
        log_probs -= np.log(np.exp(log_probs).sum(axis=1, keepdims=True))  # log softmax, (N, C)
        # sum_c q_c log p_c without building q: (1 - s) at the label, s / C everywhere
        loss = -((1 - smoothing) * log_probs[rows, labels].sum() + smoothing / classes * log_probs.sum()) / count
        probs = np.exp(log_probs, out=log_probs)  # softmax, in the same memory
        ctx.save_for_backward(probs, rows, labels)
        return np.asarray(loss, dtype=logits.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        probs, rows, labels = ctx.saved
        smoothing = ctx.options["smoothing"]
        grad = probs - smoothing / probs.shape[1]  # softmax - q, off the label ...
        grad[rows, labels] -= 1 - smoothing  # ... and at the label
        grad *= grad_out / probs.shape[0]
        return grad, None  # nothing for the labels


def smoothed_cross_entropy_fused(logits, labels, smoothing=0.1):
    """The same loss as one op: (N, C) logits, (N,) labels -> scalar."""
    return SmoothedCrossEntropy.apply(logits, Tensor(np.asarray(labels), dtype=logits.dtype), smoothing=smoothing)


def measure(batch=512, classes=1000, repeats=20, seed=0):
    """{"composite": {...}, "fused": {...}}: for each way, the median seconds of one forward and
    backward ("seconds") and the peak memory numpy allocated during one ("peak_bytes")."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((batch, classes)).astype(np.float32)
    labels = rng.integers(0, classes, size=batch)
    results = {}
    for name, loss_function in (("composite", smoothed_cross_entropy_composite), ("fused", smoothed_cross_entropy_fused)):
        def once():
            weights = Tensor(logits, requires_grad=True)
            loss_function(weights, labels).backward()

        once()  # warm up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            once()
            times.append(time.perf_counter() - start)
        tracemalloc.start()  # numpy reports its array allocations to tracemalloc
        once()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        results[name] = {"seconds": float(np.median(times)), "peak_bytes": int(peak)}
    return results


if __name__ == "__main__":
    for name, numbers in measure().items():
        print(f"{name:9}  {1000 * numbers['seconds']:7.2f} ms  {numbers['peak_bytes'] / 2**20:6.1f} MiB peak")
