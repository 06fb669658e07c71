"""Exercise 6: label-smoothing cross-entropy, composite and fused. Both against the formula (and
torch's label_smoothing when installed), smoothing left out and given, logits of +-1000,
gradcheck, and the learner's measurement of time and memory."""

from __future__ import annotations

import numpy as np

from ..gradcheck import GradcheckError, gradcheck
from ..tensor import Tensor
from .common import CheckFailed, call, check_op, first_mismatch
from .probes import Probe

TITLE = "label-smoothing cross-entropy, composite and fused, measured"
NAMES = ("smoothed_cross_entropy_composite", "SmoothedCrossEntropy", "smoothed_cross_entropy_fused", "measure")


def reference(grad_out, logits, labels, smoothing=0.1):
    count, classes = logits.shape
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    targets = np.full(logits.shape, smoothing / classes)
    targets[np.arange(count), labels.astype(int)] += 1 - smoothing
    loss = -(targets * log_probs).sum() / count
    if grad_out is None:
        return loss, None
    return loss, ((np.exp(log_probs) - targets) * grad_out / count, None)


def probes(rng):
    """Fresh cases for the parent to re-check (see process.py): drawn anew every run."""
    labels = rng.integers(0, 6, 5).astype(np.float64)
    return [Probe("SmoothedCrossEntropy", "(5, 6), smoothing drawn", [rng.standard_normal((5, 6)) * 2, labels],
                  {"smoothing": float(rng.uniform(0.05, 0.5))}, reference, needs=(True, False))]


def check(module, report, train=True):
    rng = np.random.default_rng(6)
    cases = [
        ("(6, 5), smoothing left out", rng.standard_normal((6, 5)) * 2, rng.integers(0, 5, 6), {}),
        ("(4, 10), smoothing=0.2", rng.standard_normal((4, 10)) * 2, rng.integers(0, 10, 4), {"smoothing": 0.2}),
        ("(3, 7), smoothing=0.0: plain cross-entropy", rng.standard_normal((3, 7)), rng.integers(0, 7, 3), {"smoothing": 0.0}),
        ("(3, 4), logits of +-1000", np.array([[1000.0, -1000, 0, 5], [-1000, -1000, -1000, 1000], [1, 2, 3, 4]]), np.array([0, 1, 3]), {"smoothing": 0.3}),
    ]
    for label, logits, labels, options in cases:
        check_op(module, module.SmoothedCrossEntropy, [logits, labels.astype(np.float64)], options, reference, label, needs=[True, False])
    report.ok("SmoothedCrossEntropy: loss and gradient match on 4 cases, smoothing left out, 0.2, 0.0, and logits of +-1000")

    for name in ("smoothed_cross_entropy_composite", "smoothed_cross_entropy_fused"):
        loss_function = getattr(module, name)
        for label, logits, labels, options in cases:
            weights = Tensor(logits, requires_grad=True)
            loss = call(module, f"{name} ({label})", loss_function, weights, labels, **options)
            call(module, f"backward through {name} ({label})", loss.backward)
            want, (grad, _) = reference(1.0, logits, labels, **options)
            if not np.isclose(loss.item(), want, rtol=1e-7) or not np.isfinite(loss.item()):
                raise CheckFailed(f"{name} gives {loss.item():.10g} ({label}), expected {want:.10g}")
            bad = first_mismatch(weights.grad, grad, 1e-6, 1e-9)
            if bad is not None:
                raise CheckFailed(f"the gradient through {name} is wrong ({label}) at {bad}: {weights.grad[bad]:.8g}, expected {grad[bad]:.8g}")
    report.ok("both functions, composite and fused, give the same loss and gradient as the formula")

    try:
        labels = Tensor(np.array([1.0, 0.0, 3.0]))
        gradcheck(lambda t: module.SmoothedCrossEntropy.apply(t, labels, smoothing=0.25), [Tensor(rng.standard_normal((3, 4)), requires_grad=True)])
    except GradcheckError as error:
        raise CheckFailed(str(error)) from None
    report.ok("gradcheck: the fused backward agrees with central differences")

    try:
        import torch
    except ImportError:
        report.note("torch is not installed: the comparison with torch's label_smoothing is skipped")
    else:
        logits, labels = rng.standard_normal((8, 10)), rng.integers(0, 10, 8)
        want = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(labels), label_smoothing=0.15).item()
        got = module.smoothed_cross_entropy_fused(Tensor(logits), labels, smoothing=0.15).item()
        if not np.isclose(got, want, rtol=1e-9):
            raise CheckFailed(f"torch.nn.functional.cross_entropy(label_smoothing=0.15) gives {want:.10g}, yours {got:.10g}")
        report.ok("agrees with torch.nn.functional.cross_entropy(..., label_smoothing=0.15)")

    results = call(module, "measure", module.measure, batch=256, classes=1000, repeats=5)
    try:
        rows = {name: (float(results[name]["seconds"]), int(results[name]["peak_bytes"])) for name in ("composite", "fused")}
    except (KeyError, TypeError, ValueError):
        raise CheckFailed('measure() should return {"composite": {"seconds": ..., "peak_bytes": ...}, "fused": {...}}') from None
    if not all(seconds > 0 and peak > 0 for seconds, peak in rows.values()):
        raise CheckFailed(f"measure() returned times and peaks that are not all positive: {rows}")
    (composite_time, composite_peak), (fused_time, fused_peak) = rows["composite"], rows["fused"]
    report.ok(
        f"measure(256 x 1000): composite {1000 * composite_time:.2f} ms, {composite_peak / 2**20:.1f} MiB; "
        f"fused {1000 * fused_time:.2f} ms, {fused_peak / 2**20:.1f} MiB "
        f"({composite_time / fused_time:.1f}x the speed, {fused_peak / composite_peak:.2f}x the memory)"
    )
