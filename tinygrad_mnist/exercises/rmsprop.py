"""Exercise 5: RMSprop. A subclass of the Optimizer base; several steps against the formula, with
and without momentum (and against torch.optim.RMSprop when torch is installed); state_dict and
load_state_dict resuming exactly; its first step beside the library's optim.Adam; parameters
without a gradient skipped, float32 kept, and a training run. The probe reruns the formula and the
resume on fresh numbers for the parent."""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from .common import CheckFailed, call, load_mnist_subset, train_and_score
from .probes import SUSPECT

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


def run(module, settings, starts, gradients, resume_at=None):
    """The learner's RMSprop on parameters `starts`, one step per set of gradients; returns the
    parameters' arrays and the keys of state_dict() at the break. With `resume_at`, the run stops
    after that many steps, as a checkpoint keeps it (the parameters and a copy of state_dict()),
    and goes on in a new RMSprop after load_state_dict()."""
    params = [Tensor(start.copy(), requires_grad=True) for start in starts]
    optimizer = call(module, f"RMSprop(params, **{settings})", module.RMSprop, params, **settings)
    saved = None
    for count, step in enumerate(gradients):
        if count == resume_at:
            saved = call(module, "RMSprop.state_dict", copied_state, optimizer)
            params = [Tensor(p.data.copy(), requires_grad=True) for p in params]
            optimizer = call(module, f"RMSprop(params, **{settings})", module.RMSprop, params, **settings)
            call(module, "RMSprop.load_state_dict", optimizer.load_state_dict, saved)
        call(module, "RMSprop.zero_grad", optimizer.zero_grad)
        if any(p.grad is not None for p in params):
            raise CheckFailed("zero_grad() left gradients behind; it should set every parameter's .grad to None")
        for param, grad in zip(params, step):
            (param * Tensor(grad)).sum().backward()  # d/d param = grad
        call(module, "RMSprop.step", optimizer.step)
    return [p.data for p in params], sorted(saved or ())


def copied_state(optimizer):
    """optimizer.state_dict(), its arrays copied, as a checkpoint file keeps them."""
    return {key: np.array(value) for key, value in optimizer.state_dict().items()}


def check_resume(module, settings, starts, gradients):
    """Saved after 3 of 6 steps and restored into a new RMSprop, the run ends where it ends unbroken."""
    straight, _ = run(module, settings, starts, gradients)
    resumed, keys = run(module, settings, starts, gradients, resume_at=3)
    if all(np.allclose(a, b, rtol=1e-12, atol=1e-15) for a, b in zip(straight, resumed)):
        return
    raise CheckFailed(
        f"saved with state_dict() after 3 of 6 steps (settings {settings or 'left out'}) and restored with "
        f"load_state_dict() into a new RMSprop, parameter 1 ends at {resumed[1][:2]}...; without the break "
        f"it ends at {straight[1][:2]}... (state_dict() held {keys or 'nothing'})", "state-not-saved"
    )


def probe_case(rng):
    """Settings, two starting parameters and six steps of gradients, drawn for one run."""
    settings = {"lr": float(rng.uniform(0.001, 0.1)), "alpha": float(rng.uniform(0.8, 0.99)),
                "eps": 1e-8, "momentum": float(rng.uniform(0.1, 0.9))}
    starts = [rng.standard_normal((3, 2)), rng.standard_normal(5)]
    gradients = [[rng.standard_normal((3, 2)) * scale, rng.standard_normal(5) * scale] for scale in 10.0 ** rng.uniform(-2, 2, 6)]
    return settings, starts, gradients


def probe(module, rng):
    """In the child: the learner's RMSprop on this run's numbers, unbroken and resumed after step 3."""
    settings, starts, gradients = probe_case(rng)
    results = {f"straight.{i}": p for i, p in enumerate(run(module, settings, starts, gradients)[0])}
    results.update({f"resumed.{i}": p for i, p in enumerate(run(module, settings, starts, gradients, resume_at=3)[0])})
    return results


def verify(results, rng):
    """In the parent: both runs against the formula."""
    settings, starts, gradients = probe_case(rng)
    for index, start in enumerate(starts):
        want = by_formula(start, [step[index] for step in gradients], **settings)
        for run_kind in ("straight", "resumed"):
            got = results.get(f"{run_kind}.{index}")
            if got is None or got.shape != want.shape or not np.allclose(got, want, rtol=1e-9, atol=1e-12):
                raise CheckFailed(
                    f"re-checked in the checker's own process on fresh numbers ({settings}), the "
                    f"{'unbroken' if run_kind == 'straight' else 'resumed'} run ends with parameter {index} at "
                    f"{None if got is None else got.reshape(-1)[:3]}..., the formula gives {want.reshape(-1)[:3]}...; {SUSPECT}"
                )


def check(module, report, train=True):
    RMSprop = module.RMSprop
    if not (isinstance(RMSprop, type) and issubclass(RMSprop, Optimizer)):
        raise CheckFailed("RMSprop should subclass Optimizer, calling super().__init__(params); zero_grad() comes from the base")
    rng = np.random.default_rng(5)
    starts = [rng.standard_normal((3, 4)), rng.standard_normal(4)]
    gradients = [[rng.standard_normal((3, 4)) * scale, rng.standard_normal(4) * scale] for scale in (1.0, 0.01, 100.0, 1.0, 0.1)]

    for settings in ({}, {"lr": 0.1, "alpha": 0.9}, {"momentum": 0.9}, {"lr": 0.003, "eps": 1e-3, "momentum": 0.5}):
        got, _ = run(module, settings, starts, gradients)
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

    six = gradients + [[rng.standard_normal((3, 4)), rng.standard_normal(4)]]
    for settings in ({}, {"momentum": 0.9}):
        check_resume(module, settings, starts, six)
    report.ok("state_dict() and load_state_dict(): saved after 3 of 6 steps and restored into a new RMSprop, the run ends exactly where it ends unbroken (with and without momentum)")

    try:
        import torch
    except ImportError:
        report.note("torch is not installed: the comparison with torch.optim.RMSprop is skipped")
    else:
        settings = {"lr": 0.01, "alpha": 0.9, "momentum": 0.9}
        got, _ = run(module, settings, starts, gradients)
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

    yours = run(module, {}, [np.zeros(3)], [[np.full(3, 0.5)]])[0][0]  # one step of g = 0.5 from 0
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
