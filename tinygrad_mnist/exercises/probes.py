"""Probes: what the parent re-checks in its own process (process.py). An exercise's `probes(rng)`
lists fresh cases for the learner's ops, drawn from this run's seed: the child runs them with the
learner's code, the parent draws the same cases and compares the results with the reference."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..tensor import Tensor
from .common import CheckFailed, call, first_mismatch, quiet_reference, read_only


class Probe(NamedTuple):
    """A fresh case for the learner's op `op` (a name in NAMES): the child runs it, the parent
    compares the output and gradients with `reference` (as check_op's); `needs` as check_op's."""

    op: str
    label: str
    arrays: list
    options: dict
    reference: Callable
    needs: tuple | None = None
    rtol: float = 1e-6
    atol: float = 1e-9


SUSPECT = ("the steps above passed in the process that ran your file, so something there changed "
           "what they saw: does your file assign to numpy or to the checker's modules?")


def probe_cases(probes, rng):
    """(probe, grad_out, needs) for each of `probes(rng)`: the same in both processes, from one seed."""
    cases = []
    for probe in probes(rng):
        expected_out, _ = quiet_reference(probe.reference, None, *probe.arrays, **probe.options)
        grad_out = rng.standard_normal(np.shape(expected_out))
        needs = probe.needs
        if needs is None:
            _, gradients = quiet_reference(probe.reference, grad_out, *probe.arrays, **probe.options)
            needs = tuple(gradient is not None for gradient in gradients)
        cases.append((probe, grad_out, needs))
    return cases


def run_op_probes(module, probes, rng):
    """In the child: the learner's ops on the probes' inputs; {"i.out": ..., "i.grad.k": ...}."""
    results = {}
    for index, (probe, grad_out, needs) in enumerate(probe_cases(probes, rng)):
        op = getattr(module, probe.op)
        tensors = [Tensor(np.array(a, dtype=np.float64), requires_grad=need) for a, need in zip(probe.arrays, needs)]
        out = call(module, f"{probe.op}.forward ({probe.label})", op.apply, *tensors, **probe.options)
        grads = call(module, f"{probe.op}.backward ({probe.label})", op.backward, out.grad_fn, read_only(grad_out))
        grads = grads if isinstance(grads, (tuple, list)) else (grads,)
        results[f"{index}.out"] = out.data
        for position, grad in enumerate(grads):
            if grad is not None:
                results[f"{index}.grad.{position}"] = call(module, f"{probe.op}.backward's gradient", np.asarray, grad, dtype=np.float64)
    return results


def verify_op_probes(probes, results, rng):
    """In the parent: each probe's output and gradients against the reference, with this process's numpy."""
    for index, (probe, grad_out, needs) in enumerate(probe_cases(probes, rng)):
        expected_out, expected_grads = quiet_reference(probe.reference, grad_out, *probe.arrays, **probe.options)
        wanted = [(f"{index}.out", "forward", expected_out, probe.rtol, probe.atol)]
        wanted += [(f"{index}.grad.{position}", f"backward's gradient for input {position}", want, 1e-5, 1e-8)
                   for position, want in enumerate(expected_grads) if want is not None and needs[position]]
        for key, what, want, rtol, atol in wanted:
            got = results.get(key)
            if got is None or got.shape != np.shape(want):
                problem = "is missing" if got is None else f"has shape {got.shape}, expected {np.shape(want)}"
            else:
                bad = first_mismatch(got, want, rtol, atol)
                if bad is None:
                    continue
                problem = f"at index {bad} is {got[bad]:.10g}, expected {np.asarray(want)[bad]:.10g}"
            raise CheckFailed(
                f"re-checked in the checker's own process on fresh inputs ({probe.op}, {probe.label}), "
                f"{probe.op}'s {what} {problem}; {SUSPECT}"
            )
