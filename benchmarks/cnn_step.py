"""How fast is one training step of the CNN? tinygrad_mnist beside PyTorch, and where the time goes.

    python benchmarks/cnn_step.py                   # docs/performance.md's CNN tables: 1 and 2 threads (a few minutes)
    python benchmarks/cnn_step.py --quick           # a tiny smoke run (a few seconds)
    python benchmarks/cnn_step.py --threads 2 --batch-sizes 64 256 --repeats 31

Each thread count runs in a process of its own (the script starts itself again with
OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MKL_NUM_THREADS set to it): 1 thread is timed in CPU
time (this process's own, which a busy shared machine cannot inflate by taking the core away),
more threads in wall time (CPU time would count the spinning of waiting BLAS threads).

Both contenders train nn.lenet (conv 1->16 5x5, ReLU, max-pool 2, conv 16->32 5x5, ReLU, max-pool 2,
linear 512->10; float32) with SGD momentum 0.9 on the same batches, from the same weights:

  ours    tinygrad_mnist: nn.lenet, F.cross_entropy, loss.backward(), optim.SGD
  torch   the same net in PyTorch on the CPU, if installed, with as many threads as numpy's BLAS

A step is uint8 images -> float32 / 255, forward, loss, zero_grad, backward, optimizer step and
loss.item(). Blocks of steps alternate between the contenders in one process (torch's fenced by
a pause, see train_step.py: settle_threads); each row reports the median time per step and the
median over the repeats of the ratio ours/torch of blocks of the same repeat. Before timing, the
first three steps must give the same losses in both, or the timing would compare different work.

The breakdown times the pieces of our step inside real steps: each op's forward and backward
(every Function's, timed around the call), the uint8 to float32 conversion, zero_grad and the
optimizer; "graph bookkeeping" is the step's median minus all of those (Function.apply, the
backward walk, the loss as a float). Inside the convolutions, im2col (the copy of the windows into
a matrix), the matrix products and col2im (adding window gradients back into the image) are timed
on their own on the step's shapes and layouts, for comparison.

Evaluation throughput: images per second of a forward pass under no_grad (ours) and
torch.no_grad (PyTorch), of the MLP of examples/mnist.py (784-512-10) and of nn.lenet, in chunks
of a few sizes, on random images.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

import tinygrad_mnist
from tinygrad_mnist import Function, Tensor, nn, no_grad, optim
from tinygrad_mnist import functional as F
from tinygrad_mnist.conv import add_windows_back, windows_of
from tinygrad_mnist.lab.data import normalize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_step import blas_threads, describe_machine, settle_threads  # noqa: E402  (one machine description)

try:
    import torch
except ImportError:  # the benchmark still runs; the torch columns say why they are empty
    torch = None

MNIST_TRAIN_IMAGES = 60000
LEARNING_RATE = 0.01  # small, so that random images and labels never make the loss diverge
MOMENTUM = 0.9
DISTINCT_BATCHES = 8


def initial_state(seed):
    """nn.lenet's initial weights as a state_dict, shared by both contenders."""
    return nn.lenet(rng=np.random.default_rng(seed)).state_dict()


def random_batches(batch_size, seed):
    """Random uint8 images (batch, 1, 28, 28) and labels: the arithmetic does not care what they show."""
    rng = np.random.default_rng(seed)
    return [
        (rng.integers(0, 256, size=(batch_size, 1, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=batch_size, dtype=np.uint8))
        for _ in range(DISTINCT_BATCHES)
    ]


class Ours:
    name = "ours"

    def __init__(self, state):
        self.model = nn.lenet()
        self.model.load_state_dict(state)
        self.optimizer = optim.SGD(self.model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)

    def step(self, images, labels):
        loss = F.cross_entropy(self.model(Tensor(normalize(images))), labels)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item()


class Torch:
    name = "torch"

    def __init__(self, state):
        layers = torch.nn
        self.model = layers.Sequential(
            layers.Conv2d(1, 16, 5), layers.ReLU(), layers.MaxPool2d(2),
            layers.Conv2d(16, 32, 5), layers.ReLU(), layers.MaxPool2d(2),
            layers.Flatten(), layers.Linear(512, 10),
        )
        # the same names in both state_dicts ("0.weight", ..., "7.bias"): the point of matching PyTorch
        self.model.load_state_dict({name: torch.from_numpy(array) for name, array in state.items()})
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)

    def step(self, images, labels):
        x = torch.from_numpy(images).to(torch.float32).div_(255)
        loss = torch.nn.functional.cross_entropy(self.model(x), torch.from_numpy(labels).long())
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item()


# wall time, or with one thread this process's CPU time (measure sets it)
clock = time.perf_counter


def run_block(contender, batches, steps, cursor):
    start = clock()
    for _ in range(steps):
        contender.step(*batches[cursor % DISTINCT_BATCHES])
        cursor += 1
    return (clock() - start) / steps, cursor


def time_batch_size(batch_size, args, with_torch):
    """(median seconds per step of each contender, median ratio ours/torch or None, ours' page faults per step)."""
    state = initial_state(args.seed)
    batches = random_batches(batch_size, args.seed)
    classes = [Ours] + ([Torch] if with_torch else [])
    contenders = [cls(state) for cls in classes]
    losses = {c.name: [c.step(*batches[index]) for index in range(3)] for c in contenders}
    if with_torch and not np.allclose(losses["ours"], losses["torch"], rtol=1e-4, atol=1e-5):
        sys.exit(f"error: ours and torch compute other losses ({losses}); the timings would not compare the same work")
    cursors = [3] * len(contenders)
    for index, contender in enumerate(contenders):
        _, cursors[index] = run_block(contender, batches, args.warmup_steps, cursors[index])
    settle_threads()
    per_step, _ = run_block(contenders[0], batches, args.warmup_steps, 0)
    steps = max(1, round(args.block_seconds / per_step))
    times = [[] for _ in contenders]
    faults = []  # minor page faults per step of ours' blocks
    for _ in range(args.repeats):
        for index, contender in enumerate(contenders):
            if index:
                settle_threads()
            faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            seconds, cursors[index] = run_block(contender, batches, steps, cursors[index])
            if not index:
                faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before) / steps)
            times[index].append(seconds)
            if index:
                settle_threads()
    medians = {cls.name: statistics.median(samples) for cls, samples in zip(classes, times)}
    ratio = statistics.median([a / b for a, b in zip(times[0], times[1])]) if with_torch else None
    return medians, ratio, statistics.median(faults)


def median_microseconds(function, repeats, iterations=5):
    samples = []
    function()
    for _ in range(repeats):
        start = clock()
        for _ in range(iterations):
            function()
        samples.append((clock() - start) / iterations * 1e6)
    return statistics.median(samples)


def every_function():
    """Every Function subclass the step can use (the ops of ops.py, fused.py and conv.py)."""
    found, stack = [], [Function]
    while stack:
        for subclass in stack.pop().__subclasses__():
            found.append(subclass)
            stack.append(subclass)
    return found


def op_breakdown(batch_size, args):
    """{piece: median µs per step}: each op's forward and backward timed inside real steps."""
    ours = Ours(initial_state(args.seed))
    batches = random_batches(batch_size, args.seed)
    spent = {}

    def timed(name, method):
        @functools.wraps(method)  # keeps forward's signature, which Function.apply reads
        def wrapper(*arguments, **options):
            start = clock()
            try:
                return method(*arguments, **options)
            finally:
                spent[name] = spent.get(name, 0.0) + clock() - start
        return staticmethod(wrapper)

    def step(images, labels):
        start = clock()
        x = Tensor(normalize(images))
        spent["uint8 -> float32 / 255"] = spent.get("uint8 -> float32 / 255", 0.0) + clock() - start
        loss = F.cross_entropy(ours.model(x), labels)
        start = clock()
        ours.optimizer.zero_grad()
        spent["zero_grad"] = spent.get("zero_grad", 0.0) + clock() - start
        loss.backward()
        start = clock()
        ours.optimizer.step()
        spent["SGD step"] = spent.get("SGD step", 0.0) + clock() - start
        return loss.item()

    originals = {cls: (cls.__dict__["forward"], cls.__dict__["backward"]) for cls in every_function()
                 if "forward" in cls.__dict__ and "backward" in cls.__dict__}
    whole, pieces = [], {}
    try:
        for cls, (forward, backward) in originals.items():
            cls.forward = timed(f"{cls.__name__} forward", forward.__func__)
            cls.backward = timed(f"{cls.__name__} backward", backward.__func__)
        for index in range(3):
            step(*batches[index])
        for repeat in range(args.repeats):
            spent.clear()
            start = clock()
            for index in range(5):
                step(*batches[(repeat + index) % DISTINCT_BATCHES])
            whole.append((clock() - start) / 5)
            for name, seconds in spent.items():
                pieces.setdefault(name, []).append(seconds / 5)
    finally:
        for cls, (forward, backward) in originals.items():
            cls.forward, cls.backward = forward, backward
    result = {name: statistics.median(samples) * 1e6 for name, samples in pieces.items()}
    result = dict(sorted(result.items(), key=lambda item: -item[1]))
    result["graph bookkeeping (the rest)"] = statistics.median(whole) * 1e6 - sum(result.values())
    result["whole step (timed ops)"] = statistics.median(whole) * 1e6
    return result


def conv_pieces(batch_size, args):
    """{piece: median µs per step} of the numpy work inside the two convolutions, on the step's layouts."""
    rng = np.random.default_rng(args.seed)
    ours = Ours(initial_state(args.seed))
    images, _ = random_batches(batch_size, args.seed)[0]
    x1 = normalize(images)  # (N, 1, 28, 28), batch outermost: Conv2dOp makes it batch innermost
    x1 = np.ascontiguousarray(x1.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    # the second convolution's input comes out of a max-pool: batch innermost in memory (conv.py)
    x2 = rng.standard_normal((16, 12, 12, batch_size)).astype(np.float32).transpose(3, 0, 1, 2)
    w1, w2 = ours.model[0].weight.data, ours.model[3].weight.data
    k1, k2 = 1 * 5 * 5, 16 * 5 * 5  # rows of the im2col matrices: in_channels * kh * kw
    cols1 = windows_of(x1, (5, 5), (1, 1)).transpose(1, 4, 5, 2, 3, 0).reshape(k1, -1)
    cols2 = windows_of(x2, (5, 5), (1, 1)).transpose(1, 4, 5, 2, 3, 0).reshape(k2, -1)
    grad1 = rng.standard_normal((16, cols1.shape[1])).astype(np.float32)
    grad2 = rng.standard_normal((32, cols2.shape[1])).astype(np.float32)

    def im2col():
        windows_of(x1, (5, 5), (1, 1)).transpose(1, 4, 5, 2, 3, 0).reshape(k1, -1)
        windows_of(x2, (5, 5), (1, 1)).transpose(1, 4, 5, 2, 3, 0).reshape(k2, -1)

    def matmuls():
        w1.reshape(16, -1) @ cols1  # conv 1 forward
        (cols1 @ grad1.T).T  # conv 1 d weight (no d input: the images want no gradient)
        w2.reshape(32, -1) @ cols2  # conv 2 forward
        (cols2 @ grad2.T).T  # conv 2 d weight
        w2.reshape(32, -1).T @ grad2  # conv 2 d cols

    # (C, kh, kw, OH, OW, N) -> (N, C, OH, OW, kh, kw), as Conv2dOp.backward hands it to col2im
    grad_windows2 = (w2.reshape(32, -1).T @ grad2).reshape(16, 5, 5, 8, 8, batch_size).transpose(5, 0, 3, 4, 1, 2)

    def col2im():
        add_windows_back(grad_windows2, (batch_size, 16, 12, 12), (1, 1))

    return {name: median_microseconds(function, args.repeats) for name, function in
            (("im2col (both convolutions)", im2col), ("matrix products (5 of the convolutions)", matmuls),
             ("col2im (the second convolution)", col2im))}


def mlp_784_512():
    return nn.mlp([784, 512, 10], rng=np.random.default_rng(0))


def torch_mlp(model):
    layers = torch.nn
    converted = layers.Sequential(layers.Linear(784, 512), layers.LeakyReLU(0.01), layers.Linear(512, 10))
    converted.load_state_dict({name: torch.from_numpy(array) for name, array in model.state_dict().items()})
    return converted.eval()


def evaluation_throughput(args, with_torch):
    """[(model, chunk, ours images/s, torch images/s or None)]: forward passes without a graph."""
    rng = np.random.default_rng(args.seed)
    images = rng.integers(0, 256, size=(args.eval_images, 1, 28, 28), dtype=np.uint8)
    rows = []
    for name, model, shape in (("MLP 784-512-10", mlp_784_512(), (-1, 784)), ("nn.lenet", nn.lenet(rng=np.random.default_rng(0)), (-1, 1, 28, 28))):
        model.eval()
        theirs = (torch_mlp(model) if shape == (-1, 784) else Torch(model.state_dict()).model.eval()) if with_torch else None
        for chunk in args.eval_chunks:
            def ours_pass():
                with no_grad():
                    for start in range(0, len(images), chunk):
                        model(Tensor(normalize(images[start : start + chunk]).reshape(shape)))

            def torch_pass():
                with torch.no_grad():
                    for start in range(0, len(images), chunk):
                        theirs(torch.from_numpy(images[start : start + chunk]).to(torch.float32).div_(255).reshape(shape))

            samples = {"ours": [], "torch": []}
            for _ in range(1 if args.quick else max(3, args.repeats // 4)):
                for contender, function in (("ours", ours_pass), ("torch", torch_pass)):
                    if contender == "torch" and not with_torch:
                        continue
                    settle_threads()
                    start = clock()
                    function()
                    samples[contender].append(len(images) / (clock() - start))
            rows.append((name, chunk, statistics.median(samples["ours"]),
                         statistics.median(samples["torch"]) if with_torch else None))
    return rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--threads", type=int, nargs="+", default=[1, 2], help="BLAS (and torch) thread counts, one process each (default 1 2)")
    add("--batch-sizes", type=int, nargs="+", default=[64], help="batch sizes to time (default 64)")
    add("--repeats", type=int, default=21, help="timed blocks per contender; medians are over these (default 21)")
    add("--block-seconds", type=float, default=0.3, help="about how long one block of steps runs (default 0.3)")
    add("--warmup-steps", type=int, default=5, help="untimed steps per contender before timing (default 5)")
    add("--eval-images", type=int, default=10000, help="images per evaluation pass (default 10000)")
    add("--eval-chunks", type=int, nargs="+", default=[250, 1000], help="images per forward pass in evaluation (default 250 1000)")
    add("--seed", type=int, default=0, help="seed of the weights and batches (default 0)")
    add("--no-torch", action="store_true", help="leave PyTorch out even if it is installed")
    add("--quick", action="store_true", help="a tiny smoke run: batch 8, 1 repeat, both thread counts")
    add("--child", action="store_true", help=argparse.SUPPRESS)  # one thread count, started by the parent
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.repeats, args.block_seconds, args.warmup_steps = [8], 1, 0.01, 1
        args.eval_images, args.eval_chunks = 64, [32]
    if (args.repeats < 1 or args.warmup_steps < 1 or args.block_seconds <= 0 or min(args.batch_sizes) < 1
            or min(args.threads) < 1 or args.eval_images < 1 or min(args.eval_chunks) < 1):
        parser.error("--threads, --repeats, --warmup-steps, batch sizes and the evaluation's sizes must be at least 1, --block-seconds positive")
    return args


THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def main(argv=None):
    args = parse_args(argv)
    if not args.child:  # one process per thread count: BLAS reads its thread count when it loads
        arguments = [argument for argument in (sys.argv[1:] if argv is None else argv)]
        for threads in args.threads:
            environment = {**os.environ, **{name: str(threads) for name in THREAD_VARIABLES}}
            print(f"# {threads} thread{'s' if threads > 1 else ''}\n", flush=True)
            done = subprocess.run([sys.executable, os.path.abspath(__file__), *arguments, "--child", "--threads", str(threads)],
                                  env=environment)
            if done.returncode:
                sys.exit(done.returncode)
            print(flush=True)
        return
    measure(args)


def measure(args):
    global clock
    threads = args.threads[-1]
    clock = time.process_time if threads == 1 else time.perf_counter
    clock_name = "CPU time" if threads == 1 else "wall time"
    with_torch = torch is not None and not args.no_torch
    if with_torch:
        torch.set_num_threads(blas_threads())  # the same number of threads numpy's BLAS has
    print("## Machine\n")
    print(describe_machine(with_torch))
    pinned = getattr(tinygrad_mnist.modes, "malloc_pinned", False)  # (so the script also times older versions)
    malloc = "pinned on import (mmap 32 MiB, trim 64 MiB)" if pinned else "glibc's moving defaults"
    print(f"- malloc thresholds: {malloc}")
    if not with_torch:
        print("\nPyTorch skipped: " + ("--no-torch given" if args.no_torch else "not installed (pip install torch to compare)"))

    print(f"\n## Training step: nn.lenet, float32, SGD momentum {MOMENTUM}, {threads} thread(s) (median of {args.repeats} blocks, {clock_name})\n")
    load_before = os.getloadavg()[0]
    columns = ["batch", "ours µs/step"] + (["torch µs/step"] if with_torch else []) + ["ours s/epoch"]
    columns += (["torch s/epoch", "ours/torch"] if with_torch else []) + ["ours faults/step"]
    rows = ["| " + " | ".join(columns) + " |", "|" + "|".join(" ---: " for _ in columns) + "|"]
    for batch_size in args.batch_sizes:
        medians, ratio, faults = time_batch_size(batch_size, args, with_torch)
        steps_per_epoch = math.ceil(MNIST_TRAIN_IMAGES / batch_size)
        names = ["ours"] + (["torch"] if with_torch else [])
        cells = [str(batch_size)] + [f"{medians[name] * 1e6:.0f}" for name in names]
        cells += [f"{medians[name] * steps_per_epoch:.2f}" for name in names]
        if with_torch:
            cells.append(f"{ratio:.2f}")
        cells.append(f"{faults:.0f}")
        rows.append("| " + " | ".join(cells) + " |")
    print("\n".join(rows))
    print(f"\nLoad average (1 minute) before / after timing: {load_before:.2f} / {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} cores (this benchmark alone adds 1 to 2; more means other processes were running).")

    print(f"\n## Where the time of our step goes: µs per step, median of {args.repeats}, {clock_name}\n")
    print("| batch | piece | µs | share |")
    print("| ---: | --- | ---: | ---: |")
    for batch_size in args.batch_sizes:
        pieces = op_breakdown(batch_size, args)
        whole = pieces["whole step (timed ops)"]
        for name, microseconds in pieces.items():
            print(f"| {batch_size} | {name} | {microseconds:.0f} | {microseconds / whole:.0%} |")
        for name, microseconds in conv_pieces(batch_size, args).items():
            print(f"| {batch_size} | inside the convolutions: {name} | {microseconds:.0f} | {microseconds / whole:.0%} |")

    print(f"\n## Evaluation: images per second under no_grad, {args.eval_images} images ({clock_name})\n")
    print("| model | chunk | ours images/s |" + (" torch images/s | ours/torch (images/s) |" if with_torch else ""))
    print("| --- | ---: | ---: |" + (" ---: | ---: |" if with_torch else ""))
    for name, chunk, ours, theirs in evaluation_throughput(args, with_torch):
        print(f"| {name} | {chunk} | {ours:.0f} |" + (f" {theirs:.0f} | {ours / theirs:.2f} |" if with_torch else ""))


if __name__ == "__main__":
    main()
