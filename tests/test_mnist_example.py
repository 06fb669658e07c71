"""examples/mnist.py as a user runs it: a real process, real MNIST files, real exit codes."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tinygrad_mnist.lab.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "examples" / "mnist.py"
SMALL = ["--train-subset", "3000", "--test-subset", "1000", "--hidden", "64", "--quiet"]


def run(args, data_dir=None, timeout=300, **options):
    env = dict(os.environ)
    if data_dir is not None:
        env["TINYGRAD_MNIST_DATA"] = str(data_dir)
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO, **options,
    )


def final_test_accuracy(output):
    block = output.split("Model performance on test data after training:")[1]
    return float(re.search(r"Accuracy: ([\d.]+)%", block).group(1))


def test_help_lists_every_flag():
    result = run(["--help"])
    assert result.returncode == 0
    for flag in ("--epochs", "--batch-size", "--lr", "--momentum", "--hidden", "--clip-norm", "--clip-value",
                 "--seed", "--data-dir", "--save", "--load", "--resume", "--quiet", "--preset", "--graph",
                 "--detect-anomaly"):
        assert flag in result.stdout


@pytest.mark.parametrize(
    "args, reason",
    [
        (["--lr", "0"], "--lr must be a positive number"),
        (["--lr", "-1"], "--lr must be a positive number"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--hidden", "abc"], "--hidden takes sizes separated by commas"),
        (["--hidden", "128,0"], "--hidden sizes must be at least 1"),
        (["--data-dir", "/no/such/folder"], "is not a folder"),
        (["--momentum", "1.5"], "--momentum must be in [0, 1)"),
        (["--epochs", "ten"], "invalid int value"),
        (["--resume", "x.npz", "--lr", "0.1"], "--resume continues the saved run with its own settings"),
    ],
)
def test_bad_arguments_exit_with_status_2_and_a_one_line_reason(args, reason):
    result = run(args)
    assert result.returncode == 2
    assert reason in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("mnist.py: error:")


@pytest.mark.mnist
def test_short_training_on_a_subset_reaches_90_percent_and_prints_the_original_report(mnist_dir):
    result = run([*SMALL, "--train-subset", "10000", "--epochs", "2"], mnist_dir)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for line in ("Model performance on training data before training:", "Model performance on test data before training:",
                 "Initial loss:", "Training...", "Epoch 1/2", "Epoch 2/2",
                 "Model performance on training data after training:"):
        assert line in out
    assert re.search(r"Correct: \d+  Incorrect: \d+ Accuracy: [\d.]+%", out)
    assert final_test_accuracy(out) >= 90.0


@pytest.mark.mnist
def test_the_same_seed_gives_the_same_losses_and_weights(mnist_dir, tmp_path):
    args = [*SMALL, "--train-subset", "1000", "--epochs", "2", "--seed", "7"]
    first = run([*args, "--save", tmp_path / "first.npz"], mnist_dir)
    second = run([*args, "--save", tmp_path / "second.npz"], mnist_dir)
    strip_times = lambda text: re.sub(r"time [\d.]+s|Total time: [\d.]+s", "", text)  # noqa: E731
    assert first.returncode == 0 and second.returncode == 0
    assert strip_times(first.stdout) == strip_times(second.stdout)
    first_weights, second_weights = weights_of(tmp_path / "first.npz"), weights_of(tmp_path / "second.npz")
    assert all(first_weights[name].tobytes() == second_weights[name].tobytes() for name in first_weights)
    other = run([*SMALL, "--train-subset", "1000", "--epochs", "2", "--seed", "8"], mnist_dir)
    assert strip_times(other.stdout) != strip_times(first.stdout)


@pytest.mark.mnist
def test_a_saved_model_loads_and_evaluates_to_the_same_accuracy(mnist_dir, tmp_path):
    path = tmp_path / "model.npz"
    trained = run([*SMALL, "--epochs", "1", "--save", path], mnist_dir)
    assert trained.returncode == 0, trained.stderr
    evaluated = run(["--load", path, "--test-subset", "1000", "--train-subset", "3000", "--quiet"], mnist_dir)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "No training" in evaluated.stdout
    assert final_test_accuracy(evaluated.stdout) == final_test_accuracy(trained.stdout)


@pytest.mark.mnist
def test_loading_a_corrupt_or_mismatched_file_fails_with_a_clear_message(mnist_dir, tmp_path):
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    result = run(["--load", corrupt, "--quiet"], mnist_dir)
    assert result.returncode == 1
    assert "not a readable checkpoint" in result.stderr and "Traceback" not in result.stderr

    path = tmp_path / "model.npz"
    assert run([*SMALL, "--train-subset", "500", "--epochs", "1", "--save", path], mnist_dir).returncode == 0
    result = run(["--load", path, "--hidden", "32", "--quiet"], mnist_dir)
    assert result.returncode == 1
    assert "does not match the saved model's layers" in result.stderr


def weights_of(path):
    return load_checkpoint(path).model_state


@pytest.mark.mnist
def test_interrupted_and_resumed_training_ends_bit_for_bit_where_an_uninterrupted_run_ends(mnist_dir, tmp_path):
    args = ["--train-subset", "12000", "--test-subset", "500", "--hidden", "64", "--epochs", "4", "--quiet"]
    whole = tmp_path / "whole.npz"
    assert run([*args, "--save", whole], mnist_dir).returncode == 0

    interrupted = tmp_path / "interrupted.npz"
    env = dict(os.environ, TINYGRAD_MNIST_DATA=str(mnist_dir))
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), *args, "--save", str(interrupted)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )
    deadline = time.monotonic() + 120
    while not interrupted.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # wait for the first checkpoint: epoch 1 is done
    process.send_signal(signal.SIGINT)  # Ctrl-C, somewhere in epoch 2
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Stopped by Ctrl-C" in stderr and f"--resume {interrupted}" in stderr
    saved_epoch = load_checkpoint(interrupted).meta["epoch"]
    assert 1 <= saved_epoch < 4

    resumed = run(["--resume", interrupted, "--quiet"], mnist_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Epoch {saved_epoch + 1}/4" in resumed.stdout and f"Epoch {saved_epoch}/4" not in resumed.stdout
    expected, actual = weights_of(whole), weights_of(interrupted)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert actual[name].tobytes() == expected[name].tobytes(), name
    assert load_checkpoint(interrupted).meta["epoch"] == 4


@pytest.mark.mnist
def test_a_diverging_run_stops_with_epoch_step_and_remedies(mnist_dir, tmp_path):
    result = run([*SMALL, "--epochs", "2", "--lr", "1e6", "--momentum", "0.9"], mnist_dir)
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert re.search(r"the loss became (nan|inf) in epoch 1, step \d+/\d+", message)
    assert "--lr" in message and "--clip-norm" in message and "--detect-anomaly" in message


@pytest.mark.mnist
def test_detect_anomaly_names_the_op_where_nan_starts(mnist_dir):
    result = run([*SMALL, "--epochs", "1", "--lr", "1e6", "--detect-anomaly"], mnist_dir)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert re.search(r"error: in epoch 1, step \d+: \w+\.(forward|backward) produced", result.stderr)


@pytest.mark.mnist
def test_graph_flag_writes_one_training_step(mnist_dir, tmp_path, dot_program):
    path = tmp_path / "step.svg"
    result = run([*SMALL, "--epochs", "0", "--graph", path], mnist_dir)
    assert result.returncode == 0, result.stderr
    assert path.exists() and "<svg" in path.read_text()
    assert "Linear" in path.read_text() and "CrossEntropy" in path.read_text()


@pytest.mark.mnist
def test_graph_flag_writes_the_step_by_step_page_of_one_training_step(mnist_dir, tmp_path, dot_program):
    path = tmp_path / "step.html"
    result = run([*SMALL, "--batch-size", "4", "--graph", path], mnist_dir)
    assert result.returncode == 0, result.stderr
    text = path.read_text(encoding="utf-8")
    steps = json.loads(re.search(r'id="backward-steps">(.*?)</script>', text, re.S).group(1))
    assert [step["op"] for step in steps] == ["CrossEntropy", "LinearOp", "LeakyReLUOp", "LinearOp"]
    assert steps[-1]["inputs"][1]["name"] == "0.weight"  # the first layer's weight, by its name in the model


def test_the_model_gradients_equal_the_manual_backprop_reference():
    """The example's model (nn.mlp + F.cross_entropy) against reference.py, 784-64-32-10, float64."""
    from tinygrad_mnist import Tensor, functional as F, nn
    from tinygrad_mnist.reference import mlp_loss_and_grads

    rng = np.random.default_rng(3)
    model = nn.mlp([784, 64, 32, 10], rng=rng, dtype=np.float64)
    images = rng.random((16, 784))
    labels = rng.integers(0, 10, 16)
    loss = F.cross_entropy(model(Tensor(images)), labels)
    loss.backward()
    params = [(model[i].weight.data, model[i].bias.data) for i in (0, 2, 4)]
    expected_loss, expected_grads = mlp_loss_and_grads(params, images, labels)
    assert loss.item() == pytest.approx(expected_loss, rel=1e-12)
    for index, (grad_weight, grad_bias) in zip((0, 2, 4), expected_grads):
        np.testing.assert_allclose(model[index].weight.grad, grad_weight, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(model[index].bias.grad, grad_bias, rtol=1e-10, atol=1e-14)


@pytest.mark.mnist
def test_resuming_a_checkpoint_without_a_training_record_says_what_it_lacks(mnist_dir, tmp_path):
    from tinygrad_mnist import nn
    from tinygrad_mnist.lab.checkpoint import save_checkpoint

    path = save_checkpoint(tmp_path / "weights-only.npz", nn.mlp([784, 64, 10]).state_dict(), note="made by hand")
    result = run(["--resume", path, "--quiet"], mnist_dir)
    assert result.returncode == 1
    assert "is not a checkpoint of this script" in result.stderr and "settings" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.mnist
def test_resuming_a_checkpoint_with_invalid_settings_is_refused(mnist_dir, tmp_path):
    from tinygrad_mnist import nn
    from tinygrad_mnist.lab.checkpoint import save_checkpoint

    model = nn.mlp([784, 64, 10])
    settings = {"epochs": 2, "batch_size": 0, "lr": 0.1, "momentum": 0.9, "hidden": "64", "init_scale": 1.0,
                "negative_slope": 0.01, "clip_norm": None, "clip_value": None, "schedule": "cosine", "seed": 0}
    path = save_checkpoint(tmp_path / "bad.npz", model.state_dict(), epoch=1, settings=settings,
                           model={"kind": "mlp", "layer_sizes": [784, 64, 10], "negative_slope": 0.01}, rng_state=np.random.default_rng(0).bit_generator.state,
                           scheduler={"base_lrs": [0.1], "last_epoch": 8, "T_max": 16, "eta_min": 0.0})
    result = run(["--resume", path, "--quiet"], mnist_dir)
    assert result.returncode == 1
    assert "holds invalid settings: --batch-size must be at least 1" in result.stderr


def test_ctrl_c_before_training_starts_exits_130_without_a_traceback():
    # Ctrl-C while the data loads: stand in for it with a loader that raises KeyboardInterrupt
    code = (
        "import runpy, sys, tinygrad_mnist.lab.datasets as datasets\n"
        "def interrupted(*args, **kwargs): raise KeyboardInterrupt\n"
        "datasets.load_dataset = interrupted\n"
        f"sys.argv = ['mnist.py', '--quiet']\n"
        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 130
    assert "Stopped by Ctrl-C." in result.stderr and "Traceback" not in result.stderr
