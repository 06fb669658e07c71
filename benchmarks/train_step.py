"""How fast is one training step? tinygrad_mnist beside hand-written numpy and PyTorch.

    python benchmarks/train_step.py                 # the full table: 8 configurations (about 2 minutes)
    python benchmarks/train_step.py --quick         # a tiny smoke run (a few seconds)
    python benchmarks/train_step.py --memory        # also the peak memory of examples/mnist.py
    python benchmarks/train_step.py --batch-sizes 64 256 --hidden 128 --repeats 61
    python benchmarks/train_step.py --warm          # first do what the example does before training
    python benchmarks/train_step.py --warm --pin-malloc   # ... with glibc's malloc thresholds pinned

Three contenders train the same MLP (784-H-10, leaky ReLU, float32) with SGD momentum 0.9 on the
same batches, starting from the same weights:

  ours    tinygrad_mnist: nn.mlp, F.cross_entropy, loss.backward(), optim.SGD
  manual  the backward pass derived by hand in plain numpy (tinygrad_mnist.reference): no graph,
          no autograd, so it is the speed limit for numpy on this machine
  torch   PyTorch on the CPU (torch.nn.Linear / LeakyReLU / cross_entropy / optim.SGD), if
          installed; it is given the same number of threads as numpy's BLAS

A step is what a training loop does per batch: uint8 images -> float32 / 255, forward, loss,
zero_grad, backward, optimizer step, and loss.item(). Everything runs in this one process, in
blocks of steps that alternate between the contenders (ours, manual, torch, then manual, ours,
torch, ...), so a slow moment of a shared machine hits all of them alike. Each configuration
reports the median time per step over the repeats, the seconds one MNIST epoch (60000 images)
would take at that speed, and the ratios ours/manual and ours/torch: the median over the repeats
of the ratio of two blocks of the same repeat, which a slow minute of the machine cannot skew.
Before timing, the first three steps of every contender are compared: they must compute the same
losses, or the timing would compare different work.

Every configuration also reports minor page faults per step of ours and manual (the kernel's count,
deterministic where times are not): memory that malloc gave back to the system and asks for again.
--warm first runs what the example runs before training (a small float64 forward/backward and a
forward pass over 10,000 images), which moves glibc's malloc thresholds; --pin-malloc fixes them
(see pin_malloc_thresholds) so the step no longer depends on what the process did before.

Add --breakdown for where the time of a step goes (forward, backward, optimizer; the matrix
products alone), and --memory for the peak resident memory of the default example.

The micro-benchmark times forward + backward of ((a * b) + c).sum() on 8x8 tensors: three ops
so small that the arithmetic is free and only the per-op bookkeeping is left.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import tinygrad_mnist
from tinygrad_mnist import Tensor, modes, nn, optim
from tinygrad_mnist.modes import pin_malloc_thresholds
from tinygrad_mnist import functional as F
from tinygrad_mnist.lab.data import normalize
from tinygrad_mnist.reference import ManualSGD, mlp_loss_and_grads

try:
    import torch
except ImportError:  # the benchmark still runs; the torch columns say why they are empty
    torch = None

REPO = Path(__file__).resolve().parent.parent
MNIST_TRAIN_IMAGES = 60000
LEARNING_RATE = 0.01  # small, so that random images and labels never make the loss diverge
MOMENTUM = 0.9
NEGATIVE_SLOPE = 0.01
DISTINCT_BATCHES = 8  # the batches every contender cycles through, in the same order


# ----- the machine ---------------------------------------------------------------------------------
def blas_threads():
    """How many threads numpy's BLAS uses (threadpoolctl knows; else the usual variables, else all cores)."""
    try:
        import threadpoolctl
    except ImportError:
        threadpoolctl = None
    if threadpoolctl is not None:
        for pool in threadpoolctl.threadpool_info():
            if pool["user_api"] == "blas":
                return pool["num_threads"]
    for variable in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(variable, "").isdigit():
            return int(os.environ[variable])
    return os.cpu_count() or 1


def blas_description():
    """One line naming numpy's BLAS library, version and threads."""
    try:
        import threadpoolctl

        for pool in threadpoolctl.threadpool_info():
            if pool["user_api"] == "blas":
                extras = f", core type {pool['architecture']}" if pool.get("architecture") else ""
                return f"{pool['internal_api']} {pool['version']} ({pool['num_threads']} threads{extras}, via threadpoolctl)"
    except ImportError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas['name']} {blas['version']} ({blas_threads()} threads, via numpy.show_config)"
    except Exception:  # older numpy: show_config has no dicts mode
        return "unknown (install threadpoolctl to see it)"


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine(with_torch):
    lines = [
        f"- CPU: {cpu_name()}, {os.cpu_count()} logical cores ({platform.system()} {platform.release()})",
        f"- Python {platform.python_version()}, numpy {np.__version__}, tinygrad_mnist {tinygrad_mnist.__version__}",
        f"- numpy BLAS: {blas_description()}",
    ]
    blas_variables = " ".join(f"{name}={value}" for name, value in sorted(os.environ.items()) if name.startswith("OPENBLAS_"))
    if blas_variables:
        lines.append(f"- environment: {blas_variables}")
    if torch is None:
        lines.append("- PyTorch: not installed; its columns are skipped")
    elif not with_torch:
        lines.append(f"- PyTorch {torch.__version__}: left out (--no-torch)")
    else:
        lines.append(f"- PyTorch {torch.__version__}, {torch.get_num_threads()} threads (set to match numpy's BLAS)")
    return "\n".join(lines)


# ----- the state of the process before timing -------------------------------------------------------


def warm_up_like_the_example(seed):
    """What examples/mnist.py computes before its first step, on random data of the same sizes:
    a float64 forward/backward on a small net, then a forward pass over 10,000 images at once."""
    import tinygrad_mnist as tg

    rng = np.random.default_rng(seed)
    small = nn.mlp([784, 16, 10], rng=rng)
    for parameter in small.parameters():
        parameter.data = parameter.data.astype(np.float64)
    x = Tensor(rng.standard_normal((8, 784)), dtype="float64")
    F.cross_entropy(small(x), np.arange(8) % 10).backward()
    model = nn.mlp([784, 512, 10], rng=rng)
    images = rng.integers(0, 256, size=(10000, 784), dtype=np.uint8)
    with tg.no_grad():
        F.cross_entropy(model(Tensor(normalize(images))), images[:, 0] % 10).item()


def minor_faults():
    """Minor page faults of this process so far: first touches of memory the kernel had to map."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


# ----- the contenders --------------------------------------------------------------------------------
# Each is a class with `step(images, labels) -> loss as a float`: one full training step on a batch
# of uint8 images (batch, 784) and uint8 labels (batch,), the way a training loop runs it.


class Ours:
    name = "ours"

    def __init__(self, initial_weights):
        self.model = nn.mlp([784, initial_weights[0][0].shape[0], 10], negative_slope=NEGATIVE_SLOPE)
        self.model.load_state_dict({f"{2 * layer}.{kind}": array for layer, pair in enumerate(initial_weights)
                                    for kind, array in zip(("weight", "bias"), pair)})
        self.optimizer = optim.SGD(self.model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)

    def step(self, images, labels):
        x = Tensor(normalize(images))  # (batch, 784) uint8 -> float32 in [0, 1]
        loss = F.cross_entropy(self.model(x), labels)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item()


class Manual:
    name = "manual"

    def __init__(self, initial_weights):
        self.params = [(weight.copy(), bias.copy()) for weight, bias in initial_weights]
        self.optimizer = ManualSGD(self.params, lr=LEARNING_RATE, momentum=MOMENTUM)

    def step(self, images, labels):
        x = np.divide(images, 255, dtype=np.float32)  # (batch, 784) uint8 -> float32 in [0, 1]
        loss, grads = mlp_loss_and_grads(self.params, x, labels, negative_slope=NEGATIVE_SLOPE)
        self.optimizer.step(grads)
        return float(loss)


class Torch:
    name = "torch"

    def __init__(self, initial_weights):
        (w1, b1), (w2, b2) = initial_weights
        self.model = torch.nn.Sequential(
            torch.nn.Linear(784, w1.shape[0]), torch.nn.LeakyReLU(NEGATIVE_SLOPE), torch.nn.Linear(w1.shape[0], 10)
        )
        with torch.no_grad():
            for parameter, array in zip(self.model.parameters(), (w1, b1, w2, b2)):
                parameter.copy_(torch.from_numpy(array))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)

    def step(self, images, labels):
        x = torch.from_numpy(images).to(torch.float32).div_(255)  # (batch, 784) uint8 -> float32
        targets = torch.from_numpy(labels).long()  # cross_entropy wants int64 class indices
        loss = torch.nn.functional.cross_entropy(self.model(x), targets)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item()


def contender_classes(use_torch):
    return [Ours, Manual] + ([Torch] if use_torch else [])


def initial_weights(hidden, seed):
    """He-normal weights and zero biases for 784-hidden-10, float32, shared by every contender."""
    rng = np.random.default_rng(seed)
    weights = []
    for fan_in, fan_out in ((784, hidden), (hidden, 10)):
        weight = (rng.standard_normal((fan_out, fan_in)) * math.sqrt(2.0 / fan_in)).astype(np.float32)
        weights.append((weight, np.zeros(fan_out, dtype=np.float32)))
    return weights


def random_batches(batch_size, seed):
    """Random uint8 pixels and labels, like MNIST's (the arithmetic does not care what they show)."""
    rng = np.random.default_rng(seed)
    return [
        (rng.integers(0, 256, size=(batch_size, 784), dtype=np.uint8), rng.integers(0, 10, size=batch_size, dtype=np.uint8))
        for _ in range(DISTINCT_BATCHES)
    ]


def check_same_work(classes, weights, batches):
    """Run three steps of every contender from the same weights; their losses must agree."""
    losses = {}
    for cls in classes:
        contender = cls(weights)
        losses[cls.name] = [contender.step(*batches[index]) for index in range(3)]
    expected = losses["manual"]
    for name, values in losses.items():
        if not np.allclose(values, expected, rtol=1e-4, atol=1e-5):
            sys.exit(f"error: {name} computes other losses than the hand-written step ({values} vs {expected}); "
                     "the timings would not compare the same work")


# numpy's BLAS (OpenBLAS) and PyTorch (OpenMP) each keep their worker threads spinning for a while
# after a call, waiting for more work. On a 2-core machine the spinning threads of one library take
# the cores that the other one's threads need: measured here, ours ran 30% slower in the block right
# after a torch block, and torch twice as slow right after numpy. After 0.3 s of rest neither was
# disturbed, so torch's blocks are fenced by this pause (ours and manual share one BLAS: no pause).
SETTLE_SECONDS = 0.3


def settle_threads():
    time.sleep(SETTLE_SECONDS)


def run_block(contender, batches, steps, cursor):
    """Time `steps` training steps; returns (seconds per step, next batch index)."""
    start = time.perf_counter()
    for _ in range(steps):
        contender.step(*batches[cursor % DISTINCT_BATCHES])
        cursor += 1
    return (time.perf_counter() - start) / steps, cursor


def time_configuration(batch_size, hidden, args):
    """Timings of every contender for one (batch size, hidden width).

    Returns (medians, ratios): the median seconds per step of each contender, and for each other
    contender the median over the repeats of ours' time / its time in the same repeat. Blocks of
    one repeat run back to back, so a slow minute of the machine cancels out of their ratio.
    """
    weights = initial_weights(hidden, args.seed)
    batches = random_batches(batch_size, args.seed)
    classes = contender_classes(torch is not None and not args.no_torch)
    check_same_work(classes, weights, batches)

    contenders = [cls(weights) for cls in classes]
    cursors = [0] * len(contenders)
    # warm up (first touches of memory, BLAS thread start-up) and size the blocks from ours' speed
    for index, contender in enumerate(contenders):
        _, cursors[index] = run_block(contender, batches, args.warmup_steps, cursors[index])
    settle_threads()
    per_step, _ = run_block(contenders[0], batches, args.warmup_steps, 0)
    steps = max(1, round(args.block_seconds / per_step))

    times = [[] for _ in contenders]
    faults, steps_run = [0] * len(contenders), [0] * len(contenders)
    for repeat in range(args.repeats):
        # ours and manual take turns going first; torch, if present, runs between two pauses
        order = [0, 1] if repeat % 2 == 0 else [1, 0]
        for index in order + list(range(2, len(contenders))):
            if index >= 2:
                settle_threads()
            faults_before = minor_faults()
            seconds, cursors[index] = run_block(contenders[index], batches, steps, cursors[index])
            faults[index] += minor_faults() - faults_before
            steps_run[index] += steps
            times[index].append(seconds)
            if index >= 2:
                settle_threads()
    medians = {cls.name: statistics.median(samples) for cls, samples in zip(classes, times)}
    ratios = {
        cls.name: statistics.median([ours / other for ours, other in zip(times[0], samples)])
        for cls, samples in zip(classes[1:], times[1:])
    }
    medians.update({f"{cls.name} faults": count / steps_run[index] for index, (cls, count) in enumerate(zip(classes, faults))})
    return medians, ratios


# ----- where the time of one step goes -------------------------------------------------------
def time_phases(batch_size, hidden, args):
    """Median microseconds of each phase of a step, ours and manual, and of the step's matmuls alone.

    ours:    forward (uint8 -> float32, model, loss), backward (zero_grad + loss.backward()),
             optimizer (optim.SGD.step and loss.item())
    manual:  loss and gradients (uint8 -> float32 and mlp_loss_and_grads), optimizer (ManualSGD.step)
    matmuls: the five matrix products of a step (two forward, three backward), timed on their own
             with numpy on the same shapes: the part of the step that runs inside BLAS
    """
    weights = initial_weights(hidden, args.seed)
    batches = random_batches(batch_size, args.seed)
    ours, manual = Ours(weights), Manual(weights)
    clock = time.perf_counter

    def ours_block(steps, totals):
        for index in range(steps):
            images, labels = batches[index % DISTINCT_BATCHES]
            start = clock()
            loss = F.cross_entropy(ours.model(Tensor(normalize(images))), labels)
            forward_done = clock()
            ours.optimizer.zero_grad()
            loss.backward()
            backward_done = clock()
            ours.optimizer.step()
            loss.item()
            totals["ours forward"] += forward_done - start
            totals["ours backward"] += backward_done - forward_done
            totals["ours optimizer"] += clock() - backward_done

    def manual_block(steps, totals):
        for index in range(steps):
            images, labels = batches[index % DISTINCT_BATCHES]
            start = clock()
            x = np.divide(images, 255, dtype=np.float32)
            loss, grads = mlp_loss_and_grads(manual.params, x, labels, negative_slope=NEGATIVE_SLOPE)
            grads_done = clock()
            manual.optimizer.step(grads)
            float(loss)
            totals["manual loss+grads"] += grads_done - start
            totals["manual optimizer"] += clock() - grads_done

    (w1, _), (w2, _) = weights
    x = np.divide(batches[0][0], 255, dtype=np.float32)
    hidden_act = np.ones((batch_size, hidden), dtype=np.float32)
    grad_logits = np.ones((batch_size, 10), dtype=np.float32)

    def matmul_block(steps, totals):
        for _ in range(steps):
            start = clock()
            x @ w1.T  # (batch, 784) @ (784, hidden): layer 1 forward
            hidden_act @ w2.T  # (batch, hidden) @ (hidden, 10): layer 2 forward
            grad_logits.T @ hidden_act  # (10, batch) @ (batch, hidden): d loss / d W2
            grad_logits @ w2  # (batch, 10) @ (10, hidden): d loss / d hidden
            hidden_act.T @ x  # (hidden, batch) @ (batch, 784): d loss / d W1
            totals["matmuls alone"] += clock() - start

    blocks = (ours_block, manual_block, matmul_block)
    settle_threads()  # torch may have run just before
    for block in blocks:
        block(args.warmup_steps, _Totals())
    per_step = _Totals()
    ours_block(args.warmup_steps, per_step)
    steps = max(1, round(args.block_seconds / (sum(per_step.values()) / args.warmup_steps)))
    samples, differences = {}, []
    for repeat in range(args.repeats):
        totals = _Totals()
        for offset in range(len(blocks)):
            blocks[(repeat + offset) % len(blocks)](steps, totals)
        for name, seconds in totals.items():
            samples.setdefault(name, []).append(seconds / steps * 1e6)
        ours_total = sum(seconds for name, seconds in totals.items() if name.startswith("ours"))
        manual_total = sum(seconds for name, seconds in totals.items() if name.startswith("manual"))
        differences.append((ours_total - manual_total) / steps * 1e6)  # both from this repeat
    phases = {name: statistics.median(values) for name, values in samples.items()}
    phases["ours - manual"] = statistics.median(differences)
    return phases


class _Totals(dict):
    """Seconds per phase name, starting at 0."""

    def __missing__(self, name):
        return 0.0


def format_phases(results):
    columns = ["batch", "hidden", "ours forward", "ours backward", "ours optimizer", "ours total",
               "manual loss+grads", "manual optimizer", "manual total", "matmuls alone", "ours - manual"]
    rows = ["| " + " | ".join(columns) + " |", "|" + "|".join(" ---: " for _ in columns) + "|"]
    for (batch_size, hidden), phases in results.items():
        ours_total = phases["ours forward"] + phases["ours backward"] + phases["ours optimizer"]
        manual_total = phases["manual loss+grads"] + phases["manual optimizer"]
        values = [phases["ours forward"], phases["ours backward"], phases["ours optimizer"], ours_total,
                  phases["manual loss+grads"], phases["manual optimizer"], manual_total, phases["matmuls alone"],
                  phases["ours - manual"]]
        rows.append("| " + " | ".join([str(batch_size), str(hidden)] + [f"{value:.1f}" for value in values]) + " |")
    return "\n".join(rows)


def profile_ours(batch_size, hidden, args, top=15):
    """cProfile of ours' training step: the Python functions it spends its time in, per step."""
    import cProfile
    import io
    import pstats

    weights = initial_weights(hidden, args.seed)
    batches = random_batches(batch_size, args.seed)
    ours = Ours(weights)
    run_block(ours, batches, args.warmup_steps, 0)
    steps = max(50, round(1.0 / max(run_block(ours, batches, args.warmup_steps, 0)[0], 1e-6)))
    profiler = cProfile.Profile()
    profiler.enable()
    run_block(ours, batches, steps, 0)
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(top)
    return steps, text.getvalue().replace(str(REPO) + "/", "")  # paths relative to the repo


# ----- the fixed cost of an op -------------------------------------------------------------------
OPS_IN_EXPRESSION = 3  # ((a * b) + c).sum(): a multiply, an add and a sum


def time_tiny_expression(args):
    """Microseconds per op of forward + backward of ((a * b) + c).sum() on 8x8 float32 tensors."""
    rng = np.random.default_rng(args.seed)
    arrays = [rng.standard_normal((8, 8)).astype(np.float32) for _ in range(3)]

    ours_inputs = [Tensor(array.copy(), requires_grad=True) for array in arrays]

    def ours(iterations):
        a, b, c = ours_inputs
        for _ in range(iterations):
            a.grad = b.grad = c.grad = None
            ((a * b) + c).sum().backward()

    runners = {"ours": ours}
    if torch is not None and not args.no_torch:
        torch_inputs = [torch.tensor(array, requires_grad=True) for array in arrays]

        def torch_runner(iterations):
            a, b, c = torch_inputs
            for _ in range(iterations):
                a.grad = b.grad = c.grad = None
                ((a * b) + c).sum().backward()

        runners["torch"] = torch_runner

    iterations = args.micro_iterations
    for runner in runners.values():
        runner(iterations // 10)  # warm up
    samples = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, runner in runners.items():
            if len(runners) > 1:
                settle_threads()
            start = time.perf_counter()
            runner(iterations)
            samples[name].append((time.perf_counter() - start) / iterations / OPS_IN_EXPRESSION * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


# ----- peak memory of the default example --------------------------------------------------------
MEMORY_COMMAND = "/usr/bin/time -v python examples/mnist.py --quiet"


def peak_memory_of_example():
    """Run `python examples/mnist.py --quiet`; return (its peak resident memory in MB, its last accuracy)."""
    command = [sys.executable, str(REPO / "examples" / "mnist.py"), "--quiet"]
    use_gnu_time = Path("/usr/bin/time").exists()
    if use_gnu_time:
        command = ["/usr/bin/time", "-v", *command]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        sys.exit(f"error: examples/mnist.py failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    if use_gnu_time:
        kilobytes = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    else:  # no GNU time: the kernel keeps the same number for finished children
        kilobytes = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kB on Linux
    accuracies = re.findall(r"Accuracy: ([\d.]+)%", result.stdout)
    return kilobytes / 1024, accuracies[-1] if accuracies else "?"


# ----- the report ------------------------------------------------------------------------------------
def format_table(results, batch_sizes, hiddens, with_torch):
    columns = ["batch", "hidden", "ours µs/step", "manual µs/step"]
    if with_torch:
        columns.append("torch µs/step")
    columns += ["ours s/epoch", "manual s/epoch"]
    if with_torch:
        columns.append("torch s/epoch")
    columns.append("ours/manual")
    if with_torch:
        columns.append("ours/torch")
    columns += ["ours faults/step", "manual faults/step"]
    rows = ["| " + " | ".join(columns) + " |", "|" + "|".join(" ---: " for _ in columns) + "|"]
    for hidden in hiddens:
        for batch_size in batch_sizes:
            medians, ratios = results[batch_size, hidden]
            steps_per_epoch = math.ceil(MNIST_TRAIN_IMAGES / batch_size)
            names = ["ours", "manual"] + (["torch"] if with_torch else [])
            cells = [str(batch_size), str(hidden)]
            cells += [f"{medians[name] * 1e6:.0f}" for name in names]
            cells += [f"{medians[name] * steps_per_epoch:.2f}" for name in names]
            cells.append(f"{ratios['manual']:.3f}")
            if with_torch:
                cells.append(f"{ratios['torch']:.3f}")
            cells += [f"{medians['ours faults']:.1f}", f"{medians['manual faults']:.1f}"]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--batch-sizes", type=int, nargs="+", default=[16, 64, 256, 1024], help="batch sizes to time (default 16 64 256 1024)")
    add("--hidden", type=int, nargs="+", default=[128, 512], help="hidden widths H of the 784-H-10 MLP (default 128 512)")
    add("--repeats", type=int, default=21, help="timed blocks per contender and configuration; medians are over these (default 21)")
    add("--block-seconds", type=float, default=0.1, help="about how long one block of steps runs (default 0.1)")
    add("--warmup-steps", type=int, default=5, help="untimed steps per contender before timing (default 5)")
    add("--micro-iterations", type=int, default=2000, help="expressions per block in the micro-benchmark (default 2000)")
    add("--seed", type=int, default=0, help="seed of the weights and batches (default 0)")
    add("--no-torch", action="store_true", help="leave PyTorch out even if it is installed")
    add("--memory", action="store_true", help="also measure the peak memory of `python examples/mnist.py --quiet` (~half a minute)")
    add("--breakdown", action="store_true", help="also time the phases of a step (forward, backward, optimizer, matmuls alone)")
    add("--profile", action="store_true", help="also print a cProfile of ours' step at the first batch size and width")
    add("--warm", action="store_true", help="before timing, run what the example runs before training (moves malloc's thresholds)")
    add("--pin-malloc", action="store_true", help="fix glibc's malloc thresholds first (mmap 32 MiB, trim 64 MiB), as a program may")
    add("--quick", action="store_true", help="a tiny smoke run: batch 16, hidden 32, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.hidden, args.repeats = [16], [32], 1
        args.block_seconds, args.warmup_steps, args.micro_iterations = 0.01, 1, 50
    if args.repeats < 1 or args.warmup_steps < 1 or args.micro_iterations < 10 or args.block_seconds <= 0:
        parser.error("--repeats and --warmup-steps must be at least 1, --micro-iterations at least 10, --block-seconds positive")
    if min(args.batch_sizes) < 1 or min(args.hidden) < 1:
        parser.error("batch sizes and hidden widths must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    with_torch = torch is not None and not args.no_torch
    # `import tinygrad_mnist` pins them already unless TINYGRAD_MNIST_MALLOC=system
    pinned = (pin_malloc_thresholds() if args.pin_malloc else False) or modes.malloc_pinned
    if args.warm:
        warm_up_like_the_example(args.seed)
    if with_torch:
        torch.set_num_threads(blas_threads())  # the same number of threads numpy's BLAS has
    print("## Machine\n")
    print(describe_machine(with_torch))
    if not with_torch:
        print("\nPyTorch skipped: " + ("--no-torch given" if args.no_torch else "not installed (pip install torch to compare)"))

    state = "warm (the example's evaluation ran first)" if args.warm else "fresh"
    pinned = pinned or tinygrad_mnist.modes.malloc_pinned  # import tinygrad_mnist pins them unless TINYGRAD_MNIST_MALLOC=system
    malloc = "pinned (mmap 32 MiB, trim 64 MiB)" if pinned else ("--pin-malloc failed: no glibc" if args.pin_malloc else "glibc's moving defaults")
    print(f"\nProcess: {state}; malloc thresholds: {malloc}.")
    print(f"\n## Training step: 784-H-10 MLP, float32, SGD momentum {MOMENTUM} (median of {args.repeats} blocks)\n")
    load_before = os.getloadavg()[0]
    results = {}
    for hidden in args.hidden:
        for batch_size in args.batch_sizes:
            results[batch_size, hidden] = time_configuration(batch_size, hidden, args)
            print(f"  timed batch {batch_size}, hidden {hidden}", file=sys.stderr, flush=True)
    print(format_table(results, args.batch_sizes, args.hidden, with_torch))
    print("\ns/epoch = µs/step x ceil(60000 / batch). A ratio is the median, over the repeats, of ours' time over "
          "the other's in the same repeat; below 1 means ours is faster. faults/step: minor page faults per timed step.")
    print(f"Load average (1 minute) before / after timing: {load_before:.2f} / {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} cores (this benchmark alone adds 1 to 2; more means other processes were running).")

    if args.breakdown:
        print(f"\n## Where the time of a step goes: µs per step, median of {args.repeats} blocks\n")
        phases = {}
        for hidden in args.hidden:
            for batch_size in args.batch_sizes:
                phases[batch_size, hidden] = time_phases(batch_size, hidden, args)
        print(format_phases(phases))
        print("\nThe totals add up the medians of the phases. ours - manual is the median, over the repeats, of the "
              "difference of the two totals in the same repeat: what the graph, the Tensor objects and the checks "
              "cost, since the numpy work is the same.")

    if args.profile:
        batch_size, hidden = args.batch_sizes[0], args.hidden[0]
        steps, listing = profile_ours(batch_size, hidden, args)
        print(f"\n## cProfile of {steps} steps of ours, batch {batch_size}, hidden {hidden} (sorted by own time)\n")
        print("```\n" + listing.strip() + "\n```")

    print(f"\n## Fixed cost per op: forward + backward of ((a * b) + c).sum() on 8x8 float32 (median of {args.repeats})\n")
    micro = time_tiny_expression(args)
    print("| contender | µs per op |")
    print("| --- | ---: |")
    for name, microseconds in micro.items():
        print(f"| {name} | {microseconds:.1f} |")
    if "torch" in micro:
        print(f"\nours/torch per op: {micro['ours'] / micro['torch']:.3f}")

    if args.memory:
        megabytes, accuracy = peak_memory_of_example()
        print("\n## Peak memory of the default example\n")
        print(f"`{MEMORY_COMMAND}`: maximum resident set size {megabytes:.0f} MB (final test accuracy {accuracy}%)")


if __name__ == "__main__":
    main()
