"""Train a LeNet-style convolutional network on MNIST digits (or Fashion-MNIST clothes).

    python examples/mnist_cnn.py                   # >= 99% test accuracy in under 3 minutes on 2 cores
    python examples/mnist_cnn.py --preset bn       # BatchNorm, Adam, 24/48 channels, shifted digits: >= 99.4%
    python examples/mnist_cnn.py --preset fashion  # Fashion-MNIST, a wider net: >= 91%
    python examples/mnist_cnn.py --help

This file states the model and its settings; the training loop is examples/mnist.py's main(),
so every flag works as there (--save/--resume/--load, --metrics, --plot, --graph, Ctrl-C,
divergence, --detect-anomaly). The network (tinygrad_mnist/nn.py: lenet), for N images:
    (N, 1, 28, 28) -> conv 5x5, 16 channels -> ReLU -> max-pool 2 -> (N, 16, 12, 12)
                   -> conv 5x5, 32 channels -> ReLU -> max-pool 2 -> (N, 32, 4, 4)
                   -> flatten (N, 512) -> [dropout] -> linear -> (N, 10) logits
With --norm batch (the bn preset) each stage is conv (no bias) -> max-pool 2 -> BatchNorm2d -> ReLU.
"""

import mnist  # examples/mnist.py, beside this file: the training loop

from tinygrad_mnist.lab import run

# ----- settings: the defaults reach >= 99% on MNIST in under 3 minutes on 2 cores -----------------
DEFAULTS = {
    "epochs": 5,
    "batch_size": 64,
    "lr": 0.05,  # peak learning rate; the cosine schedule lowers it to 0 by the last step
    "momentum": 0.9,
    "optimizer": "sgd",  # or "adam"
    "norm": "none",  # or "batch": BatchNorm2d in each stage (conv, pool, BatchNorm, ReLU)
    "dropout": 0.0,  # dropout before the last layer (training only)
    "padding": 0,  # zeros around the image before the first convolution (2 keeps it 28x28)
    "channels": "16,32",  # output channels of the two convolutions
    "augment": "none",  # or "flip": mirror a random half of each batch (clothes, not digits); "shift" (digits)
    "clip_norm": None,
    "clip_value": None,
    "schedule": "cosine",
    "seed": 0,
    "dataset": "mnist",
}
PRESETS = {
    # Fashion-MNIST: twice the channels, LeNet-5's padding, dropout, mirrored clothes, 10 epochs
    "fashion": {"dataset": "fashion-mnist", "epochs": 10, "dropout": 0.25, "padding": 2, "channels": "32,64",
                "augment": "flip"},
    # BatchNorm and Adam, 24/48 channels, digits moved by up to 2 pixels, 8 epochs: 99.45% (README's Runs;
    # 16/32 channels stop at 99.32%)
    "bn": {"norm": "batch", "optimizer": "adam", "lr": 0.002, "augment": "shift", "epochs": 8, "channels": "24,48"},
}
INPUT_SHAPE = (-1, 1, 28, 28)  # a CNN takes each image as one channel of 28x28 pixels


def lenet(settings):
    """The CNN the settings describe, as a spec (lab/models.py rebuilds it from a checkpoint)."""
    channels = [int(count) for count in settings.channels.split(",")]
    spec = {"kind": "lenet", "dropout": settings.dropout, "padding": settings.padding, "channels": channels}
    if settings.norm == "batch":  # only then: a spec without it is the CNN without BatchNorm
        spec["batch_norm"] = True
    return spec, {}


def main(argv=None):
    mnist.main(argv, DEFAULTS, PRESETS, model_spec=lenet, input_shape=INPUT_SHAPE,
          description="Train a CNN on MNIST with tinygrad_mnist.")


if __name__ == "__main__":
    run.main(main, errors=mnist.ERRORS)
