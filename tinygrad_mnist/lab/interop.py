"""The way out to PyTorch, and back: a model as a torch.nn.Sequential with the same weights.

    from tinygrad_mnist.lab.interop import to_torch, from_torch
    torch_model = to_torch(model)       # nn.Sequential(Linear, LeakyReLU, Linear) -> torch's
    model = from_torch(torch_model)     # and back, e.g. after fine-tuning it in PyTorch

The layers map one to one, and so do their parameter names ("0.weight", "0.bias", ...) and shapes:
a Linear's weight is (out_features, in_features) in both libraries, so the arrays are copied as
they are, never transposed. Supported layers: Linear (with or without bias), ReLU, LeakyReLU (its
negative_slope carried over), Flatten (from axis 1, the default of both). Another layer raises
UnsupportedLayerError naming it. The arrays are copied, not shared, and keep their dtype
(float32 or float64).

PyTorch is not a dependency of this package: it is imported when a conversion runs.
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..tensor import Tensor
from .extras import require

INSTALL_HINT = "converting to and from PyTorch needs torch: pip install torch (https://pytorch.org/get-started/)"
SUPPORTED = "Linear, ReLU, LeakyReLU, Flatten"


class MissingTorchError(ImportError):
    """A conversion was asked for, but PyTorch is not installed; str(error) says how to install it."""


class UnsupportedLayerError(TypeError):
    """A layer has no counterpart in the other library here; the message names it and what is supported."""


def _torch():
    return require("torch", MissingTorchError(INSTALL_HINT))


def to_torch(model):
    """A torch.nn.Sequential computing what `model` (an nn.Sequential) computes, with copies of its weights."""
    torch = _torch()
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"to_torch converts an nn.Sequential, got {type(model).__name__}; wrap the layers in nn.Sequential(...)")
    layers = []
    for index, layer in enumerate(model):
        if isinstance(layer, nn.Linear):
            weight = layer.weight.data
            converted = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                                        dtype=torch.float64 if weight.dtype == np.float64 else torch.float32)
            with torch.no_grad():
                converted.weight.copy_(torch.from_numpy(weight))  # (out, in) in both: no transpose
                if layer.bias is not None:
                    converted.bias.copy_(torch.from_numpy(layer.bias.data))
        elif isinstance(layer, nn.LeakyReLU):
            converted = torch.nn.LeakyReLU(layer.negative_slope)
        elif isinstance(layer, nn.ReLU):
            converted = torch.nn.ReLU()
        elif isinstance(layer, nn.Flatten):
            converted = torch.nn.Flatten()  # from axis 1, as ours
        else:
            raise UnsupportedLayerError(
                f"to_torch: layer {index} is {type(layer).__name__}, which has no PyTorch counterpart here; "
                f"supported: {SUPPORTED}"
            )
        layers.append(converted)
    return torch.nn.Sequential(*layers)


def from_torch(sequential):
    """An nn.Sequential of this package computing what a torch.nn.Sequential computes, with copies of its weights."""
    torch = _torch()
    if not isinstance(sequential, torch.nn.Sequential):
        raise TypeError(f"from_torch converts a torch.nn.Sequential, got {type(sequential).__name__}")
    layers = []
    for index, layer in enumerate(sequential):
        if isinstance(layer, torch.nn.Linear):
            converted = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
            converted.weight = Tensor(_array(layer.weight, index), requires_grad=True)  # (out, in) in both
            if layer.bias is not None:
                converted.bias = Tensor(_array(layer.bias, index), requires_grad=True)
        elif isinstance(layer, torch.nn.LeakyReLU):
            converted = nn.LeakyReLU(layer.negative_slope)
        elif isinstance(layer, torch.nn.ReLU):
            converted = nn.ReLU()
        elif isinstance(layer, torch.nn.Flatten) and layer.start_dim == 1 and layer.end_dim == -1:
            converted = nn.Flatten()
        else:
            raise UnsupportedLayerError(
                f"from_torch: layer {index} is {layer!r}, which has no counterpart here; supported: "
                f"{SUPPORTED} (Flatten with its default start_dim=1, end_dim=-1)"
            )
        layers.append(converted)
    return nn.Sequential(*layers)


def _array(parameter, index):
    """A torch parameter as a float32 or float64 ndarray copy (this engine's two dtypes)."""
    array = parameter.detach().cpu().numpy().copy()
    if array.dtype not in (np.float32, np.float64):
        raise TypeError(f"from_torch: layer {index} holds {array.dtype} weights; convert the model with .float() first")
    return array
