"""The two exercises of docs/extending.md: examples/custom_op.py (Softplus) and examples/adam.py (the built-in Adam).

The scripts run as a learner runs them, in a subprocess on a small MNIST subset: each must pass
its own check (gradcheck for Softplus, the first-step property for Adam), say so, and train to a
sane accuracy. The op and the optimizer are also imported and tested directly, without data.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinygrad_mnist import GradcheckError, Tensor, gradcheck

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
# 5000 images, 2 epochs: about 85% test accuracy in a few seconds; 75% leaves room for noise
SUBSET_FLAGS = ["--train-subset", "5000", "--epochs", "2", "--test-subset", "2000"]
SANE_ACCURACY = 75.0


def load_example(name):
    """Import examples/<name>.py as a module (the examples folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # so inspect.getsource can find the file
    spec.loader.exec_module(module)
    return module


def run_example(name, mnist_dir, *flags):
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *flags, "--data-dir", str(mnist_dir)],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=environment,
    )


def final_accuracy(stdout):
    found = re.findall(r"^test accuracy: ([\d.]+)%", stdout, flags=re.M)
    assert found, f"no 'test accuracy: ...%' line in the output:\n{stdout}"
    return float(found[-1])


# ----- the scripts, on MNIST ---------------------------------------------------------------------
@pytest.mark.mnist
def test_custom_op_script_passes_gradcheck_and_trains_an_mlp_on_a_subset(mnist_dir):
    result = run_example("custom_op", mnist_dir, *SUBSET_FLAGS)
    assert result.returncode == 0, result.stderr
    assert "gradcheck Softplus: passed" in result.stdout
    assert "SoftplusLayer()" in result.stdout  # the printed model uses the custom layer
    assert final_accuracy(result.stdout) > SANE_ACCURACY


def test_custom_op_script_says_in_one_line_that_the_data_folder_is_a_file(tmp_path):
    a_file = tmp_path / "mnist.zip"
    a_file.write_bytes(b"not a folder")
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "TINYGRAD_MNIST_DATA": str(a_file)}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "custom_op.py"), "--train-subset", "10"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=environment,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: TINYGRAD_MNIST_DATA={a_file} is a file, not a folder: give the " \
        "folder that holds the mnist files (or a folder with a mnist/ subfolder)"


@pytest.mark.mnist
def test_adam_script_passes_its_first_step_check_and_trains_on_a_subset(mnist_dir):
    result = run_example("adam", mnist_dir, *SUBSET_FLAGS)
    assert result.returncode == 0, result.stderr
    assert "Adam first step: passed" in result.stdout
    assert final_accuracy(result.stdout) > SANE_ACCURACY


# ----- the Softplus op, without data -------------------------------------------------------------
@pytest.fixture(scope="module")
def custom_op():
    return load_example("custom_op")


def test_softplus_matches_its_formula_and_keeps_float32(custom_op):
    x = np.array([-10.0, -1.0, 0.0, 2.0, 10.0], dtype=np.float32)
    out = custom_op.Softplus.apply(Tensor(x))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.data, np.log1p(np.exp(x.astype(np.float64))), rtol=1e-6)


def test_softplus_is_finite_and_exact_where_the_naive_formula_overflows(custom_op):
    x = Tensor(np.array([-1000.0, 1000.0], dtype=np.float32), requires_grad=True)
    out = custom_op.Softplus.apply(x)
    out.sum().backward()
    assert out.data.tolist() == [0.0, 1000.0]
    assert x.grad.tolist() == [0.0, 1.0]  # sigmoid(-1000), sigmoid(1000)


def test_softplus_backward_agrees_with_central_differences(custom_op):
    assert custom_op.check_softplus(seed=0)
    rng = np.random.default_rng(1)
    assert gradcheck(custom_op.Softplus.apply, [rng.standard_normal((3, 4)) * 4])


def test_gradcheck_catches_a_softplus_that_forgets_grad_out(custom_op):
    class ForgotGradOut(custom_op.Softplus):
        @staticmethod
        def backward(ctx, grad_out):
            (x,) = ctx.saved
            return 1 / (1 + np.exp(-x))

    with pytest.raises(GradcheckError, match="input 0"):
        gradcheck(ForgotGradOut.apply, [np.linspace(-2, 2, 6)])


def test_softplus_layer_trains_inside_an_mlp(custom_op):
    from tinygrad_mnist import functional as F, optim

    rng = np.random.default_rng(0)
    model = custom_op.softplus_mlp(32, rng)
    images = Tensor(rng.random((16, 784), dtype=np.float32))
    labels = rng.integers(0, 10, size=16)
    sgd = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(30):
        loss = F.cross_entropy(model(images), labels)
        sgd.zero_grad()
        loss.backward()
        sgd.step()
    assert loss.item() < 0.1


def test_the_tutorial_and_the_example_define_the_same_softplus(custom_op):
    tutorial = (ROOT / "docs" / "extending.md").read_text(encoding="utf-8")
    source = inspect.getsource(custom_op.Softplus)
    assert source in tutorial, "docs/extending.md and examples/custom_op.py define Softplus differently"


# ----- the Adam optimizer, without data ----------------------------------------------------------
@pytest.fixture(scope="module")
def adam():
    return load_example("adam")  # its Adam is tinygrad_mnist.optim.Adam, the exercise's answer


def adam_by_formula(parameter, gradients, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    """The parameter after one Adam step per gradient, written straight from the paper."""
    m = v = np.zeros_like(parameter)
    for t, g in enumerate(gradients, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        parameter = parameter - lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)
    return parameter


def test_adam_follows_the_formula_over_several_steps(adam):
    rng = np.random.default_rng(0)
    start = rng.standard_normal((3, 2))
    gradients = [rng.standard_normal((3, 2)) * scale for scale in (1.0, 0.1, 10.0, 1.0, 0.01)]
    weight = Tensor(start.copy(), requires_grad=True)
    optimizer = adam.Adam([weight], lr=0.01)
    for gradient in gradients:
        optimizer.zero_grad()
        (weight * Tensor(gradient)).sum().backward()  # d/d weight = gradient
        optimizer.step()
    np.testing.assert_allclose(weight.data, adam_by_formula(start, gradients, lr=0.01), rtol=1e-10, atol=1e-12)


def test_adam_first_step_moves_every_weight_by_lr_whatever_the_gradient_size(adam):
    assert adam.check_first_step(lr=0.01) < 1e-3


def test_adam_skips_parameters_without_a_gradient_and_keeps_float32(adam):
    used = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    unused = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    optimizer = adam.Adam([used, unused], lr=0.1)
    (used * 2.0).sum().backward()
    optimizer.step()
    assert used.dtype == np.float32
    np.testing.assert_allclose(used.data, 0.9, rtol=1e-6)
    assert unused.data.tolist() == [1.0, 1.0, 1.0]


def test_adam_refuses_settings_that_cannot_train(adam):
    weight = Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(ValueError, match="empty parameter list"):
        adam.Adam([])
    with pytest.raises(ValueError, match="lr > 0"):
        adam.Adam([weight], lr=0)
    with pytest.raises(ValueError, match="betas"):
        adam.Adam([weight], betas=(0.9, 1.0))
