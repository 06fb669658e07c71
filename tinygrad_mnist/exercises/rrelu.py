"""Exercise 4: RReLU. The op with its noise fixed (forward, backward, gradcheck), then the layer:
random slopes in the right range in training, fresh at each call, the same ones in forward and
backward, the mean slope in evaluation, and a training run."""

from __future__ import annotations

import numpy as np

from ..gradcheck import GradcheckError, gradcheck
from ..tensor import Tensor
from .common import CheckFailed, call, check_op, load_mnist_subset, train_and_score
from .probes import Probe

TITLE = "RReLU, a layer with randomness and train()/eval() modes"
NAMES = ("SlopedReLU", "RReLU")
LOWER, UPPER = 1 / 8, 1 / 3  # PyTorch's defaults


def reference(grad_out, x, slopes):
    local = np.where(x >= 0, 1.0, slopes)
    return x * local, (None if grad_out is None else (grad_out * local, None))


def probes(rng):
    """Fresh cases for the parent to re-check (see process.py): drawn anew every run."""
    return [Probe("SlopedReLU", "(4, 5), slopes given", [rng.standard_normal((4, 5)) * 3, rng.uniform(LOWER, UPPER, (4, 5))],
                  {}, reference, needs=(True, False))]


def check(module, report, train=True):
    SlopedReLU, RReLU = module.SlopedReLU, module.RReLU
    rng = np.random.default_rng(4)
    given = rng.uniform(LOWER, UPPER, size=(20, 10))
    probe = Tensor(-np.ones((20, 10)), requires_grad=True)
    out = call(module, "SlopedReLU.forward", SlopedReLU.apply, probe, Tensor(given))
    call(module, "SlopedReLU.backward", out.backward, np.ones((20, 10)))
    if probe.grad is not None and not np.allclose(probe.grad, given) and np.all((probe.grad >= LOWER) & (probe.grad <= UPPER)):
        raise CheckFailed("SlopedReLU.backward's slopes are random, but not the ones forward was given", "noise-drawn-twice")
    for label, shape in (("(3, 4)", (3, 4)), ("(2, 3, 5)", (2, 3, 5))):
        x = rng.standard_normal(shape) * 3
        slopes = rng.uniform(LOWER, UPPER, size=shape)
        check_op(module, SlopedReLU, [x, slopes], {}, reference, label, needs=[True, False])
    try:
        slopes = rng.uniform(LOWER, UPPER, size=(3, 4))
        gradcheck(lambda t: SlopedReLU.apply(t, Tensor(slopes)), [Tensor(rng.standard_normal((3, 4)) + 0.01, requires_grad=True)])
    except GradcheckError as error:
        raise CheckFailed(str(error)) from None
    report.ok("SlopedReLU: forward, backward and gradcheck, with the slopes given")

    layer = call(module, "RReLU()", RReLU, rng=np.random.default_rng(0))
    if (getattr(layer, "lower", None), getattr(layer, "upper", None)) != (LOWER, UPPER):
        raise CheckFailed(f"RReLU's defaults should be lower=1/8, upper=1/3 (PyTorch's); got {getattr(layer, 'lower', None)}, {getattr(layer, 'upper', None)}")
    x = Tensor(np.concatenate([-np.ones((400, 50)), np.ones((1, 50))]), requires_grad=True)
    out = call(module, "RReLU.forward in training", layer, x)
    slopes = out.data[:-1] / x.data[:-1]
    if not np.array_equal(out.data[-1], x.data[-1]):
        raise CheckFailed("in training, RReLU changed positive inputs; they pass through unchanged")
    if slopes.std() < 0.01:
        raise CheckFailed(f"in training mode every negative element got the same slope ({slopes.mean():.4g}); draw one per element from U(lower, upper)", "mode-ignored")
    if slopes.min() < LOWER - 1e-12 or slopes.max() > UPPER + 1e-12 or abs(slopes.mean() - (LOWER + UPPER) / 2) > 0.01:
        raise CheckFailed(f"training slopes should be uniform in [1/8, 1/3] (mean 0.229); got min {slopes.min():.4g}, max {slopes.max():.4g}, mean {slopes.mean():.4g}")
    report.ok(f"training: a slope per element, uniform in [1/8, 1/3] (mean {slopes.mean():.3f} over 20,000); positive inputs unchanged")

    call(module, "SlopedReLU.backward through RReLU", out.backward, np.ones(out.shape))
    if not np.allclose(x.grad[:-1], slopes):
        raise CheckFailed("the gradient through RReLU is not the slope forward used: d out/d x must be the same random slope that made out", "noise-drawn-twice")
    again = call(module, "RReLU.forward in training", layer, Tensor(x.data)).data[:-1] / x.data[:-1]
    if np.allclose(again, slopes):
        raise CheckFailed("two calls in training mode used the same slopes; draw fresh ones at every call")
    report.ok("training: backward uses forward's slopes; each call draws new ones")

    layer.eval()
    first = call(module, "RReLU.forward in eval mode", layer, Tensor(x.data)).data
    second = call(module, "RReLU.forward in eval mode", layer, Tensor(x.data)).data
    expected = np.where(x.data >= 0, x.data, x.data * (LOWER + UPPER) / 2)
    if not np.allclose(first, expected) or not np.array_equal(first, second):
        raise CheckFailed("after eval(), RReLU must be deterministic: slope (lower + upper) / 2 = 0.229 for every negative element", "mode-ignored")
    layer.train()
    if np.array_equal(call(module, "RReLU.forward after train()", layer, Tensor(x.data)).data, first):
        raise CheckFailed("after train() again, RReLU is still deterministic", "mode-ignored")
    report.ok("eval(): every slope is the mean, 0.229, the same at every call; train() brings the noise back")

    if train:
        from .. import nn, optim

        data = load_mnist_subset(10_000, 2_000)
        init = np.random.default_rng(0)
        model = nn.Sequential(nn.Linear(784, 128, rng=init), RReLU(rng=np.random.default_rng(1)), nn.Linear(128, 10, rng=init))
        accuracy, _ = train_and_score(model, optim.SGD(model.parameters(), lr=0.05, momentum=0.9), data)
        if accuracy < 0.85:
            raise CheckFailed(f"a 784-128-10 MLP with RReLU reached {100 * accuracy:.1f}% after one epoch on 10,000 images; expected at least 85%")
        report.ok(f"trains: a 784-128-10 MLP with RReLU reaches {100 * accuracy:.1f}% test accuracy (evaluated in eval mode) after one epoch on 10,000 images")
