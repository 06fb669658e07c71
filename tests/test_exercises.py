"""The exercise track (docs/exercises.md) and its checker, `python -m tinygrad_mnist.exercises`.

Every solution in examples/solutions/ passes its check; every skeleton in examples/exercises/
fails it, saying it is not written yet; and a broken copy of a solution, made here by changing one
line, fails with the named diagnosis of that mistake, so each diagnosis is shown to fire. The
training runs of the checks need MNIST and take a few seconds each: they are marked slow.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tinygrad_mnist import Function, GradcheckError, Tensor, gradcheck
from tinygrad_mnist.exercises import EXERCISES, check, exercise
from tinygrad_mnist.exercises.common import DIAGNOSES, CheckFailed, check_op

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "examples" / "solutions"
SKELETONS = ROOT / "examples" / "exercises"
TRAINED = ["elu", "rrelu", "rmsprop", "batchnorm", "init_clip"]  # the checks with a training run


def run_check(name, path, train=False):
    """(passed, printed output) of checking `path` as exercise `name`."""
    out = io.StringIO()
    passed = check(name, path, train=train, out=out)
    return passed, out.getvalue()


# ----- solutions and skeletons -------------------------------------------------------------------
@pytest.mark.parametrize("name", EXERCISES)
def test_every_solution_passes_its_check_without_the_training_run(name):
    passed, output = run_check(name, SOLUTIONS / f"{name}.py")
    assert passed, output
    assert "FAIL" not in output


@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.parametrize("name", TRAINED)
def test_every_solution_passes_its_check_with_the_training_run(name, mnist_dir, monkeypatch):
    monkeypatch.setenv("TINYGRAD_MNIST_DATA", str(mnist_dir))
    passed, output = run_check(name, SOLUTIONS / f"{name}.py", train=True)
    assert passed, output
    assert "trains:" in output or "first losses:" in output


@pytest.mark.parametrize("name", EXERCISES)
def test_every_skeleton_fails_saying_it_is_not_written_yet(name):
    passed, output = run_check(name, SKELETONS / f"{name}.py")
    assert not passed
    assert "[not-implemented]" in output, output


# ----- each named diagnosis fires on the mistake it names ----------------------------------------
BACKWARD_BREADTH_FIRST = """    order, seen, queue = [], {root}, [root]
    while queue:  # breadth first, nearest the root first: not an order of the graph
        tensor = queue.pop(0)
        order.append(tensor)
        if tensor.grad_fn is not None:
            for parent in tensor.grad_fn.inputs:
                if parent not in seen:
                    seen.add(parent)
                    queue.append(parent)
    return order[::-1]
    stack = []
    while stack:
"""
BACKWARD_RECURSIVE = """    order, seen = [], set()

    def visit(tensor):
        if tensor in seen:
            return
        seen.add(tensor)
        if tensor.grad_fn is not None:
            for parent in tensor.grad_fn.inputs:
                visit(parent)
        order.append(tensor)

    visit(root)
    return order
    stack = []
    while stack:
"""
BROKEN = [
    # (exercise, a line of the solution, what a learner wrote instead, the diagnosis)
    ("backward", "grads[parent] = grads[parent] + parent_grad if parent in grads else parent_grad",
     "grads[parent] = parent_grad", "overwrote-instead-of-adding"),
    ("backward", "    order, seen, stack = [], set(), [(root, False)]\n    while stack:\n", BACKWARD_BREADTH_FIRST,
     "visited-before-all-users"),
    ("backward", "    order, seen, stack = [], set(), [(root, False)]\n    while stack:\n", BACKWARD_RECURSIVE, "recursion-limit"),
    ("backward", "if parent_grad is None or not parent.requires_grad:", "if parent_grad is None:", "branch-needs-no-gradient"),
    ("backward", "grad = grads.pop(tensor, None)", "grad = grads.pop(tensor, np.zeros_like(tensor.data))", "unused-input"),
    ("backward", "grads[parent] = grads[parent] + parent_grad if parent in grads else parent_grad",
     "if parent in grads:\n                grads[parent] += parent_grad\n            else:\n                grads[parent] = parent_grad",
     "shared-or-read-only-gradient"),
    ("backward", "tensor.grad = grad.copy() if tensor.grad is None else tensor.grad + grad",
     "tensor.grad = grad if tensor.grad is None else tensor.grad + grad", "shared-or-read-only-gradient"),
    ("backward", "    grads = {root: np.ones_like(root.data)}", "    return root.backward()\n    grads = {}", "called-the-engine"),
    ("elu", "return grad_out * np.where(x > 0, 1.0, out + alpha)",
     "return grad_out * np.where(x > 0, 1.0, -(out + alpha))", "wrong-sign"),
    ("elu", 'alpha = ctx.options["alpha"]', "alpha = 1.0", "keyword-not-read-in-backward"),
    ("elu", "return grad_out * np.where(x > 0, 1.0, out + alpha)",
     "grad_out *= np.where(x > 0, 1.0, out + alpha)\n        return grad_out", "grad-out-written-in-place"),
    ("logsumexp", 'grad = unreduce(grad_out, x.shape, ctx.options["axis"], ctx.options["keepdims"])',
     "grad = grad_out", "reduced-axis-not-put-back"),
    ("where", "return None, grad_a, grad_b", "return grad_a, grad_b", "wrong-number-of-gradients"),
    ("where", "unbroadcast(np.where(mask, 0, grad_out), b_shape)", "np.where(mask, 0, grad_out)",
     "not-summed-to-broadcast-input"),
    ("rrelu", "        if self.training:\n", "        if True:\n", "mode-ignored"),
    ("rrelu", "return grad_out * local, None",
     "return grad_out * np.where(local == 1, 1.0, np.random.uniform(1 / 8, 1 / 3, local.shape)), None",
     "noise-drawn-twice"),
    ("rmsprop", "parameter.data -= (self.lr", "parameter.data += (self.lr", "wrong-sign"),
    ("rmsprop", 'self.per_parameter_state("square_average")', "[None] * len(self.params)", "state-not-saved"),
    ("label_smoothing", 'smoothing = ctx.options["smoothing"]', "smoothing = 0.1", "keyword-not-read-in-backward"),
    ("batchnorm", "        if self.training:\n", "        if True:\n", "mode-ignored"),
    ("batchnorm", "x.data.var(axis=0) * count / (count - 1)", "x.data.var(axis=0)", "running-var-biased"),
    ("batchnorm", "(1 - self.momentum) * self.running_mean + self.momentum * batch_mean",
     "self.momentum * self.running_mean + (1 - self.momentum) * batch_mean", "momentum-reversed"),
    ("maxpool2d", "np.add.at(grad_x, (batch, channel, rows, cols), grad_out)",
     "grad_x[batch, channel, rows, cols] = grad_out", "overlapping-windows-overwrite"),
    ("maxpool2d", 's = k if ctx.options["stride"] is None else ctx.options["stride"]\n        n, c',
     "s = k\n        n, c", "stride-hard-coded-in-backward"),
    ("maxpool2d", 's = k if ctx.options["stride"] is None else ctx.options["stride"]\n        n, c',
     "s = 2\n        n, c", "stride-hard-coded-in-backward"),
    ("elu", "return grad_out * np.where(x > 0, 1.0, out + alpha)", "return np.where(x > 0, 1.0, out + alpha)",
     "forgot-grad-out"),
    ("batchnorm", "grad_x = (g - g.mean(axis=0) - x_hat * (g * x_hat).mean(axis=0)) * inv_std",
     "grad_x = (g - x_hat * (g * x_hat).mean(axis=0)) * inv_std", "mean-path-missing"),
    ("batchnorm", "grad_x = (g - g.mean(axis=0) - x_hat * (g * x_hat).mean(axis=0)) * inv_std",
     "grad_x = (g - g.mean(axis=0)) * inv_std", "variance-path-missing"),
    ("batchnorm", "grad_x = (g - g.mean(axis=0) - x_hat * (g * x_hat).mean(axis=0)) * inv_std",
     "grad_x = g * inv_std", "mean-and-variance-paths-missing"),
]


@pytest.mark.parametrize(("name", "line", "mistake", "diagnosis"), BROKEN, ids=[f"{b[0]}-{b[3]}" for b in BROKEN])
def test_a_broken_copy_of_a_solution_fails_with_the_named_diagnosis(name, line, mistake, diagnosis, tmp_path):
    source = (SOLUTIONS / f"{name}.py").read_text(encoding="utf-8")
    assert source.count(line) == 1, f"examples/solutions/{name}.py no longer has the line this test breaks"
    broken = tmp_path / f"broken_{name}.py"
    broken.write_text(source.replace(line, mistake), encoding="utf-8")
    passed, output = run_check(name, broken)
    assert not passed
    assert f"[{diagnosis}]" in output, output


def test_every_named_diagnosis_is_triggered_by_a_test():
    for name in EXERCISES:
        exercise(name)  # an exercise's module adds its own diagnoses when imported
    covered = {diagnosis for *_, diagnosis in BROKEN} | {"not-implemented"}
    covered |= {"reduced-axis-not-put-back"}  # also by the square-input test below
    assert covered == set(DIAGNOSES)


class SoftmaxTimesGradOut(Function):
    """log-sum-exp whose backward forgets to put the reduced axis back."""

    @staticmethod
    def forward(ctx, x, axis=None, keepdims=False):
        out = np.log(np.exp(x).sum(axis=axis, keepdims=True))
        ctx.save_for_backward(x, out)
        return out if keepdims else np.squeeze(out, axis=axis)

    @staticmethod
    def backward(ctx, grad_out):
        x, out = ctx.saved
        return grad_out * np.exp(x - out)  # (4,) * (4, 4): numpy broadcasts along the wrong axis


def test_a_reduction_that_broadcasts_along_the_wrong_axis_of_a_square_input_is_diagnosed():
    from tinygrad_mnist.exercises import logsumexp

    class Learner:  # what check_op needs of a learner's module
        pass

    x = np.random.default_rng(0).standard_normal((4, 4))
    with pytest.raises(CheckFailed) as failure:
        check_op(Learner(), SoftmaxTimesGradOut, [x], {"axis": 1}, logsumexp.reference, "square",
                 reduction=True, alternatives=[({"keepdims": True}, "reduced-axis-not-put-back")])
    assert failure.value.diagnosis == "reduced-axis-not-put-back"
    assert "raised" not in failure.value.message  # no error from numpy: the values were wrong


def test_a_file_that_does_not_parse_fails_with_its_line_number(tmp_path):
    broken = tmp_path / "my_elu.py"
    broken.write_text("class ELU(:\n    pass\n", encoding="utf-8")
    passed, output = run_check("elu", broken)
    assert not passed
    assert "does not parse: line 1" in output


def test_a_file_without_the_skeleton_s_names_is_told_which_name_is_missing(tmp_path):
    renamed = tmp_path / "my_elu.py"
    renamed.write_text((SOLUTIONS / "elu.py").read_text().replace("class ELU", "class MyELU"), encoding="utf-8")
    passed, output = run_check("elu", renamed)
    assert not passed
    assert "defines no ELU" in output


def test_a_crash_in_the_learner_s_code_names_the_line(tmp_path):
    crashing = tmp_path / "my_elu.py"
    source = (SOLUTIONS / "elu.py").read_text().replace('alpha = ctx.options["alpha"]', 'alpha = ctx.options["slope"]')
    crashing.write_text(source, encoding="utf-8")
    passed, output = run_check("elu", crashing)
    assert not passed
    assert "KeyError: 'slope'" in output and "my_elu.py: alpha = ctx.options[\"slope\"]" in output


# ----- the command line --------------------------------------------------------------------------
def run_command(*arguments):
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "tinygrad_mnist.exercises", *arguments],
                          capture_output=True, text=True, cwd=ROOT, env=environment, timeout=120)


def test_command_exits_0_on_a_pass_1_on_a_fail_and_2_on_a_usage_error():
    passed = run_command("check", "where", "examples/solutions/where.py", "--no-train")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "passed: all" in passed.stdout
    failed = run_command("check", "where", "examples/exercises/where.py")
    assert failed.returncode == 1
    assert "not yet" in failed.stdout
    no_exercise = run_command("check", "softmax", "examples/solutions/where.py")
    assert no_exercise.returncode == 2
    assert "no exercise named 'softmax'" in no_exercise.stderr
    no_file = run_command("check", "where", "no_such_file.py")
    assert no_file.returncode == 2
    assert "no file no_such_file.py" in no_file.stderr


def test_command_lists_the_exercises_in_order():
    listed = run_command("list")
    assert listed.returncode == 0
    names = [line.split()[1] for line in listed.stdout.splitlines()]
    assert names == list(EXERCISES)


# ----- the docs and the files agree --------------------------------------------------------------
def test_docs_give_every_exercise_its_skeleton_check_command_and_solution():
    text = (ROOT / "docs" / "exercises.md").read_text(encoding="utf-8")
    for name in EXERCISES:
        assert (SKELETONS / f"{name}.py").is_file() and (SOLUTIONS / f"{name}.py").is_file()
        assert f"`examples/exercises/{name}.py`" in text, name
        assert f"`examples/solutions/{name}.py`" in text, name
        assert f"python -m tinygrad_mnist.exercises check {name} " in text, name


def test_the_sample_output_in_the_docs_is_what_the_checker_prints(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "exercises.md").read_text(encoding="utf-8")
    sample = text.split("stops at the first that did not:\n\n```\n", 1)[1].split("\n```", 1)[0]
    source = (SOLUTIONS / "where.py").read_text(encoding="utf-8")
    (tmp_path / "my_where.py").write_text(source.replace("unbroadcast(np.where(mask, 0, grad_out), b_shape)",
                                                         "np.where(mask, 0, grad_out)"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    passed, output = run_check("where", "my_where.py")
    assert not passed
    assert output.rstrip("\n") == sample


# ----- gradcheck shows where it failed -----------------------------------------------------------
def test_gradcheck_error_shows_the_input_value_and_the_upstream_gradient_at_the_failing_index():
    class ForgotGradOut(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad_out):
            (x,) = ctx.saved
            return 2 * x  # the local derivative alone

    x = np.array([[0.5, -1.5], [2.0, 3.0]])
    grad_out = np.array([[1.0, 1.0], [-0.25, 1.0]])  # right where it is 1: fails at (1, 0)
    with pytest.raises(GradcheckError) as error:
        gradcheck(ForgotGradOut.apply, [Tensor(x, requires_grad=True)], grad_out=grad_out)
    message = str(error.value)
    assert "at index (1, 0)" in message
    assert "there the input is 2 and the upstream gradient grad_out is -0.25" in message


def test_the_backward_exercise_re_checks_on_a_graph_of_fresh_numbers():
    from tinygrad_mnist.exercises import backward
    from tinygrad_mnist.exercises.common import load_file

    solution = load_file(SOLUTIONS / "backward.py", backward.NAMES)
    results = backward.probe(solution, np.random.default_rng(11))
    backward.verify(results, np.random.default_rng(11))  # the engine agrees on the same graph
    assert "grad.2" not in results  # v: the op ignores it, so its .grad stays None
    results["grad.0"] = results["grad.0"] * 2
    with pytest.raises(CheckFailed, match="re-checked on a graph of fresh numbers, w.grad"):
        backward.verify(results, np.random.default_rng(11))


# ----- the checker decides in its own process (issue "nothing the kit reports is false") --------
WRONG_SIGN_ELU = (SOLUTIONS / "elu.py").read_text(encoding="utf-8").replace(
    "return grad_out * np.where(x > 0, 1.0, out + alpha)", "return grad_out * np.where(x > 0, 1.0, -(out + alpha))")


def learner_file(tmp_path, source, name="my_elu.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


@pytest.mark.parametrize("ending", ["import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n",
                                    "import atexit, os\natexit.register(lambda: os._exit(0))\n"],
                         ids=["sys.exit", "os._exit", "atexit-os._exit"])
def test_a_file_that_exits_0_is_not_a_pass(ending, tmp_path):
    path = learner_file(tmp_path, WRONG_SIGN_ELU + ending)
    result = run_command("check", "elu", str(path), "--no-train")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "not yet:" in result.stdout and "passed: all" not in result.stdout


PATCHES = {
    "check_op": "import tinygrad_mnist.exercises.elu as checker, tinygrad_mnist.exercises.common as common\n"
                "checker.check_op = common.check_op = lambda *args, **kwargs: None\n",
    "gradcheck": "import tinygrad_mnist.exercises.elu as checker\nchecker.gradcheck = lambda *args, **kwargs: None\n"
                 "checker.check_op = lambda *args, **kwargs: None\n",
    "check": "import tinygrad_mnist.exercises.elu as checker\nchecker.check = lambda module, report, train=True: report.ok('fine')\n",
    "np.isclose": "np.isclose = lambda a, b, **kwargs: np.ones(np.broadcast(np.asarray(a), np.asarray(b)).shape, bool)\n"
                  "np.allclose = lambda *args, **kwargs: True\n",
}


@pytest.mark.parametrize("patch", PATCHES.values(), ids=PATCHES.keys())
def test_a_wrong_answer_that_patches_the_checker_or_numpy_is_not_a_pass(patch, tmp_path):
    passed, output = run_check("elu", learner_file(tmp_path, WRONG_SIGN_ELU + patch))
    assert not passed, output
    assert "FAIL" in output


def test_a_correct_answer_that_patches_the_checker_still_passes_on_the_parent_s_check(tmp_path):
    passed, output = run_check("elu", learner_file(tmp_path, (SOLUTIONS / "elu.py").read_text() + PATCHES["check"]))
    assert passed, output


def test_a_message_the_learner_prints_is_not_a_pass(tmp_path):
    source = WRONG_SIGN_ELU + 'print("passed: all 4 steps")\nprint(\'{"kind": "pass", "results": {}}\')\n'
    passed, output = run_check("elu", learner_file(tmp_path, source))
    assert not passed
    assert "  |     passed: all 4 steps" in output  # passed on as the file's own output, marked


@pytest.mark.parametrize("where", ["forward", "backward"])
@pytest.mark.parametrize("how", ["while True:\n            pass", "import time; time.sleep(1000)"], ids=["loop", "sleep"])
def test_a_loop_or_a_sleep_in_the_learner_s_op_times_out(where, how, tmp_path):
    source = (SOLUTIONS / "elu.py").read_text()
    marker = "x, out = ctx.saved" if where == "backward" else "out = np.where(x > 0"
    source = source.replace(marker, f"{how}\n        {marker}", 1)
    started = time.monotonic()
    out = io.StringIO()
    passed = check("elu", learner_file(tmp_path, source), train=False, out=out, timeout=1.5)
    assert not passed
    assert "FAIL  timed out after 1.5 s" in out.getvalue()
    assert time.monotonic() - started < 15


def test_a_non_daemon_thread_the_learner_started_does_not_keep_the_checker(tmp_path):
    source = (SOLUTIONS / "elu.py").read_text() + "import threading, time\nthreading.Thread(target=time.sleep, args=(1000,)).start()\n"
    started = time.monotonic()
    result = run_command("check", "elu", str(learner_file(tmp_path, source)), "--no-train")
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started < 30


def test_a_correct_answer_with_a_closed_stdout_passes(tmp_path):
    source = (SOLUTIONS / "elu.py").read_text() + "import sys\nsys.stdout.close()\n"
    result = run_command("check", "elu", str(learner_file(tmp_path, source)), "--no-train")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed: all 4 steps" in result.stdout


@pytest.mark.parametrize("name", ["elu", "logsumexp", "batchnorm"])
def test_a_correct_answer_with_numpy_errors_raising_passes(name, tmp_path):
    source = (SOLUTIONS / f"{name}.py").read_text() + 'np.seterr(all="raise")\n'
    passed, output = run_check(name, learner_file(tmp_path, source, f"my_{name}.py"))
    assert passed, output
    assert "changed numpy's error handling" in output


@pytest.mark.parametrize("raised", ["KeyboardInterrupt", "BaseException", "GeneratorExit"])
def test_a_base_exception_raised_at_import_is_one_line(raised, tmp_path):
    result = run_command("check", "elu", str(learner_file(tmp_path, f"raise {raised}('at import')\n")), "--no-train")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    failure = [line for line in result.stdout.splitlines() if "FAIL" in line]
    assert len(failure) == 1 and f"{raised}: at import (line 1 of my_elu.py" in failure[0], result.stdout


def test_step_lines_and_the_verdict_come_from_the_parent_not_the_learner_s_stdout(tmp_path):
    source = (SOLUTIONS / "elu.py").read_text() + 'print("hello from the file")\n'
    passed, output = run_check("elu", learner_file(tmp_path, source))
    assert passed
    assert "  |     hello from the file" in output
    assert output.rstrip().endswith("passed: all 4 steps")
