"""What every exercise's check uses: loading the learner's file, reporting, and an op checker that
names the usual mistakes instead of only saying "wrong".

A check is a function `check(module, report)` that calls `report.ok(...)` for each thing that
worked and raises `CheckFailed(message, diagnosis)` at the first that did not.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
import zlib
from pathlib import Path

import numpy as np

from ..function import forward_defaults
from ..tensor import Tensor

# The named diagnoses: a short name (printed in brackets, and what the tests look for) and what
# to do about the mistake it names.
DIAGNOSES = {
    "wrong-sign": "the result has the right size but the opposite sign. For an op, check the "
    "sign of the local derivative (d out/d x) on paper and return grad_out times it; for an "
    "optimizer, step against the gradient (p = p - lr * ...).",
    "not-summed-to-broadcast-input": "forward broadcast this input (numpy stretched it to the "
    "output's shape), so it was used once per stretched copy and its gradient is the sum over "
    "those copies. Return unbroadcast(grad, input_shape) instead of the output-shaped gradient.",
    "reduced-axis-not-put-back": "forward removed the reduced axis, so grad_out lacks it and "
    "broadcasts against the input along the wrong axis (or not at all). Put it back first: "
    "unreduce(grad_out, x.shape, axis, keepdims) gives it size 1 where it was reduced.",
    "wrong-number-of-gradients": "backward must return one gradient per input of forward, in the "
    "same order, with None for an input that needs none (a constant such as a mask).",
    "keyword-not-read-in-backward": "backward used a fixed value where the caller passed another "
    "keyword. Read forward's keyword arguments in backward from ctx.options (it holds the call's "
    "values, forward's defaults included), never a number written into backward.",
    "mode-ignored": "a layer that behaves differently in training and in evaluation reads "
    "self.training (set by model.train() and model.eval()): in training it may use random noise "
    "or the batch's own statistics and update its running state; in evaluation it is a fixed "
    "function of its input and changes nothing.",
    "noise-drawn-twice": "backward must use the very random numbers forward used: draw them once "
    "per call, pass them to the op (or save them), and never draw new ones in backward.",
    "running-var-biased": "running_var keeps the unbiased variance of the batch (divided by N - 1), "
    "as PyTorch does, while the batch itself is normalized with the biased one (divided by N).",
    "momentum-reversed": "the running estimates move a little towards each batch: "
    "running = (1 - momentum) * running + momentum * batch value, with momentum = 0.1 (PyTorch's "
    "convention; the opposite of an optimizer's momentum).",
    "overlapping-windows-overwrite": "where windows overlap (stride < kernel_size), one input "
    "element can be the largest of several windows; its gradient is the sum of theirs. An "
    "assignment grad_x[index] = grad_out keeps only the last; np.add.at(grad_x, index, grad_out) adds.",
    "grad-out-written-in-place": "backward wrote into grad_out (grad_out *= ..., grad_out[...] = ..., "
    "or out=grad_out). grad_out belongs to the graph, not to your op: where a tensor is used twice, "
    "the same array is passed on to the other ops, and changing it changes their gradients too. "
    "Return a new array instead: return grad_out * local_derivative.",
    "state-not-saved": "state_dict() must hold every array step() keeps from one step to the next, "
    "so that load_state_dict() resumes exactly where the run stopped. Ask the base class for each "
    "kind of state with self.per_parameter_state(\"name\") (a list with one array or None per "
    "parameter, filled in step()), as optim.SGD does; then state_dict and load_state_dict work unchanged.",
    "not-implemented": "this part still raises NotImplementedError: write it, then check again.",
    "forgot-grad-out": "backward returned the local derivative d out/d x alone, which is dL/dx only where "
    "grad_out happens to be 1. The chain rule multiplies: return grad_out times the local derivative.",
}


class CheckFailed(Exception):
    """One check did not pass: a message saying what, and optionally a named diagnosis."""

    def __init__(self, message, diagnosis=None):
        super().__init__(message)
        self.message = message
        self.diagnosis = diagnosis

    def __str__(self):
        if self.diagnosis is None:
            return self.message
        return f"{self.message}\n  diagnosis [{self.diagnosis}]: {DIAGNOSES[self.diagnosis]}"


class UsageError(Exception):
    """The command was used wrongly (no such exercise, no such file): exit status 2."""


class Report:
    """Prints one line per passed step as the check goes; counts them."""

    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.passed = 0

    def ok(self, text):
        self.passed += 1
        print(f"  ok    {text}", file=self.out, flush=True)

    def note(self, text):
        print(f"  note  {text}", file=self.out, flush=True)


# ----- the learner's file ------------------------------------------------------------------------
def load_file(path, names):
    """Import the learner's file and return it; it must define every name in `names`."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no file {path}; copy the skeleton from examples/exercises/ and give its path")
    module_name = f"exercise_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # so inspect.getsource and dataclasses can find it
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        raise CheckFailed(f"{path} does not parse: line {error.lineno}: {error.msg}") from None
    except BaseException as error:  # noqa: BLE001 - SystemExit, KeyboardInterrupt too: the learner's to see
        raise CheckFailed(f"importing {path} failed: {describe(error, path)}") from None
    missing = [name for name in names if not hasattr(module, name)]
    if missing:
        raise CheckFailed(
            f"{path} defines no {', '.join(missing)}; keep the names of the skeleton "
            f"(the checker looks for {', '.join(names)})"
        )
    module.__checked_path__ = path
    return module


def describe(error, path=None):
    """`TypeError: ... (line 12 of my_elu.py: return grad_out * slope)`: the error and the last line
    of the learner's file it passed through, so a mistake is found without reading a traceback."""
    text = f"{type(error).__name__}: {error}"
    frames = traceback.extract_tb(error.__traceback__)
    if path is not None:
        own = [frame for frame in frames if Path(frame.filename).resolve() == Path(path).resolve()]
        frames = own or frames
    if frames:
        frame = frames[-1]
        text += f" (line {frame.lineno} of {Path(frame.filename).name}: {(frame.line or '').strip()})"
    return text


def call(module, what, function, *args, **kwargs):
    """Call the learner's code; NotImplementedError and crashes become a CheckFailed naming `what`.
    numpy's error handling is the checker's again afterwards, whatever np.seterr the code called."""
    errors = np.geterr()
    try:
        return function(*args, **kwargs)
    except NotImplementedError:
        raise CheckFailed(f"{what} is not written yet (it raises NotImplementedError)", "not-implemented") from None
    except CheckFailed:
        raise
    except BaseException as error:  # noqa: BLE001 - SystemExit and KeyboardInterrupt are the learner's too
        diagnosis = None
        if isinstance(error, ValueError) and "broadcast" in str(error):
            diagnosis = getattr(module, "__broadcast_diagnosis__", None)
        elif isinstance(error, ValueError) and "read-only" in str(error) and ".backward" in what:
            diagnosis = "grad-out-written-in-place"
        raise CheckFailed(f"{what} raised {describe(error, getattr(module, '__checked_path__', None))}", diagnosis) from None
    finally:
        np.seterr(**errors)


def read_only(array):
    """A copy of `array` that cannot be written: what backward gets as grad_out in the checks."""
    array = np.array(array)
    array.flags.writeable = False
    return array


def quiet_reference(reference, *args, **kwargs):
    """The checker's reference under numpy's error handling of its own, so an np.seterr(all="raise")
    in the learner's file cannot make the checker's own arithmetic raise."""
    with np.errstate(all="ignore"):
        return reference(*args, **kwargs)


def show(array):
    """A short text for an array in a message."""
    return np.array2string(np.asarray(array), precision=6, threshold=8, separator=", ")


def first_mismatch(got, expected, rtol, atol):
    """The index of the first element where got and expected disagree (or None)."""
    bad = ~np.isclose(got, expected, rtol=rtol, atol=atol, equal_nan=True)
    if not bad.any():
        return None
    return tuple(int(i) for i in np.argwhere(bad)[0]) if bad.ndim else ()


# ----- an op, checked against a reference ---------------------------------------------------------
def check_op(module, op, arrays, options, reference, label, needs=None, reduction=False, rtol=1e-6, atol=1e-9, diagnose=True, alternatives=()):
    """Run the learner's Function `op` on `arrays` (float64) with keyword `options`, and compare its
    output and the gradients its backward returns with `reference`.

    reference(grad_out, *arrays, **options) -> (output, (gradient or None per input)); a None
    gradient marks an input that is not differentiated (a mask). `needs` says which inputs
    require grad (all that have a reference gradient, by default). Raises CheckFailed with a named
    diagnosis where the mistake is a known one: the gradient's sign flipped, or the gradient
    right with a keyword at forward's default but wrong with the caller's value, or right under
    one of `alternatives`, a list of (options to try instead, diagnosis if those pass).
    """
    name = op.__name__
    shown_options = ", ".join(f"{key}={value!r}" for key, value in options.items())
    call_text = f"{name}.apply({', '.join('shape ' + str(np.shape(a)) for a in arrays)}{', ' + shown_options if shown_options else ''})"
    module.__broadcast_diagnosis__ = "reduced-axis-not-put-back" if reduction else "not-summed-to-broadcast-input"
    rng = np.random.default_rng(zlib.crc32(label.encode()))
    expected_out, _ = quiet_reference(reference, None, *arrays, **options)
    if needs is None:
        _, probe = quiet_reference(reference, np.ones(np.shape(expected_out)), *arrays, **options)
        needs = [gradient is not None for gradient in probe]
    tensors = [Tensor(np.array(a, dtype=np.float64), requires_grad=need) for a, need in zip(arrays, needs)]

    out = call(module, f"{name}.forward ({label})", op.apply, *tensors, **options)
    if out.shape != np.shape(expected_out):
        raise CheckFailed(f"{call_text} returned shape {out.shape}; expected {np.shape(expected_out)} ({label})")
    bad = first_mismatch(out.data, expected_out, rtol, atol)
    if bad is not None:
        raise CheckFailed(
            f"{name}.forward is wrong ({label}): at index {bad} it gives {out.data[bad]:.10g}, "
            f"expected {np.asarray(expected_out)[bad]:.10g}"
        )

    grad_out = rng.standard_normal(out.shape)
    ctx = out.grad_fn
    grads = call(module, f"{name}.backward ({label})", op.backward, ctx, read_only(grad_out))
    if type(grads) is not tuple:
        grads = (grads,) if not isinstance(grads, list) else tuple(grads)
    if len(grads) != len(tensors):
        raise CheckFailed(
            f"{name}.backward returned {len(grads)} gradient(s) for the {len(tensors)} inputs of "
            f"{call_text}", "wrong-number-of-gradients"
        )
    _, expected_grads = quiet_reference(reference, grad_out, *arrays, **options)
    for index, (got, want, tensor) in enumerate(zip(grads, expected_grads, tensors)):
        if want is None or not tensor.requires_grad:
            continue
        if got is None:
            raise CheckFailed(f"{name}.backward returned None for input {index}, which needs a gradient ({label})")
        got = np.asarray(got, dtype=np.float64)
        if got.shape != tensor.shape:
            diagnosis = None
            if reduction:
                diagnosis = "reduced-axis-not-put-back"
            elif got.shape == out.shape and tensor.shape != out.shape:
                diagnosis = "not-summed-to-broadcast-input"
            raise CheckFailed(
                f"{name}.backward returned a gradient of shape {got.shape} for input {index} of "
                f"shape {tensor.shape} ({label}); a gradient has the shape of its input", diagnosis
            )
        bad = first_mismatch(got, want, rtol=1e-5, atol=1e-8)
        if bad is None:
            continue
        wrong = ~np.isclose(got, want, rtol=1e-5, atol=1e-8)
        local = quiet_reference(reference, np.ones_like(grad_out), *arrays, **options)[1][index]  # the gradient when grad_out is 1
        if np.allclose(got[wrong], -want[wrong], rtol=1e-5, atol=1e-8):
            diagnosis = "wrong-sign"
        elif np.allclose(got, local, rtol=1e-5, atol=1e-8):
            diagnosis = "forgot-grad-out"
        else:
            diagnosis = None
            for override, named in alternatives if diagnose else ():
                try:
                    check_op(module, op, arrays, {**options, **override}, reference, label, needs, reduction, diagnose=False)
                except CheckFailed:
                    continue
                diagnosis = named
                break
            if diagnose and diagnosis is None:
                diagnosis = keyword_diagnosis(module, op, options, reference, arrays, label)
        where = ""
        if np.shape(arrays[index]) == grad_out.shape:
            where = f"; there the input is {np.asarray(arrays[index])[bad]:.6g} and grad_out is {grad_out[bad]:.6g}"
        raise CheckFailed(
            f"{name}.backward is wrong for input {index} ({label}): at index {bad} it gives "
            f"{got[bad]:.10g}, expected {want[bad]:.10g}{where}", diagnosis
        )
    return out


def keyword_diagnosis(module, op, options, reference, arrays, label):
    """'keyword-not-read-in-backward' if backward is right when a keyword is left at forward's
    default and wrong when the caller sets it: backward used a value of its own, not the call's."""
    defaults = forward_defaults(op)
    for key, value in options.items():
        if key not in defaults or defaults[key] == value:
            continue
        try:
            check_op(module, op, arrays, {**options, key: defaults[key]}, reference, label + ", default", diagnose=False)
        except CheckFailed:
            continue
        return "keyword-not-read-in-backward"
    return None


# ----- MNIST, for a short training run -----------------------------------------------------------
def load_mnist_subset(train, test):
    """The first `train` training and `test` test images, normalized and flattened, with labels."""
    from ..lab.data import normalize
    from ..lab.datasets import DatasetNotFoundError, load_mnist
    from ..lab.idx import IDXError

    try:
        mnist = load_mnist().subset(train, test)
    except (DatasetNotFoundError, IDXError) as error:
        raise CheckFailed(f"the training run needs the MNIST files: {error} (or check again with --no-train)") from None
    return (normalize(mnist.train_images, flatten=True), mnist.train_labels,
            normalize(mnist.test_images, flatten=True), mnist.test_labels)


def train_and_score(model, optimizer, data, epochs=1, batch_size=32, seed=0):
    """Train `model` with `optimizer` on data[:2] for `epochs`; return (test accuracy, losses)."""
    from .. import functional as F
    from ..lab.data import batches
    from ..modes import no_grad

    train_x, train_y, test_x, test_y = data
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(epochs):
        for images, labels in batches(train_x, train_y, batch_size, rng=rng):
            loss = F.cross_entropy(model(Tensor(images)), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    if hasattr(model, "eval"):
        model.eval()
    with no_grad():
        predictions = model(Tensor(test_x)).data.argmax(axis=1)
    return float((predictions == test_y).mean()), losses


def activation_mlp(activation, hidden=128, seed=0):
    """784 -> hidden -> 10 with `activation` (a function of a Tensor) between the Linear layers."""
    from .. import nn

    class Activation(nn.Module):
        def forward(self, x):
            return activation(x)

    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(784, hidden, rng=rng), Activation(), nn.Linear(hidden, 10, rng=rng))


# one epoch of SGD (lr 0.05, momentum 0.9, batches of 32) on the first 10,000 training images:
# the built-in leaky ReLU reaches 90% on the first 2,000 test images; 85% leaves room for noise
# and for activations that learn a little slower, and no broken gradient gets there
TRAIN_IMAGES, TEST_IMAGES, MIN_ACCURACY = 10_000, 2_000, 0.85


def check_activation_trains(report, activation, name):
    """The learner's activation inside the MLP: one epoch on 10,000 MNIST images, >= 85% test."""
    from .. import optim

    data = load_mnist_subset(TRAIN_IMAGES, TEST_IMAGES)
    model = activation_mlp(activation)
    optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    accuracy, losses = train_and_score(model, optimizer, data)
    if not np.isfinite(losses).all():
        raise CheckFailed(f"training with {name} diverged: the loss became {losses[-1]} (is backward finite for large inputs?)")
    if accuracy < MIN_ACCURACY:
        raise CheckFailed(
            f"a 784-128-10 MLP with {name} reached {100 * accuracy:.1f}% test accuracy after one epoch "
            f"on {TRAIN_IMAGES} images; expected at least {100 * MIN_ACCURACY:.0f}% (the built-in leaky "
            f"ReLU gets about 90%). forward and backward pass their checks, so look at what differs "
            f"for float32 inputs."
        )
    report.ok(f"trains: a 784-128-10 MLP with {name} reaches {100 * accuracy:.1f}% test accuracy after one epoch on {TRAIN_IMAGES} images")
