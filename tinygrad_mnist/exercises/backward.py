"""Exercise 0: backward(root), the walk itself. The learner's backward against the engine's on the
graphs every engine gets wrong once: a chain, a tensor used twice, a diamond, 10,000 ops in a
row, an op that ignores an input, a branch that needs no gradient, a broadcast add; each op's
backward is watched, so a visit in the wrong order (or twice) is named as such."""

from __future__ import annotations

import contextlib

import numpy as np

from .. import functional as F
from ..function import Function
from ..tensor import Tensor
from .common import DIAGNOSES, CheckFailed, describe

TITLE = "backward(root), the walk itself: order the graph, pop the summed gradient, add into the inputs"
NAMES = ("backward",)
CHAIN_LENGTH = 10_000

DIAGNOSES.update({
    "overwrote-instead-of-adding": "a tensor used twice receives one gradient from each use, and its "
    "gradient is their sum (the chain rule adds the paths). Add into the pending gradient, "
    "grads[t] = grads[t] + g when t already has one, instead of replacing it.",
    "visited-before-all-users": "an op may run its backward only when every op that uses its output "
    "has sent its gradient, and only once. Order the graph so that each tensor comes after every "
    "tensor it was made from (depth first, appending a tensor after its inputs), and walk that "
    "order backwards; a breadth-first order gets a diamond with paths of different lengths wrong.",
    "recursion-limit": "Python stops at about 1,000 nested calls, and a graph can be 10,000 ops deep. "
    "Order the graph with a loop and a stack of your own instead of a recursive function: push "
    "(tensor, False), and when popped push (tensor, True) and its inputs; a (tensor, True) popped "
    "means its inputs are done, so append it.",
    "branch-needs-no-gradient": "an input with requires_grad=False (images, labels, a constant) gets no "
    "gradient, and an op's backward returns None for an input that needs none: skip both, and "
    "leave their .grad None, as the engine does.",
    "unused-input": "an op may ignore an input and return None for it: then no gradient reaches that "
    "input, nor what it was made from. Skip a tensor that received nothing (grads.pop(t, None) is "
    "None), and leave its .grad None (not zeros): the engine never calls an op's backward without "
    "a gradient.",
    "shared-or-read-only-gradient": "an op may hand back a read-only view (Sum's backward broadcasts "
    "grad_out with np.broadcast_to) or one array for two inputs (Add returns grad_out for both when "
    "nothing was broadcast). Never add into such an array in place: write grads[t] = grads[t] + g, "
    "which makes a new array, and give each .grad an array of its own (grad.copy()).",
    "called-the-engine": "root.backward() and root.graph_order() are the engine's own walk: write it "
    "yourself from grad_fn, grad_fn.inputs and grad_fn.function.backward.",
})


class Pick(Function):
    """out = a (b is ignored).   d out/d a = 1; b gets no gradient (backward returns None for it)."""

    @staticmethod
    def forward(ctx, a, b):
        return a.copy()

    @staticmethod
    def backward(ctx, grad_out):
        return grad_out, None


def named(tensor, name):
    tensor.name = name
    return tensor


def parameter(rng, *shape, name):
    return Tensor(rng.standard_normal(shape), requires_grad=True, name=name)


# ----- the graphs: each builds (root, the tensors to compare), fresh and seeded every call -------
def chain():
    rng = np.random.default_rng(0)
    x, w, b = Tensor(rng.standard_normal(3), name="x"), parameter(rng, 3, name="w"), parameter(rng, 3, name="b")
    return ((x * w + b).tanh()).sum(), [w, b]


def used_twice():
    rng = np.random.default_rng(1)
    a = parameter(rng, 3, name="a")
    return (a * a + a).sum(), [a]  # a is used three times: d/da = 2a + 1


def diamond():
    rng = np.random.default_rng(2)
    x, w = Tensor(rng.standard_normal(4), name="x"), parameter(rng, 4, name="w")
    e = named(x * w, "e")
    # e reaches the root by a short path and a long one: a breadth-first walk visits e's op too early
    return (e + e.tanh().exp().log()).sum(), [w, e]


def long_chain():
    x = Tensor(np.array([0.5, -1.0]), requires_grad=True, name="x")
    out = x
    for _ in range(CHAIN_LENGTH):
        out = out * 1.0001
    return out.sum(), [x]


def unused_input():
    rng = np.random.default_rng(4)
    a, v = parameter(rng, 3, name="a"), parameter(rng, 3, name="v")
    ignored = named(v * 2.0, "ignored")  # requires grad, yet Pick sends it nothing
    return (Pick.apply(a * 3.0, ignored)).sum(), [a, v, ignored]


def branch_without_grad():
    rng = np.random.default_rng(5)
    images, weight = Tensor(rng.standard_normal((4, 5)), name="images"), parameter(rng, 3, 5, name="weight")
    labels, offset = Tensor(np.array([0.0, 2.0, 1.0, 2.0]), name="labels"), Tensor(rng.standard_normal(3), name="offset")
    constant = named(offset * 2.0, "constant")  # no input requires grad: no graph, no gradient
    logits = named(images @ weight.T + constant, "logits")
    return F.cross_entropy(logits, labels.data.astype(int)) + (logits * 0.0).sum(), [weight, logits, images, offset, constant]


def broadcast_add():
    rng = np.random.default_rng(6)
    a, b, c = parameter(rng, 4, 3, name="a"), parameter(rng, 3, name="b"), parameter(rng, 4, 3, name="c")
    s = named(a + b, "s")  # b (3,) broadcast over 4 rows
    return (s + c).sum() + (a * 2.0).sum(), [a, b, c, s]


GRAPHS = [
    # (label, graph, diagnosis when the gradients are wrong or the walk crashes here)
    ("a chain: tanh(x * w + b) summed", chain, None),
    ("a tensor used three times: a * a + a", used_twice, "overwrote-instead-of-adding"),
    ("a diamond: e + log(exp(tanh(e))), paths of different lengths", diamond, "visited-before-all-users"),
    (f"a chain of {CHAIN_LENGTH:,} ops", long_chain, "recursion-limit"),
    ("an op that ignores an input (its backward returns None for it)", unused_input, "unused-input"),
    ("a branch that needs no gradient: images, labels, a constant", branch_without_grad, "branch-needs-no-gradient"),
    ("a broadcast add: (a + b) + c with b (3,) against (4, 3), a used twice", broadcast_add, "shared-or-read-only-gradient"),
]


# ----- watching the learner's walk --------------------------------------------------------------
def op_classes(root):
    classes, seen, stack = set(), set(), [root]
    while stack:
        tensor = stack.pop()
        if tensor.grad_fn is not None and id(tensor) not in seen:
            seen.add(id(tensor))
            classes.add(tensor.grad_fn.function)
            stack.extend(tensor.grad_fn.inputs)
    return classes


class EngineCalled(Exception):
    pass


@contextlib.contextmanager
def watched(root):
    """Record every op backward the learner calls (as a list of Contexts, in order); refuse the
    engine's own walk while the learner's backward runs."""
    visits, originals = [], {}
    for function in op_classes(root):
        originals[function] = function.__dict__.get("backward")
        inner = function.backward

        def recording(ctx, grad_out, inner=inner):
            visits.append(ctx)
            return inner(ctx, grad_out)

        function.backward = staticmethod(recording)
    engine = {name: Tensor.__dict__[name] for name in ("backward", "graph_order")}

    def refuse(self, *args, **kwargs):
        raise EngineCalled()

    Tensor.backward = Tensor.graph_order = refuse
    try:
        yield visits
    finally:
        for name, method in engine.items():
            setattr(Tensor, name, method)
        for function, method in originals.items():
            if method is None:
                del function.backward  # it inherited backward; the wrapper was its own
            else:
                function.backward = method


def run_learner(module, root, label, diagnosis):
    """module.backward(root) under watch; its crashes become CheckFailed with the right diagnosis."""
    path = getattr(module, "__checked_path__", None)
    with watched(root) as visits:
        try:
            module.backward(root)
        except NotImplementedError:
            raise CheckFailed("backward is not written yet (it raises NotImplementedError)", "not-implemented") from None
        except EngineCalled:
            raise CheckFailed(f"your backward called the engine's walk ({label})", "called-the-engine") from None
        except RecursionError:
            raise CheckFailed(f"backward({label}) raised RecursionError: maximum recursion depth exceeded", "recursion-limit") from None
        except Exception as error:  # noqa: BLE001 - the learner's crash, named where it is a known one
            text = str(error)
            if isinstance(error, ValueError) and "read-only" in text:
                named_as = "shared-or-read-only-gradient"
            elif "NoneType" in text or isinstance(error, KeyError):
                named_as = diagnosis if diagnosis in ("unused-input", "branch-needs-no-gradient") else "unused-input"
            else:
                named_as = None
            raise CheckFailed(f"backward raised {describe(error, path)} ({label})", named_as) from None
    return visits


def check_order(visits, root, label):
    """Each op visited once, and only after every op that uses its output."""
    users = {}  # id(ctx) -> the contexts of the ops that use its output
    outputs = {}
    stack, seen = [root], set()
    while stack:
        tensor = stack.pop()
        if tensor.grad_fn is None or id(tensor) in seen:
            continue
        seen.add(id(tensor))
        outputs[id(tensor.grad_fn)] = tensor
        for parent in tensor.grad_fn.inputs:
            if parent.grad_fn is not None:
                users.setdefault(id(parent.grad_fn), []).append(tensor.grad_fn)
            stack.append(parent)
    done, visited = set(), {id(ctx) for ctx in visits}
    for ctx in visits:
        name = ctx.function.__name__
        if id(ctx) in done:
            raise CheckFailed(f"backward called the backward of the {name} op making "
                              f"{_name(outputs.get(id(ctx)))} twice ({label})", "visited-before-all-users")
        waiting = [user for user in users.get(id(ctx), []) if id(user) in visited and id(user) not in done]
        if waiting:
            raise CheckFailed(f"backward visited the {name} op making {_name(outputs.get(id(ctx)))} before the "
                              f"{waiting[0].function.__name__} op that uses it had sent its gradient ({label})",
                              "visited-before-all-users")
        done.add(id(ctx))


def _name(tensor):
    return "a tensor" if tensor is None else (tensor.name or f"a tensor of shape {tensor.shape}")


def compare(learner_tensors, engine_tensors, label, diagnosis):
    for mine, engine in zip(learner_tensors, engine_tensors):
        name = engine.name
        if engine.grad is None:
            if mine.grad is not None:
                why = "no gradient reaches it" if engine.requires_grad else "it does not require grad"
                raise CheckFailed(f"{name}.grad should stay None ({label}): {why}, "
                                  f"but your backward set it to {_show(mine.grad)}", diagnosis)
            continue
        if mine.grad is None:
            raise CheckFailed(f"{name}.grad is None after your backward ({label}); the engine gives {_show(engine.grad)}", diagnosis)
        got = np.asarray(mine.grad)
        if got.shape != engine.grad.shape:
            raise CheckFailed(f"{name}.grad has shape {got.shape}; it has the shape of {name}, {engine.grad.shape} ({label})", diagnosis)
        if not np.allclose(got, engine.grad, rtol=1e-10, atol=1e-12):
            raise CheckFailed(f"{name}.grad is {_show(got)}; the engine gives {_show(engine.grad)} ({label})", diagnosis)


def check_own_arrays(tensors, label):
    """Each .grad writeable and not sharing memory with another's, as the engine leaves them."""
    grads = [(tensor.name, tensor.grad) for tensor in tensors if isinstance(tensor.grad, np.ndarray)]
    for index, (name, grad) in enumerate(grads):
        if not grad.flags.writeable:
            raise CheckFailed(f"{name}.grad is a read-only array ({label}): an optimizer or clip_grad_value_ that "
                              "changes it in place fails", "shared-or-read-only-gradient")
        for other_name, other in grads[index + 1:]:
            if np.shares_memory(grad, other):
                raise CheckFailed(f"{name}.grad and {other_name}.grad are the same memory ({label}): clipping one in "
                                  "place would change the other", "shared-or-read-only-gradient")


def _show(array):
    return np.array2string(np.asarray(array), precision=5, threshold=6, separator=", ")


def check(module, report, train=True):
    for label, build, diagnosis in GRAPHS:
        root, engine_tensors = build()
        root.backward()
        learner_root, learner_tensors = build()
        visits = run_learner(module, learner_root, label, diagnosis)
        check_order(visits, learner_root, label)
        compare(learner_tensors, engine_tensors, label, diagnosis)
        check_own_arrays(learner_tensors, label)
        report.ok(f"{label}: every gradient as the engine's, each op visited once, in order")

    # .grad adds up over backward() calls until zero_grad(), as in PyTorch
    rng = np.random.default_rng(7)
    w = parameter(rng, 3, name="w")
    for scale in (1.0, 2.0):
        run_learner(module, (w * scale).sum(), "two backward calls", None)
    if w.grad is None or not np.allclose(w.grad, 3.0):
        raise CheckFailed(f"after backward of (w * 1).sum() and then of (w * 2).sum(), w.grad is {_show(w.grad)}; "
                          "expected [3, 3, 3]: .grad adds up over backward() calls, as in PyTorch (zero_grad resets it)")
    report.ok("gradients add up over two backward() calls, as in PyTorch")


# ----- fresh inputs, for a checker that re-checks in a process of its own ------------------------
def fresh_graph(rng):
    """A graph of this run's own numbers with every case in one: a tensor used twice, a diamond,
    a broadcast add, an ignored input and a constant branch; (root, the tensors to compare)."""
    w, b, v = (Tensor(rng.standard_normal(shape), requires_grad=True, name=name) for name, shape in
               (("w", (3, 4)), ("b", (4,)), ("v", (4,))))
    x = Tensor(rng.standard_normal((3, 4)), name="x")
    e = named(x * w + b, "e")  # b broadcast over 3 rows
    picked = Pick.apply(e * e + e.tanh().exp(), v * 2.0)  # e used three times, by paths of two lengths; v ignored
    return (picked + x * 3.0).sum(), [w, b, v, e]


def probe(module, rng):
    """The learner's backward on this run's graph: {"grad.i": the i-th compared tensor's .grad}."""
    root, tensors = fresh_graph(rng)
    run_learner(module, root, "a graph of fresh numbers", None)
    return {f"grad.{index}": tensor.grad for index, tensor in enumerate(tensors) if tensor.grad is not None}


def verify(results, rng):
    """The same graph built again from the same seed, with the engine's backward, against `results`."""
    root, tensors = fresh_graph(rng)
    root.backward()
    for index, tensor in enumerate(tensors):
        got, want = results.get(f"grad.{index}"), tensor.grad
        if (got is None) != (want is None) or (want is not None and (got.shape != want.shape or not np.allclose(got, want, rtol=1e-10, atol=1e-12))):
            raise CheckFailed(f"re-checked on a graph of fresh numbers, {tensor.name}.grad is {_show(got)}; the engine "
                              f"gives {_show(want)}")
