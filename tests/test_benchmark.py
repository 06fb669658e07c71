"""The benchmark (benchmarks/train_step.py) runs at a tiny size and prints its tables.

These tests keep the benchmark from rotting as the engine changes; they assert nothing about
speed (a shared CI machine cannot), only that it finishes and reports what it promises.
"""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCHMARK = REPO / "benchmarks" / "train_step.py"
QUICK = ["--batch-sizes", "16", "--hidden", "32", "--repeats", "1", "--block-seconds", "0.01",
         "--warmup-steps", "1", "--micro-iterations", "20"]
TORCH_INSTALLED = importlib.util.find_spec("torch") is not None


def run_benchmark(*arguments, hide_torch=False):
    if hide_torch:
        # sys.modules["torch"] = None makes `import torch` fail, as if it were not installed
        command = [sys.executable, "-c", "import runpy, sys; sys.modules['torch'] = None; "
                   "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')",
                   str(BENCHMARK), *arguments]
    else:
        command = [sys.executable, str(BENCHMARK), *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, f"the benchmark failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def table_rows(output):
    """The rows of the training-step table, as lists of cells (header and separator left out)."""
    lines = [line for line in output.splitlines() if line.startswith("| ")]
    header_index = next(index for index, line in enumerate(lines) if "ours µs/step" in line)
    header = [cell.strip() for cell in lines[header_index].strip("|").split("|")]
    rows = []
    for line in lines[header_index + 2:]:  # past the header and its | ---: | separator
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) != len(header):
            break  # the next table
        rows.append(dict(zip(header, cells)))
    return rows


def test_the_quick_run_prints_one_row_per_configuration_with_the_ratio_columns():
    output = run_benchmark("--quick")
    rows = table_rows(output)
    assert [(row["batch"], row["hidden"]) for row in rows] == [("16", "32")]
    row = rows[0]
    for column in ("ours µs/step", "manual µs/step", "ours s/epoch", "manual s/epoch", "ours/manual"):
        assert re.fullmatch(r"\d+(\.\d+)?", row[column]), (column, row[column])
    if TORCH_INSTALLED:
        assert re.fullmatch(r"\d+(\.\d+)?", row["ours/torch"])
    assert "## Machine" in output and "numpy BLAS:" in output
    assert re.search(r"\| ours \| \d+(\.\d+)? \|", output), "the per-op micro-benchmark row is missing"


def test_several_batch_sizes_and_widths_give_one_row_each():
    output = run_benchmark(*QUICK, "--batch-sizes", "8", "16", "--hidden", "8", "24", "--no-torch")
    configurations = [(row["batch"], row["hidden"]) for row in table_rows(output)]
    assert configurations == [("8", "8"), ("16", "8"), ("8", "24"), ("16", "24")]
    assert "PyTorch skipped: --no-torch given" in output


def test_without_torch_it_still_runs_and_says_torch_was_skipped():
    output = run_benchmark(*QUICK, hide_torch=True)
    assert "PyTorch skipped: not installed" in output
    rows = table_rows(output)
    assert len(rows) == 1 and "ours/torch" not in rows[0] and "ours/manual" in rows[0]


CNN_BENCHMARK = REPO / "benchmarks" / "cnn_step.py"


def test_the_cnn_benchmark_quick_run_prints_both_thread_counts_the_breakdown_and_evaluation():
    result = subprocess.run([sys.executable, str(CNN_BENCHMARK), "--quick"], capture_output=True, text=True,
                            timeout=600, cwd=REPO)
    assert result.returncode == 0, f"the benchmark failed:\n{result.stdout}\n{result.stderr}"
    output = result.stdout
    assert "# 1 thread\n" in output and "# 2 threads\n" in output
    for threads, clock in (("1", "CPU time"), ("2", "wall time")):
        assert f"SGD momentum 0.9, {threads} thread(s) (median of 1 blocks, {clock})" in output
    # the step table's rows for batch 8, one per thread count (the breakdown's rows have words in them)
    rows = [line for line in output.splitlines() if line.startswith("| 8 | ") and line.count("|") == (8 if TORCH_INSTALLED else 5)]
    assert len(rows) == 2, output
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert all(re.fullmatch(r"\d+(\.\d+)?", cell) for cell in cells), row
    for piece in ("Conv2dOp forward", "Conv2dOp backward", "MaxPool2dOp backward", "ReLUOp forward", "SGD step",
                  "graph bookkeeping (the rest)", "whole step (timed ops)", "inside the convolutions: im2col"):
        assert len(re.findall(rf"\| 8 \| {re.escape(piece)}[^|]* \| -?\d+ \|", output)) == 2, f"the breakdown lacks {piece}"
    for model in ("MLP 784-512-10", "nn.lenet"):
        assert len(re.findall(rf"\| {model} \| 32 \| \d+ \|", output)) == 2, f"no evaluation row for {model}"
