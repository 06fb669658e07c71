"""Move a trained model to PyTorch and back, and check that the logits stay the same.

    python examples/mnist.py --save run.npz
    python examples/to_torch.py run.npz --out model.pt              # a torch state_dict
    python examples/to_torch.py run.npz --out model.pt --back back.npz

The model becomes a torch.nn.Sequential with the same layers and weights
(tinygrad_mnist/lab/interop.py: to_torch). Its logits on the test images are compared with ours; then
it is converted back (from_torch), saved as a checkpoint of this package (--back), loaded again,
and compared once more. Use the model in PyTorch with

    model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.LeakyReLU(0.01), torch.nn.Linear(512, 10))
    model.load_state_dict(torch.load("model.pt"))

(the layer sizes and slope are printed). Needs PyTorch (pip install torch).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import tinygrad_mnist as tg
from tinygrad_mnist import Tensor, nn
from tinygrad_mnist.atomic import write_atomically
from tinygrad_mnist.lab import command, models
from tinygrad_mnist.lab.checkpoint import CheckpointError, load_checkpoint
from tinygrad_mnist.lab.data import normalize
from tinygrad_mnist.lab.datasets import DatasetNotFoundError, load_mnist
from tinygrad_mnist.lab.idx import IDXError
from tinygrad_mnist.lab.interop import INSTALL_HINT, UnsupportedLayerError, from_torch, to_torch

TOLERANCE = 1e-5  # largest difference of logits accepted (in float32: plus 1e-5 times the logit)
CHUNK = 1000  # images per forward pass: a CNN's im2col matrices of 10,000 images would take GBs


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument gets one line (the reason), not the whole usage text."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(argv=None):
    parser = ArgumentParser(description="Convert a saved model to torch.nn.Sequential and back, checking the logits.")
    parser.add_argument("checkpoint", type=Path, help="a checkpoint saved by examples/mnist.py --save")
    parser.add_argument("--out", type=Path, metavar="PATH", help="save the PyTorch model's state_dict here (torch.save)")
    parser.add_argument("--back", type=Path, metavar="PATH", help="save the model converted back from PyTorch as a checkpoint here")
    parser.add_argument("--images", type=int, default=10_000, metavar="N", help="compare the logits on the first N test images (default 10000)")
    parser.add_argument("--data-dir", type=Path, help="folder with the MNIST files (else $TINYGRAD_MNIST_DATA, else data/mnist)")
    parser.add_argument("--overwrite", action="store_true", help="let --out and --back replace existing files")
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error(f"--images must be at least 1, got {args.images}")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:  # the paths written, before any work (lab/command.py); locked while main runs
        _outputs = command.check_outputs({"--out": args.out, "--back": args.back}, {"CHECKPOINT": args.checkpoint}, args.overwrite)
    except command.OutputError as error:
        print(f"to_torch.py: error: {error}", file=sys.stderr)
        sys.exit(2)
    try:
        import torch
    except ImportError:
        sys.exit(f"error: {INSTALL_HINT}")
    try:
        model = models.load_image_model(args.checkpoint)  # it takes 28x28 images, its outputs are finite
        spec = load_checkpoint(args.checkpoint).meta["model"]  # the architecture, to save the model back
    except (CheckpointError, FileNotFoundError, KeyError, ValueError, TypeError) as error:
        sys.exit(f"error: {args.checkpoint}: {error}")
    try:
        images = load_mnist(args.data_dir).test_images[: args.images]
    except (DatasetNotFoundError, IDXError) as error:
        sys.exit(f"error: {error}")
    # float32, as in training: (N, 784) for an MLP, (N, 1, 28, 28) for a CNN
    inputs = normalize(images).reshape(-1, 1, 28, 28) if isinstance(model[0], nn.Conv2d) else normalize(images, flatten=True)

    try:
        torch_model = to_torch(model).eval()
    except UnsupportedLayerError as error:
        sys.exit(f"error: {args.checkpoint}: {error}")
    print(f"PyTorch model:\n{torch_model}")
    ours = logits_of(model, inputs)
    theirs = torch_logits(torch, torch_model, inputs)
    # float32 sums of 784 products carry rounding errors of ~1e-5 at logits of ~20, and the two
    # libraries add in different orders: in float32 the logits agree to float32's precision ...
    float32_ok = np.allclose(theirs, ours, rtol=TOLERANCE, atol=TOLERANCE)
    report("float32, tinygrad_mnist vs PyTorch", ours, theirs, float32_ok, "within float32 rounding" if float32_ok else "NOT within float32 rounding")
    # ... and in float64, with the very same weights, to ~1e-14: the conversion itself is exact
    torch_model64 = to_torch(model).double().eval()
    theirs64 = torch_logits(torch, torch_model64, inputs.astype(np.float64))
    ours64 = logits_of(from_torch(torch_model64).eval(), inputs.astype(np.float64))
    float64_difference = report("float64, tinygrad_mnist vs PyTorch", ours64, theirs64, None, None)
    if args.out:
        try:
            write_atomically(args.out, lambda file: torch.save(torch_model.state_dict(), file))
        except OSError as error:
            sys.exit(f"error: could not write --out {args.out} ({command.os_reason(error)}); nothing was written")
        print(f"PyTorch state_dict saved to {args.out} (load it with torch.load and load_state_dict)")

    back = from_torch(torch_model).eval()
    if args.back:
        try:
            models.save_model(args.back, back, spec)
        except CheckpointError as error:
            sys.exit(f"error: {error}" + (f"; {args.out} was written" if args.out else ""))
        back = models.load_model(args.back).eval()
        print(f"converted back and saved to {args.back}")
    back_difference = report("float32, back from PyTorch vs the original", ours, logits_of(back, inputs), None, None)
    sys.exit(0 if float32_ok and max(float64_difference, back_difference) <= TOLERANCE else 1)


def logits_of(model, inputs):
    with tg.no_grad():
        return np.concatenate([model(Tensor(inputs[start : start + CHUNK])).data for start in range(0, len(inputs), CHUNK)])


def torch_logits(torch, torch_model, inputs):
    with torch.no_grad():
        return np.concatenate([torch_model(torch.from_numpy(inputs[start : start + CHUNK])).numpy()
                               for start in range(0, len(inputs), CHUNK)])


def report(title, reference, logits, ok, verdict):
    """Print and return the largest difference of two sets of logits (the test images')."""
    difference = float(np.abs(reference - logits).max())
    if verdict is None:
        ok = difference <= TOLERANCE
        verdict = f"<= {TOLERANCE:g}" if ok else f"MORE THAN {TOLERANCE:g}"
    same = int((logits.argmax(axis=1) == reference.argmax(axis=1)).sum())
    print(f"{title}: max |logit difference| {difference:.2e} ({verdict}; largest |logit| "
          f"{np.abs(reference).max():.1f}); same predicted class for {same}/{len(logits)} test images")
    return difference

if __name__ == "__main__":
    command.main(main)  # Ctrl-C or SIGTERM: one line, exit 130 or 143
