"""Classify your own handwritten digits with a trained model.

    python examples/mnist.py --save run.npz                  # train once, keep the model
    python examples/predict.py my_seven.jpg --model run.npz  # then ask it about your photos
    python examples/predict.py a.png b.jpg --model run.npz --show seen.png

Write a digit on paper with a dark pen, take a photo, crop it roughly around the digit (the digit
should be the darkest thing in the picture), and pass the file. Each image goes through MNIST's
preprocessing (tinygrad_mnist/lab/digits.py: grey, inverted, cropped to the ink, fitted into 20x20,
centred by centre of mass in 28x28), then through the model; the three likeliest classes are
printed with their probabilities. `--show PATH` saves the 28x28 images the model saw, 8 times larger
and side by side, each with its file name and what the model said: look at it when a prediction
surprises you.

Every image is read on its own: a file that is not an image, is too large (over 50 million
pixels, checked from its header before decoding), too small or too thin, shows no digit, or is
probably not a digit (its ink covers more of the field, or falls into more pieces, than MNIST's
digits do: docs/your-digit.md) gets one line on stderr, and the others are still classified.
Exit status: 0 when every image was classified, 2 when any image was not (each gets one line) or
the --show path cannot be written (checked before anything is read), 1 when the model cannot be
used (one line), 130 on Ctrl-C, 143 on SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import tinygrad_mnist as tg
from tinygrad_mnist import Tensor
from tinygrad_mnist.atomic import write_atomically
from tinygrad_mnist.lab import command, models
from tinygrad_mnist.lab.checkpoint import CheckpointError
from tinygrad_mnist.lab.data import normalize
from tinygrad_mnist.lab.digits import DigitImageError, MissingPillowError, load_digit, not_a_digit

TOP = 3  # classes printed per image
SHOW_SCALE = 8  # --show draws each 28x28 image 224x224 (nearest neighbour: every pixel a square)
SHOW_GAP, SHOW_CAPTION = 12, 40  # pixels between the images, and under each for its two caption lines


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument gets one line (the reason), not the whole usage text."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(argv=None):
    parser = ArgumentParser(description="Classify photos or drawings of handwritten digits with a trained model.")
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="PNG or JPEG files, one digit each")
    parser.add_argument("--model", type=Path, required=True, metavar="PATH", help="a checkpoint saved by examples/mnist.py or mnist_cnn.py --save")
    parser.add_argument("--show", type=Path, metavar="PATH", help="save the 28x28 images the model saw here (.png)")
    parser.add_argument("--overwrite", action="store_true", help="let --show replace an existing file")
    args = parser.parse_args(argv)
    if args.show is not None and args.show.suffix.lower() != ".png":
        parser.error(f"--show writes a .png file, not {args.show.name!r}")
    return args


def classify(model, digits):
    """Probabilities (N, classes) for uint8 digits (N, 28, 28), scaled as in training."""
    # a CNN (examples/mnist_cnn.py) takes (N, 1, 28, 28) images; an MLP takes rows of 784 pixels
    with tg.no_grad():
        logits = model(Tensor(normalize(digits).reshape(models.image_input_shape(model)))).data  # -> (N, classes)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))  # softmax, max subtracted first
    return shifted / shifted.sum(axis=1, keepdims=True)


def save_seen(path, digits, names, probabilities):
    """--show: each digit as the model saw it (white on black), enlarged, captioned with its file
    name and the likeliest class, side by side on white."""
    from PIL import Image, ImageDraw, ImageFont

    side = 28 * SHOW_SCALE
    canvas = Image.new("L", (len(digits) * (side + SHOW_GAP) - SHOW_GAP, side + SHOW_CAPTION), 255)
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
    for index, (digit, name, row) in enumerate(zip(digits, names, probabilities)):
        left = index * (side + SHOW_GAP)
        canvas.paste(Image.fromarray(np.kron(digit, np.ones((SHOW_SCALE, SHOW_SCALE), dtype=np.uint8))), (left, 0))
        label = int(row.argmax())
        short = Path(name).name if len(Path(name).name) <= 34 else Path(name).name[:33] + "…"
        draw.text((left + 2, side + 4), short, fill=0, font=font)
        draw.text((left + 2, side + 20), f"said {label} ({100 * row[label]:.1f}%)", fill=0, font=font)
    write_atomically(path, lambda file: canvas.save(file, format="PNG"))


def main(argv=None):
    args = parse_args(argv)
    try:  # the path written, before anything is read (lab/command.py); locked while main runs
        _outputs = command.check_outputs({"--show": args.show}, {"--model": args.model, "IMAGE": args.images}, args.overwrite)
    except command.OutputError as error:
        print(f"predict.py: error: {error}", file=sys.stderr)
        sys.exit(2)
    try:  # refuses a model that does not take 28x28 images or whose outputs are not finite
        model = models.load_image_model(args.model)
    except (CheckpointError, FileNotFoundError, KeyError, ValueError, TypeError) as error:
        sys.exit(f"error: --model {args.model}: {error}")

    # every image is read on its own: one bad file gets its line, and the others are still read
    names, digits, probabilities, failed = [], [], [], False
    width = max(len(str(path)) for path in args.images)
    for path in args.images:
        try:
            digit = load_digit(path)
            doubt = not_a_digit(digit)
            if doubt:
                raise DigitImageError(f"{path}: {doubt}")
        except MissingPillowError as error:
            sys.exit(f"error: {error}")
        except DigitImageError as error:
            print(f"error: {error}", file=sys.stderr)
            failed = True
            continue
        except MemoryError:
            print(f"error: {path}: not enough memory to read it; shrink the picture first", file=sys.stderr)
            failed = True
            continue
        row = classify(model, digit[None])[0]
        top = np.argsort(-row, kind="stable")[:TOP]
        print(f"{str(path):<{width}}  " + "   ".join(f"{label}: {100 * row[label]:5.1f}%" for label in top))
        names.append(str(path))
        digits.append(digit)
        probabilities.append(row)
    if digits and args.show:
        try:
            save_seen(args.show, digits, names, probabilities)
        except OSError as error:
            sys.exit(f"error: could not write --show {args.show} ({command.os_reason(error)}); nothing was written")
        shown = "the 28x28 image" if len(digits) == 1 else f"the {len(digits)} 28x28 images, side by side,"
        print(f"{shown} the model saw: {args.show}")
    sys.exit(2 if failed else 0)


if __name__ == "__main__":
    command.main(main)  # Ctrl-C or SIGTERM: one line, exit 130 or 143
