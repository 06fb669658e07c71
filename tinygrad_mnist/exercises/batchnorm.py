"""Exercise 7: BatchNorm1d. The training-mode op against the formula (eps left out and given) and
gradcheck; the layer's parameters and running state; running estimates after several batches;
evaluation with them; the library's own nn.BatchNorm1d; torch.nn.BatchNorm1d when installed; a training run."""

from __future__ import annotations

import numpy as np

from ..gradcheck import GradcheckError, gradcheck
from ..tensor import Tensor
from .common import DIAGNOSES, CheckFailed, call, check_op, load_mnist_subset, train_and_score
from .probes import Probe

TITLE = "BatchNorm1d, a layer with parameters and running state"
NAMES = ("BatchNormFunction", "BatchNorm1d")

_PATHS = ("an input x_i reaches the loss three ways: directly through x_hat_i, through the batch mean and "
          "through the batch variance (every x_hat_j uses both). ")
DIAGNOSES.update({
    "mean-path-missing": _PATHS + "Your dL/dx lacks the mean's path: subtract mean_j(g_j), the gradient the "
    "mean passes back (d mean/d x_i = 1/N).",
    "variance-path-missing": _PATHS + "Your dL/dx lacks the variance's path: subtract x_hat_i * mean_j(g_j x_hat_j), "
    "from d var/d x_i = 2 (x_i - mean) / N and d x_hat_j/d var = -(x_j - mean) / (2 sigma^3).",
    "mean-and-variance-paths-missing": _PATHS + "Your dL/dx is g / sigma, the direct path alone, as if mean and "
    "variance were constants: subtract mean_j(g_j) and x_hat_i * mean_j(g_j x_hat_j), then divide by sigma.",
})
# dL/dx when paths through the batch statistics are left out (g = grad_out * weight)
PARTIAL_GRADIENTS = {
    "mean-and-variance-paths-missing": lambda g, x_hat, sigma: g / sigma,
    "variance-path-missing": lambda g, x_hat, sigma: (g - g.mean(axis=0)) / sigma,
    "mean-path-missing": lambda g, x_hat, sigma: (g - x_hat * (g * x_hat).mean(axis=0)) / sigma,
}


def missing_paths(function, arrays, options):
    """The diagnosis naming the paths the learner's dL/dx leaves out, or None."""
    x, weight, bias = arrays
    eps = options.get("eps", 1e-5)
    grad_out = np.random.default_rng(0).standard_normal(x.shape)
    tensors = [Tensor(array, requires_grad=True) for array in arrays]
    try:
        (function.apply(*tensors, **options) * grad_out).sum().backward()
    except Exception:  # noqa: BLE001 - a crash has its own message; this only names a wrong value
        return None
    sigma = np.sqrt(x.var(axis=0) + eps)
    x_hat, g = (x - x.mean(axis=0)) / sigma, grad_out * weight
    for diagnosis, partial in PARTIAL_GRADIENTS.items():
        if tensors[0].grad is not None and np.allclose(tensors[0].grad, partial(g, x_hat, sigma), rtol=1e-6, atol=1e-9):
            return diagnosis
    return None


def reference(grad_out, x, weight, bias, eps=1e-5):
    mean, var = x.mean(axis=0), x.var(axis=0)
    x_hat = (x - mean) / np.sqrt(var + eps)
    out = x_hat * weight + bias
    if grad_out is None:
        return out, None
    g = grad_out * weight
    count = x.shape[0]
    grad_x = (count * g - g.sum(axis=0) - x_hat * (g * x_hat).sum(axis=0)) / (count * np.sqrt(var + eps))
    return out, (grad_x, (grad_out * x_hat).sum(axis=0), grad_out.sum(axis=0))


def running_by_formula(batches, momentum=0.1):
    features = batches[0].shape[1]
    mean, var = np.zeros(features), np.ones(features)
    for batch in batches:
        mean = (1 - momentum) * mean + momentum * batch.mean(axis=0)
        var = (1 - momentum) * var + momentum * batch.var(axis=0, ddof=1)
    return mean, var


def probes(rng):
    """Fresh cases for the parent to re-check (see process.py): drawn anew every run."""
    arrays = [rng.standard_normal((6, 4)) * 2 + 1, rng.standard_normal(4), rng.standard_normal(4)]
    return [Probe("BatchNormFunction", "x (6, 4), eps drawn", arrays, {"eps": float(rng.uniform(0.01, 1))}, reference, atol=1e-7)]


def check(module, report, train=True):
    Function, BatchNorm1d = module.BatchNormFunction, module.BatchNorm1d
    rng = np.random.default_rng(7)
    cases = [
        ("x (8, 5), eps left out", {}),
        ("x (8, 5), eps=0.1", {"eps": 0.1}),
        ("x (3, 5), eps=1.0", {"eps": 1.0}),
    ]
    for label, options in cases:
        rows = int(label[3])
        arrays = [rng.standard_normal((rows, 5)) * 3 + 1, rng.standard_normal(5), rng.standard_normal(5)]
        try:
            check_op(module, Function, arrays, options, reference, label, rtol=1e-6, atol=1e-7)
        except CheckFailed as failure:
            if failure.diagnosis is None and "backward is wrong for input 0" in failure.message:
                failure.diagnosis = missing_paths(Function, arrays, options)
            raise
    try:
        gradcheck(lambda x, w, b: Function.apply(x, w, b, eps=0.01),
                  [Tensor(rng.standard_normal((6, 3)), requires_grad=True), Tensor(rng.standard_normal(3), requires_grad=True), Tensor(rng.standard_normal(3), requires_grad=True)])
    except GradcheckError as error:
        raise CheckFailed(str(error)) from None
    report.ok("BatchNormFunction: output and the three gradients match the formula (eps left out, 0.1, 1.0); gradcheck passes")

    layer = call(module, "BatchNorm1d(5)", BatchNorm1d, 5)
    names = [name for name, _ in layer.named_parameters()]
    if names != ["weight", "bias"]:
        raise CheckFailed(f"BatchNorm1d's parameters should be named ['weight', 'bias'] (PyTorch's names); got {names}")
    if not (np.array_equal(layer.weight.data, np.ones(5)) and np.array_equal(layer.bias.data, np.zeros(5)) and layer.weight.dtype == np.float32):
        raise CheckFailed("BatchNorm1d should start with weight = 1 and bias = 0, float32")
    running = getattr(layer, "running_mean", None), getattr(layer, "running_var", None)
    if any(not isinstance(array, np.ndarray) for array in running) or not (np.array_equal(running[0], np.zeros(5)) and np.array_equal(running[1], np.ones(5))):
        raise CheckFailed("BatchNorm1d should start with running_mean = zeros and running_var = ones, as numpy arrays (not parameters)")
    report.ok("BatchNorm1d(5): parameters weight (1s) and bias (0s); running_mean 0s and running_var 1s, not parameters")

    batches = [(rng.standard_normal((16, 5)) * rng.uniform(0.5, 3, 5) + rng.uniform(-2, 2, 5)).astype(np.float32) for _ in range(4)]
    for batch in batches:
        out = call(module, "BatchNorm1d.forward in training", layer, Tensor(batch))
    if not np.allclose(out.data.mean(axis=0), 0, atol=1e-4) or not np.allclose(out.data.var(axis=0), 1, atol=1e-3):
        raise CheckFailed("in training, every feature of the output should have mean 0 and (biased) variance 1 over the batch")
    want_mean, want_var = running_by_formula([b.astype(np.float64) for b in batches])
    got_mean, got_var = np.asarray(layer.running_mean, np.float64), np.asarray(layer.running_var, np.float64)
    if not np.allclose(got_mean, want_mean, rtol=1e-5, atol=1e-6) or not np.allclose(got_var, want_var, rtol=1e-5, atol=1e-6):
        diagnosis = None
        if np.allclose(got_mean, want_mean, rtol=1e-5, atol=1e-6):
            biased = running_by_formula([b.astype(np.float64) * np.sqrt(15 / 16) + b.mean(axis=0) * (1 - np.sqrt(15 / 16)) for b in batches])[1]
            diagnosis = "running-var-biased" if np.allclose(got_var, biased, rtol=1e-4) else None
        elif np.allclose(got_mean, running_by_formula([b.astype(np.float64) for b in batches], momentum=0.9)[0], rtol=1e-5, atol=1e-6):
            diagnosis = "momentum-reversed"
        raise CheckFailed(
            f"after 4 training batches, running_mean is {got_mean.round(4)} and running_var {got_var.round(4)}; "
            f"expected {want_mean.round(4)} and {want_var.round(4)}", diagnosis
        )
    report.ok("training: output normalized per feature; running_mean and running_var right after 4 batches")

    layer.eval()
    test = (rng.standard_normal((6, 5)) * 2).astype(np.float32)
    before = layer.running_mean.copy(), layer.running_var.copy()
    got = call(module, "BatchNorm1d.forward in eval mode", layer, Tensor(test)).data
    want = (test - want_mean) / np.sqrt(want_var + 1e-5)
    if not np.array_equal(layer.running_mean, before[0]) or not np.array_equal(layer.running_var, before[1]):
        raise CheckFailed("in eval mode the running estimates must stay as they are; update them only in training", "mode-ignored")
    if not np.allclose(got, want, rtol=1e-4, atol=1e-5):
        batch_normalized = (test - test.mean(axis=0)) / np.sqrt(test.var(axis=0) + 1e-5)
        raise CheckFailed(
            "in eval mode, normalize with running_mean and running_var, not with the batch's own statistics",
            "mode-ignored" if np.allclose(got, batch_normalized, rtol=1e-4, atol=1e-5) else None,
        )
    single = call(module, "BatchNorm1d.forward in eval mode on one example", layer, Tensor(test[:1])).data
    if not np.allclose(single, want[:1], rtol=1e-4, atol=1e-5):
        raise CheckFailed("in eval mode one example alone must give the same output as inside a batch")
    report.ok("eval(): normalizes with the running estimates, leaves them unchanged; one example alone works")

    from .. import nn

    ours, builtin = BatchNorm1d(5, momentum=0.2), nn.BatchNorm1d(5, momentum=0.2)
    for batch in batches:
        out, want = ours(Tensor(batch)), builtin(Tensor(batch))
    if not (np.allclose(out.data, want.data, atol=1e-4) and np.allclose(ours.running_mean, builtin.running_mean, atol=1e-5)
            and np.allclose(ours.running_var, builtin.running_var, atol=1e-5)):
        raise CheckFailed("BatchNorm1d (momentum 0.2) disagrees with the library's nn.BatchNorm1d on the output or the running estimates")
    report.ok("agrees with the library's nn.BatchNorm1d(5, momentum=0.2): outputs and running estimates after 4 batches")

    try:
        import torch
    except ImportError:
        report.note("torch is not installed: the comparison with torch.nn.BatchNorm1d is skipped")
    else:
        ours, theirs = BatchNorm1d(5, momentum=0.2), torch.nn.BatchNorm1d(5, momentum=0.2)
        for batch in batches:
            x = Tensor(batch, requires_grad=True)
            out = ours(x)
            (out * Tensor(np.arange(5, dtype=np.float32))).sum().backward()
            tx = torch.tensor(batch, requires_grad=True)
            tout = theirs(tx)
            (tout * torch.arange(5.0)).sum().backward()
        same = (np.allclose(out.data, tout.detach().numpy(), atol=1e-4) and np.allclose(x.grad, tx.grad.numpy(), atol=1e-4)
                and np.allclose(ours.weight.grad, theirs.weight.grad.numpy(), atol=1e-3)
                and np.allclose(ours.running_var, theirs.running_var.numpy(), atol=1e-5))
        if not same:
            raise CheckFailed("BatchNorm1d (momentum 0.2) disagrees with torch.nn.BatchNorm1d on the output, the gradients or the running estimates")
        report.ok("agrees with torch.nn.BatchNorm1d(5, momentum=0.2): outputs, gradients, running estimates")

    if train:
        from .. import nn, optim

        init = np.random.default_rng(0)
        model = nn.Sequential(nn.Linear(784, 128, rng=init), BatchNorm1d(128), nn.LeakyReLU(), nn.Linear(128, 10, rng=init))
        data = load_mnist_subset(10_000, 2_000)
        accuracy, _ = train_and_score(model, optim.SGD(model.parameters(), lr=0.05, momentum=0.9), data)
        if accuracy < 0.85:
            raise CheckFailed(f"a 784-128-BatchNorm-10 MLP reached {100 * accuracy:.1f}% after one epoch on 10,000 images; expected at least 85%")
        report.ok(f"trains: Linear, BatchNorm1d, LeakyReLU, Linear reaches {100 * accuracy:.1f}% test accuracy (eval mode) after one epoch on 10,000 images")
