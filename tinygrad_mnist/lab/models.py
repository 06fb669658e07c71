"""The model registry: a checkpoint names its architecture, rebuilt through MODELS.

A spec is a small JSON dict, {"kind": "mlp", "layer_sizes": [784, 512, 10], "negative_slope":
0.01} or {"kind": "lenet", "dropout": 0.0, "padding": 0, "channels": [16, 32]}; the settings
table checks it (settings.check_model) before anything is allocated, and the layers check what
they are given. save_model and load_model write and read a model with its spec, for
examples/predict.py, examples/to_torch.py and your own programs.
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..modes import no_grad
from ..tensor import Tensor
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .data import normalize
from .settings import MODEL_DEFAULTS, check_model, check_model_state

IMAGE_SIDE = 28  # MNIST's images: 28x28 grey levels


def _lenet(dropout, padding, channels, batch_norm=False, init_scale=None, **options):
    # init_scale is the MLP's setting: the convolutions take PyTorch's initialisation
    return nn.lenet(dropout=dropout, padding=padding, channels=tuple(channels), batch_norm=batch_norm, **options)


MODELS = {"mlp": nn.mlp, "lenet": _lenet}  # kind -> builder(**fields, **options): one entry each


def build_model(spec, **options):
    """The model `spec` describes, built by MODELS[kind]; `options` (rng, init_scale, ...) go to
    the builder. Raises ValueError naming what is wrong with the spec, before allocating anything."""
    problem = check_model(spec)
    if problem:
        raise ValueError(problem)
    fields = {**MODEL_DEFAULTS[spec["kind"]], **{key: value for key, value in spec.items() if key != "kind"}}
    return MODELS[spec["kind"]](**fields, **options)


def load_weights(model, state, path):
    """Load a checkpoint's `state` into `model`; a CheckpointError naming `path` if it does not fit
    or is not finite."""
    try:
        model.load_state_dict(state)
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"{path} does not fit its model: {str(error).strip(chr(34))}") from None
    if not all(np.isfinite(array).all() for array in state.values()):
        raise CheckpointError(f"{path} holds weights that are not finite (NaN or inf); use an earlier checkpoint")


def save_model(path, model, spec):
    """Save `model`'s weights with its spec (see build_model) as a checkpoint load_model reads back."""
    problem = check_model(spec)  # a spec that could not be rebuilt is refused now, not when loading
    if problem:
        raise ValueError(problem)
    return save_checkpoint(path, model.state_dict(), model=spec)


def load_model(path):
    """The model saved at `path`, rebuilt exactly: the architecture its record names, through
    MODELS, with the saved weights. Raises CheckpointError (or FileNotFoundError) saying why."""
    checkpoint = load_checkpoint(path)
    spec = checkpoint.meta.get("model")
    problem = check_model(spec) or check_model_state(spec, checkpoint.model_state)  # before anything is built
    if problem:
        raise CheckpointError(f"{path}: its record's model is unusable: {problem}")
    model = build_model(spec)
    load_weights(model, checkpoint.model_state, path)
    return model


def image_input_shape(model):
    """How a batch of 28x28 images is shaped for `model`: (-1, 1, 28, 28) for a model that starts
    with a convolution (a CNN), else rows of 784 pixels, (-1, 784)."""
    return (-1, 1, IMAGE_SIDE, IMAGE_SIDE) if isinstance(model[0], nn.Conv2d) else (-1, IMAGE_SIDE * IMAGE_SIDE)


def load_image_model(path):
    """load_model(path) for a program that feeds the model 28x28 images (predict.py, to_torch.py):
    also refuses, in one line (CheckpointError), a model that does not take 28x28 images (an MLP
    of 100 inputs) and one whose outputs are not finite though its weights are (weights scaled by
    1e30 overflow float32), found by running it once on a blank and a full image."""
    model = load_model(path).eval()
    first = model[0]
    if isinstance(first, nn.Linear) and first.in_features != IMAGE_SIDE * IMAGE_SIDE:
        raise CheckpointError(f"{path} holds a model for {first.in_features} inputs, not the {IMAGE_SIDE * IMAGE_SIDE} "
                              f"pixels of a {IMAGE_SIDE}x{IMAGE_SIDE} image: give a checkpoint trained on MNIST's images")
    if isinstance(first, nn.Conv2d) and first.in_channels != 1:
        raise CheckpointError(f"{path} holds a CNN for {first.in_channels}-channel images, not MNIST's grey ones: "
                              "give a checkpoint trained on MNIST's images")
    probe = np.stack([np.zeros((IMAGE_SIDE, IMAGE_SIDE), np.uint8), np.full((IMAGE_SIDE, IMAGE_SIDE), 255, np.uint8)])
    with no_grad(), np.errstate(over="ignore", invalid="ignore"):
        logits = model(Tensor(normalize(probe).reshape(image_input_shape(model)))).data
    if not np.isfinite(logits).all():
        largest = max(float(np.abs(array).max()) for array in model.state_dict().values())
        raise CheckpointError(f"{path} holds a model whose outputs are not finite (NaN or inf) though its weights are "
                              f"(the largest is {largest:.3g}, too large for float32): use an earlier checkpoint")
    return model
