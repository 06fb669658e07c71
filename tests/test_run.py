"""tinygrad_mnist/lab/run.py through examples/mnist.py: a run never lies, never crashes with a traceback.

Each test names the fault it tries; the numbered ones follow the list of faults in docs/reliability.md
(runs and the command line). Runs are real processes on a few hundred MNIST images.
"""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.test_mnist_example import REPO, SCRIPT, final_test_accuracy, run
from tinygrad_mnist import nn, optim
from tinygrad_mnist.lab import models, run as runlib
from tinygrad_mnist.lab.settings import parse_args
from tinygrad_mnist.lab.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tinygrad_mnist.lab.command import Stopped

TINY = ["--train-subset", "500", "--test-subset", "200", "--hidden", "16", "--quiet"]
SETTINGS = {"epochs": 2, "batch_size": 64, "lr": 0.1, "momentum": 0.9, "hidden": "16", "init_scale": 1.0,
            "negative_slope": 0.01, "clip_norm": None, "clip_value": None, "schedule": "cosine", "seed": 0,
            "dataset": "mnist"}


def assert_one_line_error(result, status, *phrases):
    assert result.returncode == status, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if "Warning" not in line and not line.startswith("  ")]
    assert len(lines) == 1, result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


def hand_made_checkpoint(path, **changes):
    """A checkpoint of a 784-16-10 MLP as the example writes it, with some record fields changed."""
    record = dict(model={"kind": "mlp", "layer_sizes": [784, 16, 10], "negative_slope": 0.01}, settings=dict(SETTINGS),
                  layer_sizes=[784, 16, 10],  # what earlier versions of the example read instead of model
                  epoch=1, rng_state=np.random.default_rng(0).bit_generator.state, train_subset=500, test_subset=200,
                  scheduler={"base_lrs": [0.1], "last_epoch": 8, "T_max": 16, "eta_min": 0.0})  # 8 steps an epoch
    record.update(changes)
    if isinstance(record["model"], dict) and "layer_sizes" in record["model"]:
        record["layer_sizes"] = record["model"]["layer_sizes"]
    return save_checkpoint(path, nn.mlp([784, 16, 10], rng=np.random.default_rng(0)).state_dict(), **record)


# ----- 1. --load rebuilds the saved model, with the saved settings ------------------------------
@pytest.mark.mnist
def test_load_rebuilds_the_saved_negative_slope_and_gives_the_accuracy_training_ended_with(mnist_dir, tmp_path):
    path = tmp_path / "s.npz"
    data = ["--train-subset", "2000", "--test-subset", "500", "--quiet"]
    trained = run([*data, "--negative-slope", "0.9", "--hidden", "32", "--epochs", "1", "--save", path], mnist_dir)
    assert trained.returncode == 0, trained.stderr
    loaded = run(["--load", path, *data], mnist_dir)
    assert loaded.returncode == 0, loaded.stderr
    assert final_test_accuracy(loaded.stdout) == final_test_accuracy(trained.stdout)
    model = models.load_model(path)
    assert model[1].negative_slope == 0.9 and model[0].weight.shape == (32, 784)


@pytest.mark.mnist
def test_load_with_epochs_trains_on_with_the_saved_settings_unless_a_flag_overrides_one(mnist_dir, tmp_path):
    path = tmp_path / "s.npz"
    assert run([*TINY, "--epochs", "1", "--lr", "0.05", "--momentum", "0.5", "--save", path], mnist_dir).returncode == 0
    result = run(["--load", path, "--epochs", "1", "--momentum", "0.7", "--quiet", "--train-subset", "500"], mnist_dir)
    assert result.returncode == 0, result.stderr
    settings = result.stdout.splitlines()[0]
    assert settings.startswith("Settings: ") and "lr=0.05" in settings and "momentum=0.7" in settings
    assert "hidden=16" in settings and f"from {path}" in settings and "Epoch 1/1" in result.stdout


@pytest.mark.mnist
def test_every_run_prints_the_settings_it_uses_on_its_first_line(mnist_dir):
    result = run([*TINY, "--epochs", "0", "--preset", "seed", "--hidden", "16"], mnist_dir)
    first = result.stdout.splitlines()[0]
    assert first.startswith("Settings: epochs=0 batch_size=32 lr=0.05 momentum=0.0 hidden=16 init_scale=0.1")


# ----- 2. divergence at the last step of an epoch ---------------------------------------------
@pytest.mark.mnist
def test_divergence_in_the_last_step_of_an_epoch_saves_nothing_and_exits_1(mnist_dir, tmp_path):
    path = tmp_path / "inf.npz"
    result = run(["--train-subset", "64", "--test-subset", "100", "--batch-size", "64", "--epochs", "1",
                  "--lr", "1e38", "--save", path, "--quiet"], mnist_dir)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "training diverged" in last and "was not written" in last and "--lr" in last
    assert not path.exists()


@pytest.mark.mnist
def test_divergence_keeps_a_finite_checkpoint_and_names_the_epoch_it_holds(mnist_dir, tmp_path):
    path = tmp_path / "c.npz"
    result = run(["--train-subset", "64", "--test-subset", "100", "--batch-size", "64", "--epochs", "40",
                  "--lr", "20", "--schedule", "constant", "--momentum", "0", "--save", path, "--quiet"], mnist_dir)
    assert result.returncode == 1
    kept = int(re.search(r"keeps epoch (\d+)", result.stderr).group(1))
    checkpoint = load_checkpoint(path)
    assert checkpoint.meta["epoch"] == kept
    assert all(np.isfinite(array).all() for array in checkpoint.model_state.values())


# ----- 5. --resume refuses the subset flags like the other training flags ------------------------
def test_resume_with_a_subset_flag_is_refused_with_status_2():
    result = run(["--resume", "run.npz", "--train-subset", "50"])
    assert_one_line_error(result, 2, "--resume continues the saved run", "drop --train-subset")


# ----- 7. wrongly typed or out-of-range record fields ------------------------------------------
BAD_RECORDS = {
    "layer_sizes [784, -4, 10]": dict(model={"kind": "mlp", "layer_sizes": [784, -4, 10], "negative_slope": 0.01}),
    "layer sizes too large": dict(model={"kind": "mlp", "layer_sizes": [784, 10**9, 10], "negative_slope": 0.01}),
    "unknown model kind": dict(model={"kind": "transformer"}),
    "model not a dict": dict(model=[784, 16, 10]),
    'epoch "1"': dict(epoch="1"),
    "epoch beyond the settings": dict(epoch=7),
    "epoch true": dict(epoch=True),
    'lr "0.1"': dict(settings={**SETTINGS, "lr": "0.1"}),
    "batch_size 0": dict(settings={**SETTINGS, "batch_size": 0}),
    "a setting missing": dict(settings={key: value for key, value in SETTINGS.items() if key != "seed"}),
    "settings a list": dict(settings=[1, 2]),
    "rng_state empty": dict(rng_state={}),
    "rng_state of another generator": dict(rng_state={"bit_generator": "MT19937", "state": 5}),
    "train_subset -5": dict(train_subset=-5),
}


@pytest.mark.mnist
@pytest.mark.parametrize("fault", list(BAD_RECORDS))
def test_resume_refuses_a_record_with_a_wrong_field_in_one_line(mnist_dir, tmp_path, fault):
    path = hand_made_checkpoint(tmp_path / "bad.npz", **BAD_RECORDS[fault])
    started = time.monotonic()
    result = run(["--resume", path, "--quiet"], mnist_dir)
    assert_one_line_error(result, 1, str(path))
    assert time.monotonic() - started < 60  # refused before allocating 10^9 x 784 weights


@pytest.mark.parametrize("fault", ["layer_sizes [784, -4, 10]", "layer sizes too large", "unknown model kind", "model not a dict"])
def test_load_model_refuses_an_unusable_model_record_with_a_checkpoint_error(tmp_path, fault):
    path = hand_made_checkpoint(tmp_path / "bad.npz", **BAD_RECORDS[fault])
    with pytest.raises(CheckpointError, match="model"):
        models.load_model(path)


def test_load_model_rebuilds_the_architecture_and_weights_a_checkpoint_names(tmp_path):
    path = hand_made_checkpoint(tmp_path / "good.npz", model={"kind": "mlp", "layer_sizes": [784, 16, 10], "negative_slope": 0.2})
    model = models.load_model(path)
    expected = nn.mlp([784, 16, 10], rng=np.random.default_rng(0)).state_dict()
    assert model[1].negative_slope == 0.2
    assert all(np.array_equal(model.state_dict()[name], expected[name]) for name in expected)


# ----- 8. the save target is checked before training ------------------------------------------
@pytest.mark.mnist
def test_save_to_a_folder_under_a_file_or_onto_another_run_fails_before_training(mnist_dir, tmp_path):
    (tmp_path / "folder.npz").mkdir()
    (tmp_path / "afile").write_text("x")
    hand_made_checkpoint(tmp_path / "other.npz")
    for target, phrase in [(tmp_path / "folder.npz", "is a folder"), (tmp_path / "afile" / "run.npz", "is a file"),
                           (tmp_path / "other.npz", "--overwrite"), ("/proc/run.npz", "cannot write in /proc")]:
        result = run([*TINY, "--epochs", "1", "--save", target], mnist_dir)
        assert_one_line_error(result, 2, "--save", phrase)
        assert "Training..." not in result.stdout and "Settings" not in result.stdout
    assert load_checkpoint(tmp_path / "other.npz").meta["epoch"] == 1  # untouched


@pytest.mark.mnist
def test_overwrite_replaces_another_run_and_resume_may_save_onto_its_own_file(mnist_dir, tmp_path):
    path = hand_made_checkpoint(tmp_path / "other.npz", settings={**SETTINGS, "epochs": 2})
    assert run([*TINY, "--epochs", "1", "--save", path, "--overwrite"], mnist_dir).returncode == 0
    resumed = run(["--resume", path, "--quiet"], mnist_dir)
    assert resumed.returncode == 0, resumed.stderr


def test_a_failed_checkpoint_write_is_one_line_that_says_what_the_file_still_holds(tmp_path, monkeypatch):
    args = parse_args(dict(SETTINGS), argv=["--save", str(tmp_path / "run.npz")])
    session = runlib.Session(args)
    model = session.model({"kind": "mlp", "layer_sizes": [784, 16, 10], "negative_slope": 0.01})
    optimizer, rng = optim.SGD(model.parameters(), lr=0.1), np.random.default_rng(0)
    session.start(model, optimizer, None, rng)
    session.end_epoch(1, train_loss=1.0)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(runlib, "save_checkpoint", disk_full)
    with pytest.raises(runlib.RunError, match=r"could not write .*run.npz \(No space left on device\); .*keeps epoch 1"):
        session.end_epoch(2, train_loss=1.0)
    assert load_checkpoint(tmp_path / "run.npz").meta["epoch"] == 1


# ----- 9. an anomaly in the per-epoch evaluation ----------------------------------------------
@pytest.mark.mnist
def test_detect_anomaly_in_the_evaluation_after_an_epoch_is_one_line(mnist_dir):
    result = run(["--train-subset", "64", "--test-subset", "100", "--batch-size", "64", "--epochs", "1",
                  "--lr", "1e38", "--detect-anomaly", "--quiet"], mnist_dir)
    assert_one_line_error(result, 1, "error: while evaluating after epoch 1:", "produced")


# ----- 11, 13. settings that cannot train are refused at once ------------------------------------
@pytest.mark.parametrize("args, phrase", [
    (["--seed", "-1"], "--seed must be 0 or more"),
    (["--hidden", "999999999"], "parameters"),
    (["--hidden", "100000,100000"], "parameters"),
    (["--init-scale", "inf"], "--init-scale must be a positive number up to 1000"),
    (["--negative-slope", "nan"], "--negative-slope must be a finite number"),
    # issue 18, item 6: float32(1e39) is inf, and He's scale times 1e30 overflows float32 in two layers
    (["--negative-slope", "1e39"], "--negative-slope must be a finite number in float32"),
    (["--init-scale", "1e30"], "--init-scale must be a positive number up to 1000"),
    (["--clip-value", "1e-50"], "--clip-value must be a positive number float32 can hold"),
    (["--clip-norm", "1e39"], "--clip-norm must be a positive number float32 can hold"),
    (["--lr", "1e-50"], "--lr must be a positive number"),
    (["--lr", "nan"], "--lr must be a positive number"),
    (["--graph", "step.jpg"], "end the file name with .svg"),
])
def test_settings_that_cannot_train_exit_2_in_one_line(args, phrase, tmp_path):
    started = time.monotonic()
    result = run(args, data_dir=tmp_path)  # no MNIST files there: the refusal comes first
    assert_one_line_error(result, 2, phrase)
    assert time.monotonic() - started < 60


# ----- 12. Ctrl-C while the modules import ---------------------------------------------------
def test_ctrl_c_while_numpy_imports_stops_at_once_as_any_python_program_and_writes_nothing(tmp_path):
    # deliver a real SIGINT at the moment the script imports numpy: before the first step nothing
    # is at risk, so the script has no handler of its own there (docs/reliability.md)
    path = tmp_path / "run.npz"
    code = (
        "import builtins, os, runpy, signal, sys\n"
        "real_import = builtins.__import__\n"
        "def importing(name, *args, **kwargs):\n"
        "    if name == 'numpy': builtins.__import__ = real_import; os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real_import(name, *args, **kwargs)\n"
        "builtins.__import__ = importing\n"
        "sys.modules.pop('numpy', None)\n"
        f"sys.argv = ['mnist.py', '--quiet', '--save', {str(path)!r}]\n"
        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode in (-signal.SIGINT, 130)  # Python's own way: it ends by the signal
    assert "KeyboardInterrupt" in result.stderr and not path.exists() and list(tmp_path.iterdir()) == []


# ----- 14. Ctrl-C after --resume A --save B, before an epoch ends ---------------------------------
@pytest.mark.mnist
def test_ctrl_c_before_the_first_epoch_of_a_resumed_run_names_the_file_that_holds_it(mnist_dir, tmp_path):
    first, second = tmp_path / "A.npz", tmp_path / "B.npz"
    args = ["--test-subset", "100", "--hidden", "64", "--epochs", "3", "--quiet"]
    assert run([*args, "--epochs", "3", "--train-subset", "100", "--save", first], mnist_dir).returncode == 0
    # a checkpoint whose next epoch is long: epoch 1 of 3 over the whole training set, one image a step
    checkpoint = load_checkpoint(first)
    meta = {**checkpoint.meta, "epoch": 1, "train_subset": None, "settings": {**checkpoint.meta["settings"], "batch_size": 1}}
    save_checkpoint(first, checkpoint.model_state, checkpoint.optimizer_state, **meta)
    process = subprocess.Popen([sys.executable, "-u", str(SCRIPT), "--resume", str(first), "--save", str(second)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                               env=dict(os.environ, TINYGRAD_MNIST_DATA=str(mnist_dir)))
    for line in process.stdout:
        if line.startswith("Training..."):
            break
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert not second.exists()
    assert f"{second} was not written; continue with --resume {first} --save {second}" in stderr


# ----- 17. progress in a log file --------------------------------------------------------------
@pytest.mark.mnist
def test_progress_is_one_plain_line_per_epoch_when_stderr_is_not_a_terminal(mnist_dir):
    args = [sys.executable, str(SCRIPT), *[arg for arg in TINY if arg != "--quiet"], "--epochs", "2"]
    env = dict(os.environ, TINYGRAD_MNIST_DATA=str(mnist_dir))
    result = subprocess.run(args, capture_output=True, timeout=300, env=env, cwd=REPO)  # bytes: "\r" as written
    assert result.returncode == 0, result.stderr
    assert b"\r" not in result.stderr and b"\r" not in result.stdout
    assert len(re.findall(rb"^Epoch \d/2 ", result.stdout, re.MULTILINE)) == 2


# ----- 18. --graph alone draws and exits ------------------------------------------------------
@pytest.mark.mnist
def test_graph_alone_draws_and_exits_and_with_epochs_draws_then_trains(mnist_dir, tmp_path):
    alone = run([*TINY, "--graph", tmp_path / "step.dot"], mnist_dir)
    assert alone.returncode == 0, alone.stderr
    assert (tmp_path / "step.dot").exists() and "Training..." not in alone.stdout
    then = run([*TINY, "--graph", tmp_path / "again.dot", "--epochs", "1"], mnist_dir)
    assert then.returncode == 0 and (tmp_path / "again.dot").exists() and "Epoch 1/1" in then.stdout


# ----- --metrics ------------------------------------------------------------------------------
@pytest.mark.mnist
@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_metrics_writes_one_record_per_epoch_with_the_printed_numbers(mnist_dir, tmp_path, suffix):
    path = tmp_path / f"logs/metrics{suffix}"
    result = run([*TINY, "--epochs", "2", "--metrics", path], mnist_dir)
    assert result.returncode == 0, result.stderr
    lines = path.read_text().splitlines()
    if suffix == ".csv":
        assert lines[0] == "epoch,train_loss,test_loss,test_accuracy,lr,seconds"
        rows = [dict(zip(lines[0].split(","), map(float, line.split(",")))) for line in lines[1:]]
    else:
        rows = [json.loads(line) for line in lines]
    assert [row["epoch"] for row in rows] == [1, 2]
    printed = re.findall(r"Epoch \d/2  loss ([\d.]+)  test accuracy ([\d.]+)%", result.stdout)
    for row, (loss, accuracy) in zip(rows, printed):
        assert f"{row['train_loss']:.4f}" == loss and f"{100 * row['test_accuracy']:.2f}" == accuracy
        assert row["test_loss"] > 0 and row["seconds"] > 0
    assert rows[1]["lr"] < rows[0]["lr"]  # the cosine schedule's last step of each epoch


def test_metrics_into_a_folder_is_refused_before_anything_runs(tmp_path):
    assert_one_line_error(run(["--metrics", tmp_path], data_dir=tmp_path), 2, "--metrics", "is a folder")


# ----- 7, fuzzed: any one record field set to any value is either used or refused in one line ------
ODD_VALUES = [None, True, False, -1, 0, 1, 3, 2**70, -(2**70), 0.5, -0.5, 1e308, float("nan"), float("inf"),
              10**400, "", "1", "x", [], [1], [784, 16, 10], {}, {"kind": "mlp"}]


def record_fields(record, prefix=()):
    """Every (path of keys, value) in a nested record, lists included."""
    for key, value in (record.items() if isinstance(record, dict) else enumerate(record)):
        yield (*prefix, key), value
        if isinstance(value, (dict, list)):
            yield from record_fields(value, (*prefix, key))


def test_resume_setup_uses_or_refuses_every_single_field_mutation_and_raises_nothing_else(tmp_path, capsys):
    good = load_checkpoint(hand_made_checkpoint(tmp_path / "good.npz"))
    fields = [path for path, _ in record_fields(good.meta)]
    rng = np.random.default_rng(11)
    outcomes = {"used": 0, "refused": 0}
    for trial in range(500):
        meta = json.loads(json.dumps(good.meta))
        *parents, last = fields[rng.integers(len(fields))]
        target = meta
        for key in parents:
            target = target[key]
        target[last] = ODD_VALUES[rng.integers(len(ODD_VALUES))]
        path = tmp_path / f"mutant{trial}.npz"
        try:  # the writer itself refuses a record that is not JSON (NaN, inf)
            save_checkpoint(path, good.model_state, good.optimizer_state, **meta)
            args = parse_args(dict(SETTINGS), argv=["--resume", str(path)])
            session = runlib.Session(args)
            settings = session.settings
            sizes = [784, *map(int, settings.hidden.split(",")), 10]
            model = session.model({"kind": "mlp", "layer_sizes": sizes, "negative_slope": settings.negative_slope},
                                  init_scale=settings.init_scale)
            optimizer = optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                                  clip_value=settings.clip_value, clip_norm=settings.clip_norm)
            scheduler = optim.CosineAnnealingLR(optimizer, T_max=16) if settings.schedule == "cosine" else None
            session.start(model, optimizer, scheduler, np.random.default_rng(settings.seed))
            outcomes["used"] += 1
        except (runlib.RunError, CheckpointError) as error:
            assert "\n" not in str(error)
            outcomes["refused"] += 1
        path.unlink(missing_ok=True)
    capsys.readouterr()
    assert outcomes["refused"] > 200 and outcomes["used"] > 20, outcomes


def test_a_record_cannot_set_anything_but_the_settings(tmp_path, capsys):
    path = hand_made_checkpoint(tmp_path / "sly.npz", settings={**SETTINGS, "save": "/elsewhere.npz", "overwrite": True})
    args = parse_args(dict(SETTINGS), argv=["--resume", str(path)])
    session = runlib.Session(args)
    assert session.save_path == path and args.overwrite is False and not hasattr(session.settings, "save")


def test_ctrl_c_during_an_epoch_s_evaluation_keeps_that_epoch_then_exits_130(tmp_path, capsys):
    path = tmp_path / "run.npz"
    session = runlib.Session(parse_args(dict(SETTINGS), argv=["--save", str(path)]))
    model = session.model({"kind": "mlp", "layer_sizes": [784, 16, 10], "negative_slope": 0.01})
    optimizer, rng = optim.SGD(model.parameters(), lr=0.1), np.random.default_rng(0)
    session.start(model, optimizer, None, rng)
    with pytest.raises(Stopped) as stopped, session.training():
        session.stop.requested = signal.SIGINT  # Ctrl-C arrived after the epoch's last step, while evaluating
        session.end_epoch(1, train_loss=1.0)
    assert stopped.value.status == 130 and load_checkpoint(path).meta["epoch"] == 1
    assert f"{path} holds epoch 1; continue with --resume {path}" in stopped.value.message
    with pytest.raises(Stopped) as stopped, session.training():
        session.stop.requested = signal.SIGTERM  # ... or after the last epoch, before the final report
    assert stopped.value.status == 143 and stopped.value.message.startswith("Stopped by SIGTERM ")


# ----- the dataset and the figure of a run -------------------------------------------------------
@pytest.mark.fashion_mnist
def test_dataset_fashion_mnist_trains_on_clothes_and_reports_each_class_by_name(fashion_mnist, tmp_path):
    result = run([*TINY, "--dataset", "fashion-mnist", "--epochs", "1", "--save", tmp_path / "f.npz"], None)
    assert result.returncode == 0, result.stderr
    per_class = [line for line in result.stdout.splitlines() if line.startswith("Per class: ")]
    assert len(per_class) == 1 and "T-shirt/top" in per_class[0] and "Ankle boot" in per_class[0]
    assert "dataset=fashion-mnist" in result.stdout.splitlines()[0]
    assert load_checkpoint(tmp_path / "f.npz").meta["settings"]["dataset"] == "fashion-mnist"  # --resume keeps it


@pytest.mark.mnist
def test_plot_draws_one_figure_of_the_run_after_training(mnist_dir, tmp_path):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib (pip install -e '.[plots]')")
    result = run([*TINY, "--epochs", "2", "--plot", tmp_path / "run.png"], mnist_dir)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"Figure of the run written to {tmp_path / 'run.png'}" in result.stdout


def test_plot_to_a_file_it_cannot_draw_is_refused_before_anything_runs(tmp_path):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib (pip install -e '.[plots]')")
    result = run([*TINY, "--plot", tmp_path / "run.txt"], None)
    assert_one_line_error(result, 2, "--plot", ".png or .svg")
    assert "Settings" not in result.stdout


def test_a_plain_process_s_cnn_steps_fault_nothing_in_because_the_import_pins_malloc():
    # a learner's own loop: import, build, train; minor page faults over steps 5-24, per step
    code = (
        "import resource, numpy as np\n"
        "from tinygrad_mnist import Tensor, functional as F, modes, nn, optim\n"
        "rng = np.random.default_rng(0)\n"
        "model = nn.lenet(rng=rng); optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)\n"
        "images = rng.random((64, 1, 28, 28), dtype=np.float32); labels = rng.integers(0, 10, 64)\n"
        "for step in range(25):\n"
        "    if step == 5: before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "    loss = F.cross_entropy(model(Tensor(images)), labels)\n"
        "    optimizer.zero_grad(); loss.backward(); optimizer.step()\n"
        "print(modes.malloc_pinned, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)\n"
    )
    faults = {}
    for mode in ("system", "pinned"):
        env = {**os.environ, "TINYGRAD_MNIST_MALLOC": mode}
        env.pop("GLIBC_TUNABLES", None)
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
        assert result.returncode == 0, result.stderr
        pinned, per_step = result.stdout.split()
        if mode == "pinned" and pinned != "True":
            pytest.skip("pin_malloc_thresholds needs glibc's mallopt")
        faults[mode] = float(per_step)
    # measured: 574 faults per step with glibc's moving thresholds (2,900-4,600 in the benchmark,
    # which also converts the images each step), 0.45 pinned on a quiet machine and 25-35 on one
    # running a dozen other jobs (the threads' arenas): pinned takes at least ten times fewer
    assert faults["system"] > 100 and faults["pinned"] < faults["system"] / 10, faults


# ----- issue 18, items 6, 13, 14: finite where it is used, a record checked against its arrays --------
@pytest.mark.mnist
def test_a_model_whose_initial_outputs_are_nan_is_not_saved_with_0_epochs(mnist_dir, tmp_path):
    # fifteen layers at 1000 times He's scale: the outputs overflow float32 before any training
    path = tmp_path / "s.npz"
    result = run([*TINY, "--hidden", ",".join(["16"] * 15), "--init-scale", "1000", "--epochs", "0",
                  "--save", path], mnist_dir)
    assert "Initial loss: nan" in result.stdout
    assert_one_line_error(result, 1, "outputs on the test images are not finite", "was not written",
                          "--init-scale (now 1000.0)")
    assert not path.exists()


def test_a_record_asking_for_a_huge_layer_in_a_small_file_is_refused_before_building(tmp_path):
    import tracemalloc

    path = hand_made_checkpoint(tmp_path / "big.npz", model={"kind": "mlp", "layer_sizes": [784, 120000, 10],
                                                             "negative_slope": 0.01})
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=r"needs 95,400,010 parameters but its arrays hold 12,730 numbers"):
            models.load_model(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 << 20, f"{peak} bytes allocated for a {path.stat().st_size}-byte file"
    for flag in ("--load", "--resume"):
        assert_one_line_error(run([flag, path, "--quiet"], tmp_path), 1, "big.npz holds an unusable model",
                              "needs 95,400,010 parameters")


@pytest.mark.parametrize("flag", ["--load", "--resume"])
def test_a_record_field_rng_5_is_one_line(flag, tmp_path):
    path = hand_made_checkpoint(tmp_path / "rng.npz", model={"kind": "mlp", "layer_sizes": [784, 16, 10],
                                                             "negative_slope": 0.01, "rng": 5})
    assert_one_line_error(run([flag, path, "--quiet"], tmp_path), 1, "holds an unusable model", "'rng'")
