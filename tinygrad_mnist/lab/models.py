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
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .settings import MODEL_DEFAULTS, check_model


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
    try:
        model = build_model(checkpoint.meta.get("model"))
    except ValueError as error:
        raise CheckpointError(f"{path}: its record's model is unusable: {error}") from None
    load_weights(model, checkpoint.model_state, path)
    return model
