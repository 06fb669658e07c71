"""How fast is one training step of the CNN? tinygrad_mnist beside PyTorch, and where the time goes.

    python benchmarks/cnn_step.py                   # the table and the breakdown (about a minute)
    python benchmarks/cnn_step.py --quick           # a tiny smoke run (a few seconds)
    python benchmarks/cnn_step.py --batch-sizes 64 256 --repeats 31
    OPENBLAS_NUM_THREADS=1 python benchmarks/cnn_step.py --clock cpu   # on a busy shared machine

Both contenders train nn.lenet (conv 1->16 5x5, ReLU, max-pool 2, conv 16->32 5x5, ReLU, max-pool 2,
linear 512->10; float32) with SGD momentum 0.9 on the same batches, from the same weights:

  ours    tinygrad_mnist: nn.lenet, F.cross_entropy, loss.backward(), optim.SGD
  torch   the same net in PyTorch on the CPU, if installed, with as many threads as numpy's BLAS

A step is uint8 images -> float32 / 255, forward, loss, zero_grad, backward, optimizer step and
loss.item(). Blocks of steps alternate between the contenders in one process (torch's fenced by
a pause, see train_step.py: settle_threads); each row reports the median time per step and the
median over the repeats of the ratio ours/torch of blocks of the same repeat. Before timing, the
first three steps must give the same losses in both, or the timing would compare different work.

The breakdown times the numpy pieces of our step on their own, on the step's shapes:
im2col (the copy of the windows into a matrix), the matrix products (three per convolution, less
the input gradient the first one does not need, and the Linear layer's), col2im (adding window
gradients back into the image), max-pooling forward and backward, and the rest of the step
(ReLU, reshape, loss, optimizer, graph bookkeeping) as the step's median minus those.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import numpy as np

from tinygrad_mnist import Tensor, nn, optim
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


# wall time by default; --clock cpu counts only this process's CPU time, which a busy shared
# machine cannot inflate by taking the core away (meaningful with one thread: with more, the time
# BLAS and OpenMP threads spend spinning while they wait counts as CPU time too)
clock = time.perf_counter


def run_block(contender, batches, steps, cursor):
    start = clock()
    for _ in range(steps):
        contender.step(*batches[cursor % DISTINCT_BATCHES])
        cursor += 1
    return (clock() - start) / steps, cursor


def time_batch_size(batch_size, args, with_torch):
    """(median seconds per step of each contender, median ratio ours/torch or None)."""
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
    for _ in range(args.repeats):
        for index, contender in enumerate(contenders):
            if index:
                settle_threads()
            seconds, cursors[index] = run_block(contender, batches, steps, cursors[index])
            times[index].append(seconds)
            if index:
                settle_threads()
    medians = {cls.name: statistics.median(samples) for cls, samples in zip(classes, times)}
    ratio = statistics.median([a / b for a, b in zip(times[0], times[1])]) if with_torch else None
    return medians, ratio


def median_microseconds(function, repeats, iterations=5):
    samples = []
    function()
    for _ in range(repeats):
        start = clock()
        for _ in range(iterations):
            function()
        samples.append((clock() - start) / iterations * 1e6)
    return statistics.median(samples)


def breakdown(batch_size, args):
    """{piece: median µs per step}, the pieces of our step timed on their own on its shapes."""
    rng = np.random.default_rng(args.seed)
    ours = Ours(initial_state(args.seed))
    images, labels = random_batches(batch_size, args.seed)[0]
    x1 = normalize(images)  # (N, 1, 28, 28)
    x2 = rng.standard_normal((batch_size, 16, 12, 12)).astype(np.float32)
    # the pooling inputs come out of a convolution and a ReLU: batch innermost in memory (conv.py)
    pooled1 = rng.standard_normal((16, 24, 24, batch_size)).astype(np.float32).transpose(3, 0, 1, 2)
    pooled2 = rng.standard_normal((32, 8, 8, batch_size)).astype(np.float32).transpose(3, 0, 1, 2)
    w1, w2 = ours.model[0].weight.data, ours.model[3].weight.data
    w3 = ours.model[7].weight.data
    k1, k2 = 1 * 5 * 5, 16 * 5 * 5  # rows of the im2col matrices: in_channels * kh * kw
    cols1 = np.ascontiguousarray(windows_of(x1, (5, 5), (1, 1)).transpose(1, 4, 5, 2, 3, 0).reshape(k1, -1))
    cols2 = np.ascontiguousarray(windows_of(x2, (5, 5), (1, 1)).transpose(1, 4, 5, 2, 3, 0).reshape(k2, -1))
    grad1 = rng.standard_normal((16, cols1.shape[1])).astype(np.float32)
    grad2 = rng.standard_normal((32, cols2.shape[1])).astype(np.float32)
    flat = rng.standard_normal((batch_size, 512)).astype(np.float32)
    grad3 = rng.standard_normal((batch_size, 10)).astype(np.float32)

    def im2col():
        windows_of(x1, (5, 5), (1, 1)).transpose(1, 4, 5, 2, 3, 0).reshape(k1, -1)
        windows_of(x2, (5, 5), (1, 1)).transpose(1, 4, 5, 2, 3, 0).reshape(k2, -1)

    def matmuls():
        w1.reshape(16, -1) @ cols1  # conv 1 forward
        (cols1 @ grad1.T).T  # conv 1 d weight (no d input: the images want no gradient)
        w2.reshape(32, -1) @ cols2  # conv 2 forward
        (cols2 @ grad2.T).T  # conv 2 d weight
        w2.reshape(32, -1).T @ grad2  # conv 2 d cols
        flat @ w3.T  # linear forward, d weight, d input
        grad3.T @ flat
        grad3 @ w3

    # (C, kh, kw, OH, OW, N) -> (N, C, OH, OW, kh, kw), as Conv2d.backward hands it to col2im
    grad_windows2 = (w2.reshape(32, -1).T @ grad2).reshape(16, 5, 5, 8, 8, batch_size).transpose(5, 0, 3, 4, 1, 2)

    def col2im():
        add_windows_back(grad_windows2, (batch_size, 16, 12, 12), (1, 1))

    pool_inputs = [Tensor(array, requires_grad=True) for array in (pooled1, pooled2)]
    pool_grads = [np.ones((batch_size, 16, 12, 12), np.float32), np.ones((batch_size, 32, 4, 4), np.float32)]

    def pooling():
        for tensor, grad in zip(pool_inputs, pool_grads):
            tensor.grad = None
            F.max_pool2d(tensor, 2).backward(grad)

    batches = random_batches(batch_size, args.seed)
    step = median_microseconds(lambda: ours.step(*batches[0]), args.repeats)
    pieces = {name: median_microseconds(fn, args.repeats) for name, fn in
              (("im2col", im2col), ("matrix products", matmuls), ("col2im", col2im), ("max-pool forward + backward", pooling))}
    pieces["rest of the step"] = step - sum(pieces.values())
    pieces["whole step"] = step
    return pieces


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--batch-sizes", type=int, nargs="+", default=[64], help="batch sizes to time (default 64)")
    add("--repeats", type=int, default=21, help="timed blocks per contender; medians are over these (default 21)")
    add("--block-seconds", type=float, default=0.3, help="about how long one block of steps runs (default 0.3)")
    add("--warmup-steps", type=int, default=5, help="untimed steps per contender before timing (default 5)")
    add("--seed", type=int, default=0, help="seed of the weights and batches (default 0)")
    add("--no-torch", action="store_true", help="leave PyTorch out even if it is installed")
    add("--clock", choices=["wall", "cpu"], default="wall",
        help="wall time (default), or this process's CPU time: steadier on a busy machine, with OPENBLAS_NUM_THREADS=1")
    add("--quick", action="store_true", help="a tiny smoke run: batch 8, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.repeats, args.block_seconds, args.warmup_steps = [8], 1, 0.01, 1
    if args.repeats < 1 or args.warmup_steps < 1 or args.block_seconds <= 0 or min(args.batch_sizes) < 1:
        parser.error("--repeats, --warmup-steps and batch sizes must be at least 1, --block-seconds positive")
    return args


def main(argv=None):
    global clock
    args = parse_args(argv)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    with_torch = torch is not None and not args.no_torch
    if with_torch:
        torch.set_num_threads(blas_threads())  # the same number of threads numpy's BLAS has
    print("## Machine\n")
    print(describe_machine(with_torch))
    if not with_torch:
        print("\nPyTorch skipped: " + ("--no-torch given" if args.no_torch else "not installed (pip install torch to compare)"))

    print(f"\n## Training step: nn.lenet, float32, SGD momentum {MOMENTUM} (median of {args.repeats} blocks, {args.clock} time)\n")
    load_before = os.getloadavg()[0]
    columns = ["batch", "ours µs/step"] + (["torch µs/step"] if with_torch else []) + ["ours s/epoch"]
    columns += (["torch s/epoch", "ours/torch"] if with_torch else [])
    rows = ["| " + " | ".join(columns) + " |", "|" + "|".join(" ---: " for _ in columns) + "|"]
    for batch_size in args.batch_sizes:
        medians, ratio = time_batch_size(batch_size, args, with_torch)
        steps_per_epoch = math.ceil(MNIST_TRAIN_IMAGES / batch_size)
        names = ["ours"] + (["torch"] if with_torch else [])
        cells = [str(batch_size)] + [f"{medians[name] * 1e6:.0f}" for name in names]
        cells += [f"{medians[name] * steps_per_epoch:.2f}" for name in names]
        if with_torch:
            cells.append(f"{ratio:.2f}")
        rows.append("| " + " | ".join(cells) + " |")
    print("\n".join(rows))
    print(f"\nLoad average (1 minute) before / after timing: {load_before:.2f} / {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} cores (this benchmark alone adds 1 to 2; more means other processes were running).")

    print(f"\n## Where the time of our step goes: µs per step, median of {args.repeats}\n")
    print("| batch | piece | µs | share |")
    print("| ---: | --- | ---: | ---: |")
    for batch_size in args.batch_sizes:
        pieces = breakdown(batch_size, args)
        for name, microseconds in pieces.items():
            print(f"| {batch_size} | {name} | {microseconds:.0f} | {microseconds / pieces['whole step']:.0%} |")


if __name__ == "__main__":
    main()
