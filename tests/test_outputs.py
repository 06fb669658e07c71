"""Nothing the kit writes is lost: the one guard of every output path (lab/command.py:
check_outputs), one writer per file, and SIGINT/SIGTERM handled alike, in all three commands.

Each test names the fault it tries, numbered as the faults of docs/reliability.md ("Outputs and
signals"). Refusals come before any work, so most runs here need no MNIST files: they point the
data folder at an empty one and are refused before it is looked at.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.test_mnist_example import REPO, run
from tests.test_run import TINY, assert_one_line_error, hand_made_checkpoint
from tinygrad_mnist.lab.checkpoint import load_checkpoint

PREDICT, TO_TORCH = REPO / "examples" / "predict.py", REPO / "examples" / "to_torch.py"


def run_script(script, *args, timeout=60):
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def leftovers(folder):
    """Temporary or lock files in `folder` (none may stay after a command ends)."""
    return sorted(name for name in os.listdir(folder) if name.startswith(".") or name.endswith(".tmp"))


# ----- 1. --metrics onto an input or onto another run's file -------------------------------------
def test_metrics_onto_the_loaded_checkpoint_or_another_file_is_refused_and_both_stay_whole(tmp_path):
    checkpoint = hand_made_checkpoint(tmp_path / "a.npz")
    before = checkpoint.read_bytes()
    result = run(["--load", checkpoint, "--metrics", checkpoint], data_dir=tmp_path)
    assert_one_line_error(result, 2, f"--metrics {checkpoint}: that is the file --load reads")
    other = hand_made_checkpoint(tmp_path / "other_run.npz")
    result = run(["--load", checkpoint, "--metrics", tmp_path / "sub" / ".." / "other_run.npz"], data_dir=tmp_path)
    assert_one_line_error(result, 2, "already exists", "--overwrite")
    assert checkpoint.read_bytes() == before and load_checkpoint(other).meta["epoch"] == 1


def test_an_output_onto_a_data_file_is_refused_even_with_overwrite(tmp_path):
    # the data files are inputs too: --overwrite replaces another run's file, never what this run reads
    data_file = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    data_file.parent.mkdir()
    data_file.write_bytes(b"the images")
    result = run(["--metrics", data_file, "--overwrite"], data_dir=tmp_path)
    assert_one_line_error(result, 2, f"--metrics {data_file}: that is the file the data reads")
    assert data_file.read_bytes() == b"the images"


# ----- 2. two outputs on one path ------------------------------------------------------------------
@pytest.mark.parametrize("first, second", [("--save", "--plot"), ("--save", "--metrics"), ("--metrics", "--graph")])
def test_two_outputs_on_one_path_are_refused_before_anything_runs(tmp_path, first, second):
    path = tmp_path / "run.png"
    result = run([first, path, second, tmp_path / "." / "run.png"], data_dir=tmp_path)
    assert_one_line_error(result, 2, f"{first} writes there too")
    assert not path.exists() and leftovers(tmp_path) == []


# ----- 3. to_torch.py --back or --out onto the checkpoint it reads --------------------------------
@pytest.mark.parametrize("flag", ["--back", "--out"])
def test_to_torch_refuses_to_write_onto_the_checkpoint_it_converts(tmp_path, flag):
    checkpoint = hand_made_checkpoint(tmp_path / "run.npz")
    before = checkpoint.read_bytes()
    result = run_script(TO_TORCH, checkpoint, flag, checkpoint)
    assert_one_line_error(result, 2, f"to_torch.py: error: {flag} {checkpoint}: that is the file CHECKPOINT reads")
    assert checkpoint.read_bytes() == before
    result = run_script(TO_TORCH, checkpoint, "--out", tmp_path / "m.pt", "--back", tmp_path / "m.pt")
    assert_one_line_error(result, 2, "--out writes there too")


# ----- 4. predict.py --show onto one of its images ------------------------------------------------
def test_predict_refuses_to_show_onto_an_image_it_reads(tmp_path):
    pytest.importorskip("PIL.Image", reason="Pillow is not installed")
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n a large photo")
    (tmp_path / "link.png").symlink_to(photo)
    result = run_script(PREDICT, photo, "--model", hand_made_checkpoint(tmp_path / "m.npz"), "--show", tmp_path / "link.png")
    assert_one_line_error(result, 2, "predict.py: error: --show", "that is the file IMAGE reads")
    assert photo.read_bytes() == b"\x89PNG\r\n\x1a\n a large photo"


# ----- 5. one writer per file ------------------------------------------------------------------------
def test_a_second_run_saving_where_a_live_run_writes_is_refused_and_the_lock_dies_with_its_owner(tmp_path):
    from tinygrad_mnist.lab.command import check_outputs

    path = tmp_path / "same.npz"
    claim = check_outputs({"--save": path})  # this process stands for the first run, still training
    quick = ["--epochs", "0", "--train-subset", "10", "--test-subset", "10", "--hidden", "4"]  # if not refused
    result = run(["--save", path, *quick], data_dir=tmp_path)
    assert_one_line_error(result, 2, f"--save {path}: another run (process {os.getpid()}) is writing it now")
    claim.release()
    assert leftovers(tmp_path) == []  # the lock file goes with its run
    # a run killed with SIGKILL leaves its lock file, unlocked: the next run takes it over
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from tinygrad_mnist.lab.command import "
                               f"check_outputs; claim = check_outputs({{'--save': {str(path)!r}}}); print(1, flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert holder.stdout.readline() == "1\n"
    assert_one_line_error(run(["--save", path, *quick], data_dir=tmp_path), 2, "another run")
    holder.kill()
    holder.wait()
    assert len(leftovers(tmp_path)) == 1
    claim = check_outputs({"--save": path})
    claim.release()
    assert leftovers(tmp_path) == []


# ----- 9. --metrics onto a named pipe --------------------------------------------------------------
def test_metrics_onto_a_fifo_is_refused_at_once_instead_of_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    result = run(["--metrics", tmp_path / "fifo"], data_dir=tmp_path, timeout=60)
    assert_one_line_error(result, 2, "named pipe (FIFO), not a regular file")


# ----- 14, 15, 16. every output of every command, onto what cannot hold a file ---------------------
def bad_targets(tmp_path, suffix, device=True):
    """Paths that cannot hold a file, each with the phrase its refusal names."""
    (tmp_path / f"folder{suffix}").mkdir(exist_ok=True)
    (tmp_path / "afile").write_text("x")
    if not (tmp_path / f"fifo{suffix}").exists():
        os.mkfifo(tmp_path / f"fifo{suffix}")
    targets = {tmp_path / f"folder{suffix}": "it is a folder", tmp_path / "afile" / f"x{suffix}": "afile is a file, not a folder",
               tmp_path / f"fifo{suffix}": "named pipe", f"/proc/x{suffix}": "cannot write in /proc"}
    return {**targets, "/dev/full": "a device, not a regular file"} if device else targets


@pytest.mark.parametrize("flag, suffix", [("--save", ".npz"), ("--metrics", ".jsonl"), ("--plot", ".png"), ("--graph", ".dot")])
def test_mnist_refuses_every_output_that_cannot_be_a_file_before_training(tmp_path, flag, suffix):
    if flag == "--plot":
        pytest.importorskip("matplotlib", reason="--plot needs matplotlib")
    for target, phrase in bad_targets(tmp_path, suffix, device=flag in ("--save", "--metrics")).items():
        assert_one_line_error(run([flag, target], data_dir=tmp_path), 2, f"{flag} {target}", phrase)


def test_predict_show_onto_a_fifo_a_folder_under_a_file_or_proc_is_refused_before_reading(tmp_path):
    model = hand_made_checkpoint(tmp_path / "m.npz")
    for target, phrase in bad_targets(tmp_path, ".png", device=False).items():
        result = run_script(PREDICT, tmp_path / "missing.png", "--model", model, "--show", target)
        assert_one_line_error(result, 2, f"--show {target}", phrase)


@pytest.mark.parametrize("flag", ["--out", "--back"])
def test_to_torch_refuses_an_output_that_cannot_be_a_file_before_the_work(tmp_path, flag):
    checkpoint = hand_made_checkpoint(tmp_path / "run.npz")
    for target, phrase in bad_targets(tmp_path, ".pt").items():
        started = time.monotonic()
        result = run_script(TO_TORCH, checkpoint, flag, target)
        assert_one_line_error(result, 2, f"{flag} {target}", phrase)
        assert "PyTorch model" not in result.stdout and time.monotonic() - started < 30


def test_names_and_paths_too_long_are_refused_and_a_legal_long_name_is_written(tmp_path):
    from tinygrad_mnist.atomic import write_atomically

    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    result = run(["--save", tmp_path / ("x" * (name_max + 1))], data_dir=tmp_path)
    assert_one_line_error(result, 2, f"the file name is {name_max + 1} bytes, more than the {name_max}")
    result = run(["--metrics", tmp_path / ("d/" * 2500 + "m.jsonl")], data_dir=tmp_path)
    assert_one_line_error(result, 2, "the path is", "choose a shorter path")
    longest = tmp_path / ("y" * (name_max - 4) + ".npz")  # a legal name: its temporary name must fit too
    result = run(["--save", longest, "--epochs", "0"], data_dir=tmp_path)
    assert "file name" not in result.stderr and "cannot write" not in result.stderr  # passed the guard
    write_atomically(longest, lambda file: file.write(b"whole"))
    assert longest.read_bytes() == b"whole" and leftovers(tmp_path) == []


# ----- 16. a write that fails after the start says what each file keeps ------------------------------
def test_a_metrics_write_that_fails_later_is_one_line_saying_what_is_kept(tmp_path, monkeypatch):
    import errno

    from tests.test_run import SETTINGS
    from tinygrad_mnist import optim
    from tinygrad_mnist.lab import run as runlib
    from tinygrad_mnist.lab.settings import parse_args

    args = parse_args(dict(SETTINGS), argv=["--save", str(tmp_path / "run.npz"), "--metrics", str(tmp_path / "m.jsonl")])
    session = runlib.Session(args)
    model = session.model({"kind": "mlp", "layer_sizes": [784, 16, 10], "negative_slope": 0.01})
    session.start(model, optim.SGD(model.parameters(), lr=0.1), None, np.random.default_rng(0))
    session.end_epoch(1, train_loss=1.0)

    def disk_full(path, write):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(runlib, "write_atomically", disk_full)
    with pytest.raises(runlib.RunError, match=r"could not write --metrics .*m.jsonl \(the disk is full\); it keeps its "
                       r"previous version; .*run.npz keeps epoch 2"):
        session.end_epoch(2, train_loss=1.0)
    assert (tmp_path / "m.jsonl").read_text().count("\n") == 1


@pytest.mark.mnist
def test_a_resumed_run_continues_its_metrics_log_as_the_unbroken_run_wrote_it(mnist_dir, tmp_path):
    path, log = tmp_path / "run.npz", tmp_path / "m.csv"
    assert run([*TINY, "--epochs", "2", "--save", path, "--metrics", log], mnist_dir).returncode == 0
    checkpoint = load_checkpoint(path)  # as if stopped after epoch 1, with the log already at epoch 2
    from tinygrad_mnist.lab.checkpoint import save_checkpoint

    save_checkpoint(path, checkpoint.model_state, checkpoint.optimizer_state, **{**checkpoint.meta, "epoch": 1})
    result = run(["--resume", path, "--metrics", log, "--quiet"], mnist_dir)
    assert result.returncode == 0, result.stderr
    assert [line.split(",")[0] for line in log.read_text().splitlines()] == ["epoch", "1", "2"]


# ----- 16. SIGTERM and double Ctrl-C -----------------------------------------------------------------
def start_training(mnist_dir, path, *extra):
    # 750 steps an epoch, 0.2 to 1 s: 40 epochs outlast every signal below (each run is stopped by one;
    # with 3 epochs a quiet machine finished before the last trial's signals arrived)
    process = subprocess.Popen([sys.executable, "-u", str(REPO / "examples" / "mnist.py"), "--train-subset", "6000",
                                "--test-subset", "100", "--hidden", "16", "--batch-size", "8", "--epochs", "40",
                                "--quiet", "--save", str(path), *extra], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=REPO,
                               env=dict(os.environ, TINYGRAD_MNIST_DATA=str(mnist_dir)))
    for line in process.stdout:
        if line.startswith("Training..."):
            return process
    raise AssertionError(process.communicate())


@pytest.mark.mnist
def test_sigterm_keeps_the_last_finished_epoch_says_so_in_one_line_and_exits_143(mnist_dir, tmp_path):
    path = tmp_path / "run.npz"
    process = start_training(mnist_dir, path)
    deadline = time.monotonic() + 120
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)  # epoch 1 is saved
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    held = load_checkpoint(path).meta["epoch"]
    assert "Stopped by SIGTERM in epoch" in stderr and f"{path} holds epoch {held}; continue with --resume" in stderr
    assert leftovers(tmp_path) == []


@pytest.mark.mnist
def test_two_quick_ctrl_c_never_print_a_traceback(mnist_dir, tmp_path):
    outcomes = []
    for trial in range(12):
        process = start_training(mnist_dir, tmp_path / f"r{trial}.npz")
        time.sleep(0.025 * trial)  # from the first step to a quarter of the first epoch
        process.send_signal(signal.SIGINT)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
        outcomes.append((process.returncode, "Traceback" in stderr or "Error" in stderr, len(stderr.strip().splitlines())))
    assert set(outcomes) == {(130, False, 1)}, outcomes
    assert leftovers(tmp_path) == []


# ----- 14, 15. Ctrl-C in predict.py and to_torch.py ---------------------------------------------------
@pytest.mark.parametrize("script", ["predict.py", "to_torch.py"])
def test_ctrl_c_in_predict_or_to_torch_is_one_line_and_exit_130(tmp_path, script):
    # a real SIGINT while the model loads
    args = [str(tmp_path / "x.png"), "--model"] if script == "predict.py" else []
    code = ("import os, runpy, signal, sys, time\n"
            "import tinygrad_mnist.lab.models as models\n"
            "def loading(path): os.kill(os.getpid(), signal.SIGINT); time.sleep(30)\n"
            "models.load_model = loading\n"
            f"sys.argv = [{script!r}, *{args!r}, {str(tmp_path / 'm.npz')!r}]\n"
            f"runpy.run_path({str(REPO / 'examples' / script)!r}, run_name='__main__')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    if script == "to_torch.py" and "needs torch" in result.stderr:
        pytest.skip("to_torch.py needs torch")
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip() == "Stopped by Ctrl-C."
