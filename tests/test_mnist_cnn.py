"""examples/mnist_cnn.py: the CNN through the same run machinery as the MLP example.

Real processes on MNIST subsets: it learns, a run stopped and resumed (dropout included) ends bit
for bit where an uninterrupted one ends, --load rebuilds the CNN, and --graph names its parameters.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.test_mnist_example import REPO, final_test_accuracy
from tinygrad_mnist import nn
from tinygrad_mnist.lab import models
from tinygrad_mnist.lab.checkpoint import load_checkpoint

SCRIPT = REPO / "examples" / "mnist_cnn.py"
SMALL = ["--train-subset", "3000", "--test-subset", "500", "--quiet"]


def run(args, data_dir, timeout=600):
    env = {**os.environ, "TINYGRAD_MNIST_DATA": str(data_dir)}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


@pytest.mark.mnist
@pytest.mark.slow
def test_two_epochs_on_3000_images_reach_90_percent_and_load_rebuilds_the_cnn(mnist_dir, tmp_path):
    path = tmp_path / "cnn.npz"
    trained = run([*SMALL, "--epochs", "2", "--dropout", "0.25", "--save", path], mnist_dir)
    assert trained.returncode == 0, trained.stderr
    assert final_test_accuracy(trained.stdout) >= 90.0
    assert "dropout=0.25" in trained.stdout.splitlines()[0]
    model = models.load_model(path)
    assert isinstance(model[0], nn.Conv2d) and model[0].weight.shape == (16, 1, 5, 5)
    assert any(isinstance(layer, nn.Dropout) and layer.p == 0.25 for layer in model)
    loaded = run(["--load", path, *SMALL], mnist_dir)
    assert loaded.returncode == 0, loaded.stderr
    assert final_test_accuracy(loaded.stdout) == final_test_accuracy(trained.stdout)  # eval mode: no dropout


@pytest.mark.mnist
@pytest.mark.slow
def test_ctrl_c_and_resume_with_dropout_end_bit_for_bit_where_an_uninterrupted_run_ends(mnist_dir, tmp_path):
    args = ["--train-subset", "2000", "--test-subset", "200", "--dropout", "0.5", "--epochs", "3", "--quiet"]
    whole, interrupted = tmp_path / "whole.npz", tmp_path / "interrupted.npz"
    assert run([*args, "--save", whole], mnist_dir).returncode == 0

    env = {**os.environ, "TINYGRAD_MNIST_DATA": str(mnist_dir)}
    process = subprocess.Popen([sys.executable, str(SCRIPT), *args, "--save", str(interrupted)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    deadline = time.monotonic() + 300
    while not interrupted.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # wait for the first checkpoint: epoch 1 is done
    process.send_signal(signal.SIGINT)  # Ctrl-C, somewhere in epoch 2 (or its evaluation)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr
    assert 1 <= load_checkpoint(interrupted).meta["epoch"] < 3

    resumed = run(["--resume", interrupted, "--quiet"], mnist_dir)
    assert resumed.returncode == 0, resumed.stderr
    expected, actual = load_checkpoint(whole).model_state, load_checkpoint(interrupted).model_state
    assert expected.keys() == actual.keys()
    for name in expected:  # the dropout masks come from the saved generator, so they repeat exactly
        assert actual[name].tobytes() == expected[name].tobytes(), name


@pytest.mark.mnist
def test_graph_alone_draws_the_cnn_step_with_parameter_names(mnist_dir, tmp_path):
    path = tmp_path / "cnn_step.dot"
    result = run([*SMALL, "--batch-size", "4", "--graph", path], mnist_dir)
    assert result.returncode == 0, result.stderr
    text = path.read_text()
    assert "Conv2d" in text and "MaxPool2d" in text and "0.weight" in text and "Training..." not in result.stdout
    assert "rankdir=TB" in text  # a long graph, top to bottom: it reads at page width


@pytest.mark.mnist
@pytest.mark.slow
def test_the_bn_preset_resumes_bit_for_bit_with_adams_state_and_the_batch_norm_buffers(mnist_dir, tmp_path):
    args = ["--preset", "bn", "--train-subset", "1000", "--test-subset", "200", "--epochs", "3", "--quiet"]
    whole, interrupted = tmp_path / "whole.npz", tmp_path / "interrupted.npz"
    finished = run([*args, "--save", whole], mnist_dir)
    assert finished.returncode == 0, finished.stderr
    assert "optimizer=adam norm=batch" in finished.stdout.splitlines()[0] and "augment=shift" in finished.stdout
    saved = load_checkpoint(whole)
    assert saved.meta["model"]["batch_norm"] is True
    assert saved.model_state["2.num_batches_tracked"] == 3 * 16  # 16 steps an epoch: a buffer, saved
    assert {"step.0", "exp_avg.0", "exp_avg_sq.0"} <= set(saved.optimizer_state)  # Adam's state, torch's names

    env = {**os.environ, "TINYGRAD_MNIST_DATA": str(mnist_dir)}
    process = subprocess.Popen([sys.executable, str(SCRIPT), *args, "--save", str(interrupted)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    deadline = time.monotonic() + 300
    while not interrupted.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the first checkpoint: epoch 1 is done
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=300)
    resumed = run(["--resume", interrupted, "--quiet"], mnist_dir)
    assert resumed.returncode == 0, resumed.stderr
    expected, actual = saved.model_state, load_checkpoint(interrupted).model_state
    for name in expected:  # weights, running statistics and counters, after Adam and the shifts resumed
        assert actual[name].tobytes() == expected[name].tobytes(), name
