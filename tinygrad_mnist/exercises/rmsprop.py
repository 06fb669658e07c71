"""Exercise 5: RMSprop. A subclass of the Optimizer base; several steps against the formula, with
and without momentum (and against torch.optim.RMSprop when torch is installed); its first step
beside the library's optim.Adam; parameters without a gradient skipped, float32 kept, a training run."""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from .common import CheckFailed, call, load_mnist_subset, train_and_score

from ..optim import Optimizer

TITLE = "RMSprop, an optimizer on the Optimizer base"
NAMES = ("RMSprop",)


def by_formula(start, gradients, lr=0.01, alpha=0.99, eps=1e-8, momentum=0.0):
    """The parameter after one RMSprop step per gradient, straight from the formula."""
    square, buffer, p = np.zeros_like(start), np.zeros_like(start), start.copy()
    for g in gradients:
        square = alpha * square + (1 - alpha) * g**2
        update = g / (np.sqrt(square) + eps)
        buffer = momentum * buffer + update
        p = p - lr * (buffer if momentum else update)
    return p


def run(module, settings, starts, gradients):
    """The learner's RMSprop on parameters `starts`, one step per set of gradients."""
    params = [Tensor(start.copy(), requires_grad=True) for start in starts]
    optimizer = call(module, f"RMSprop(params, **{settings})", module.RMSprop, params, **settings)
    for step in gradients:
        call(module, "RMSprop.zero_grad", optimizer.zero_grad)
        if any(p.grad is not None for p in params):
            raise CheckFailed("zero_grad() left gradients behind; it should set every parameter's .grad to None")
        for param, grad in zip(params, step):
            (param * Tensor(grad)).sum().backward()  # d/d param = grad
        call(module, "RMSprop.step", optimizer.step)
    return [p.data for p in params]


def check(module, report, train=True):
    RMSprop = module.RMSprop
    if not (isinstance(RMSprop, type) and issubclass(RMSprop, Optimizer)):
        raise CheckFailed("RMSprop should subclass Optimizer, calling super().__init__(params); zero_grad() comes from the base")
    rng = np.random.default_rng(5)
    starts = [rng.standard_normal((3, 4)), rng.standard_normal(4)]
    gradients = [[rng.standard_normal((3, 4)) * scale, rng.standard_normal(4) * scale] for scale in (1.0, 0.01, 100.0, 1.0, 0.1)]

    for settings in ({}, {"lr": 0.1, "alpha": 0.9}, {"momentum": 0.9}, {"lr": 0.003, "eps": 1e-3, "momentum": 0.5}):
        got = run(module, settings, starts, gradients)
        for index, (param, start) in enumerate(zip(got, starts)):
            want = by_formula(start, [step[index] for step in gradients], **settings)
            if np.allclose(param, want, rtol=1e-9, atol=1e-12):
                continue
            moved, should = param - start, want - start
            if np.allclose(moved, -should, rtol=1e-6, atol=1e-12):
                raise CheckFailed(f"with {settings or 'the defaults'}, every parameter moved up its gradient, not down", "wrong-sign")
            raise CheckFailed(
                f"with {settings or 'the defaults'}, after 5 steps parameter {index} is {param.reshape(-1)[:3]}..., "
                f"the formula gives {want.reshape(-1)[:3]}... (check the order: square first, then the step with it)"
            )
    report.ok("5 steps of gradients from 0.01 to 100 match the formula: defaults (lr 0.01, alpha 0.99, eps 1e-8), other settings, momentum 0.5 and 0.9")

    try:
        import torch
    except ImportError:
        report.note("torch is not installed: the comparison with torch.optim.RMSprop is skipped")
    else:
        settings = {"lr": 0.01, "alpha": 0.9, "momentum": 0.9}
        got = run(module, settings, starts, gradients)
        params = [torch.tensor(start.copy(), requires_grad=True) for start in starts]
        optimizer = torch.optim.RMSprop(params, **settings, eps=1e-8)
        for step in gradients:
            optimizer.zero_grad()
            for param, grad in zip(params, step):
                param.grad = torch.tensor(grad)
            optimizer.step()
        if not all(np.allclose(a, b.detach().numpy(), rtol=1e-9, atol=1e-12) for a, b in zip(got, params)):
            raise CheckFailed("RMSprop disagrees with torch.optim.RMSprop (lr 0.01, alpha 0.9, momentum 0.9)")
        report.ok("agrees with torch.optim.RMSprop to 1e-9")

    from ..optim import Adam

    yours = run(module, {}, [np.zeros(3)], [[np.full(3, 0.5)]])[0]  # one step of g = 0.5 from 0
    adam = Tensor(np.zeros(3), requires_grad=True)
    adam.grad = np.full(3, 0.5)
    Adam([adam], lr=0.01).step()
    report.ok(f"first step with g = 0.5 and lr = 0.01: yours moved {abs(yours[0]):.3g} (10 lr), the library's optim.Adam "
              f"{abs(adam.data[0]):.3g} (lr: its bias correction removes the start-up effect)")

    used = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    unused = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    optimizer = call(module, "RMSprop([used, unused])", RMSprop, [used, unused], lr=0.1)
    (used * 2.0).sum().backward()
    call(module, "RMSprop.step", optimizer.step)
    if unused.data.tolist() != [1.0, 1.0, 1.0]:
        raise CheckFailed("a parameter without a gradient (.grad is None) must be left alone")
    if used.dtype != np.float32:
        raise CheckFailed(f"RMSprop turned a float32 parameter into {used.dtype}; cast the update to the parameter's dtype")
    report.ok("leaves parameters without a gradient alone; float32 stays float32")

    if train:
        from .. import nn

        data = load_mnist_subset(10_000, 2_000)
        model = nn.mlp([784, 128, 10], rng=np.random.default_rng(0))
        accuracy, _ = train_and_score(model, RMSprop(model.parameters(), lr=1e-3), data)
        if accuracy < 0.85:
            raise CheckFailed(f"RMSprop (lr 0.001) trained the 784-128-10 MLP to {100 * accuracy:.1f}% in one epoch on 10,000 images; expected at least 85%")
        report.ok(f"trains: RMSprop (lr 0.001) takes the 784-128-10 MLP to {100 * accuracy:.1f}% test accuracy in one epoch on 10,000 images")
