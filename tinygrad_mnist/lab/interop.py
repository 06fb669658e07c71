"""The way out to PyTorch, and back: a model as a torch.nn.Sequential with the same weights.

    from tinygrad_mnist.lab.interop import to_torch, from_torch
    torch_model = to_torch(model)       # nn.Sequential(Conv2d, ReLU, MaxPool2d, ...) -> torch's
    model = from_torch(torch_model)     # and back, e.g. after fine-tuning it in PyTorch

The layers map one to one, and so do their parameter names ("0.weight", "0.bias", ...) and shapes:
a Linear's weight is (out_features, in_features) and a Conv2d's (out, in, kh, kw) in both
libraries, so the arrays are copied as they are, never transposed. The converter is the table
LAYERS, one row per layer: Linear, Conv2d, ReLU, LeakyReLU, MaxPool2d, Dropout, Flatten. A layer
that is not in it, or a setting a row cannot carry (a torch Conv2d with groups=2), raises
UnsupportedLayerError naming it. The arrays are copied, not shared, and keep their dtype
(float32 or float64).

PyTorch is not a dependency of this package: it is imported when a conversion runs.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from .. import nn
from ..tensor import Tensor
from .extras import require

INSTALL_HINT = "converting to and from PyTorch needs torch: pip install torch (https://pytorch.org/get-started/)"


class MissingTorchError(ImportError):
    """A conversion was asked for, but PyTorch is not installed; str(error) says how to install it."""


class UnsupportedLayerError(TypeError):
    """A layer (or one of its settings) that the converter's table does not carry; the message names it and what is supported."""


def _torch():
    return require("torch", MissingTorchError(INSTALL_HINT))


# ----- the rows: each converts one layer there and back ------------------------------------------
def _parameters_to_torch(layer, converted, torch):
    """Copy weight (and bias) into the torch layer: the same shapes in both libraries, no transpose."""
    with torch.no_grad():
        converted.weight.copy_(torch.from_numpy(layer.weight.data))
        if layer.bias is not None:
            converted.bias.copy_(torch.from_numpy(layer.bias.data))
    return converted


def _parameters_from_torch(layer, converted, index):
    converted.weight = Tensor(_array(layer.weight, index), requires_grad=True)
    converted.bias = None if layer.bias is None else Tensor(_array(layer.bias, index), requires_grad=True)
    return converted


def _torch_dtype(layer, torch):
    return torch.float64 if layer.weight.dtype == np.float64 else torch.float32


def _linear_to_torch(layer, torch):
    converted = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, dtype=_torch_dtype(layer, torch))
    return _parameters_to_torch(layer, converted, torch)


def _linear_from_torch(layer, index):
    # rng: the weights are replaced at once, so nothing is drawn from the generator manual_seed seeds
    converted = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, rng=np.random.default_rng(0))
    return _parameters_from_torch(layer, converted, index)


def _conv2d_to_torch(layer, torch):
    converted = torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                                padding=layer.padding, bias=layer.bias is not None, dtype=_torch_dtype(layer, torch))
    return _parameters_to_torch(layer, converted, torch)


def _conv2d_from_torch(layer, index):
    _refuse_unless(layer, index, groups=1, dilation=1, padding_mode="zeros")
    if isinstance(layer.padding, str):  # "same" / "valid"
        _refuse(layer, index, f"padding={layer.padding!r}")
    converted = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride, padding=layer.padding,
                          bias=layer.bias is not None, rng=np.random.default_rng(0))
    return _parameters_from_torch(layer, converted, index)


def _max_pool2d_from_torch(layer, index):
    _refuse_unless(layer, index, padding=0, dilation=1, ceil_mode=False, return_indices=False)
    return nn.MaxPool2d(layer.kernel_size, layer.stride)


class Row(NamedTuple):
    """One layer in both libraries: its classes and a function each way (the layer and torch / the layer and its index)."""

    ours: type
    theirs: str  # the class's name in torch.nn
    to_torch: Callable
    from_torch: Callable


LAYERS = [
    Row(nn.Linear, "Linear", _linear_to_torch, _linear_from_torch),
    Row(nn.Conv2d, "Conv2d", _conv2d_to_torch, _conv2d_from_torch),
    Row(nn.ReLU, "ReLU", lambda layer, torch: torch.nn.ReLU(), lambda layer, index: nn.ReLU()),
    Row(nn.LeakyReLU, "LeakyReLU", lambda layer, torch: torch.nn.LeakyReLU(layer.negative_slope),
        lambda layer, index: nn.LeakyReLU(layer.negative_slope)),
    Row(nn.MaxPool2d, "MaxPool2d", lambda layer, torch: torch.nn.MaxPool2d(layer.kernel_size, layer.stride), _max_pool2d_from_torch),
    Row(nn.Dropout, "Dropout", lambda layer, torch: torch.nn.Dropout(layer.p), lambda layer, index: nn.Dropout(layer.p)),
    Row(nn.Flatten, "Flatten", lambda layer, torch: torch.nn.Flatten(layer.start_dim, layer.end_dim),
        lambda layer, index: nn.Flatten(layer.start_dim, layer.end_dim)),
]
SUPPORTED = ", ".join(row.theirs for row in LAYERS)


# ----- the two directions -----------------------------------------------------------------------
def to_torch(model):
    """A torch.nn.Sequential computing what `model` (an nn.Sequential) computes, with copies of its weights."""
    torch = _torch()
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"to_torch converts an nn.Sequential, got {type(model).__name__}; wrap the layers in nn.Sequential(...)")
    rows = {row.ours: row for row in LAYERS}
    layers = []
    for index, layer in enumerate(model):
        row = rows.get(type(layer))  # the exact class: a subclass may compute something else
        if row is None:
            raise UnsupportedLayerError(f"to_torch: layer {index} is {type(layer).__name__}, which the converter "
                                        f"does not know; it converts {SUPPORTED} (a new layer is one row of LAYERS)")
        layers.append(row.to_torch(layer, torch))
    return torch.nn.Sequential(*layers)


def from_torch(sequential):
    """An nn.Sequential of this package computing what a torch.nn.Sequential computes, with copies of its weights."""
    torch = _torch()
    if not isinstance(sequential, torch.nn.Sequential):
        raise TypeError(f"from_torch converts a torch.nn.Sequential, got {type(sequential).__name__}")
    rows = {getattr(torch.nn, row.theirs): row for row in LAYERS}
    layers = []
    for index, layer in enumerate(sequential):
        row = rows.get(type(layer))
        if row is None:
            raise UnsupportedLayerError(f"from_torch: layer {index} is {layer!r}, which the converter does not know; "
                                        f"it converts {SUPPORTED} (a new layer is one row of LAYERS)")
        layers.append(row.from_torch(layer, index))
    return nn.Sequential(*layers)


def _refuse(layer, index, setting):
    raise UnsupportedLayerError(f"from_torch: layer {index} is {layer!r}, whose {setting} this package's "
                                f"{type(layer).__name__} does not have")


def _refuse_unless(layer, index, **settings):
    """Refuse a torch layer whose settings differ from these (the ones our layer computes)."""
    for name, expected in settings.items():
        value = getattr(layer, name)
        if isinstance(value, tuple) and isinstance(expected, int):  # torch keeps (1, 1) or 1
            same = all(item == expected for item in value)
        else:
            same = value == expected
        if not same:
            _refuse(layer, index, f"{name}={value!r}")


def _array(parameter, index):
    """A torch parameter as a float32 or float64 ndarray copy (this engine's two dtypes)."""
    array = parameter.detach().cpu().numpy().copy()
    if array.dtype not in (np.float32, np.float64):
        raise TypeError(f"from_torch: layer {index} holds {array.dtype} weights; convert the model with .float() first")
    return array
