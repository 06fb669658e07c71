"""Layers: Module, Linear, activations, Sequential. Names and shapes follow torch.nn.

A Module finds its parameters by looking at its attributes: any Tensor with requires_grad=True
is a parameter, and any Module (or list of Modules) attribute is searched too. Parameters are
named by their attribute path, "0.weight" in a Sequential, exactly as PyTorch names them, so a
state_dict maps one to one between the two (and `draw_graph(loss, names=model)` shows them).
"""

from __future__ import annotations

import math

import numpy as np

from . import functional as F
from .randomness import default_generator
from .tensor import Tensor


class Module:
    """Base class of layers and models. Subclasses set attributes in __init__ and define forward()."""

    training = True

    def __call__(self, *inputs, **options):
        return self.forward(*inputs, **options)

    def forward(self, *inputs):
        """The layer's computation on Tensors; `module(x)` calls it. Subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def named_parameters(self, prefix=""):
        """Yield (name, tensor) for every parameter, each shared tensor once."""
        seen = set()
        for name, value in vars(self).items():
            for path, parameter in _parameters_in(value, prefix + name):
                if id(parameter) not in seen:
                    seen.add(id(parameter))
                    yield path, parameter

    def parameters(self):
        """The list of parameters (tensors with requires_grad=True), in definition order."""
        return [parameter for _, parameter in self.named_parameters()]

    def modules(self):
        """This module and every module inside it, depth first."""
        found = [self]
        for value in vars(self).values():
            for child in value if isinstance(value, (list, tuple)) else (value,):
                if isinstance(child, Module):
                    found.extend(child.modules())
        return found

    def zero_grad(self):
        """Forget every parameter's gradient (set .grad to None)."""
        for parameter in self.parameters():
            parameter.grad = None

    def train(self, mode=True):
        """Set training mode (matters to layers such as dropout); returns self."""
        for module in self.modules():
            module.training = mode
        return self

    def eval(self):
        """Set evaluation mode; returns self."""
        return self.train(False)

    def state_dict(self):
        """{parameter name: a copy of its ndarray}: everything needed to rebuild the weights."""
        return {name: parameter.data.copy() for name, parameter in self.named_parameters()}

    def load_state_dict(self, state):
        """Copy arrays from `state` into the parameters, after checking names, shapes and dtypes."""
        own = dict(self.named_parameters())
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise KeyError(
                f"state_dict does not match {type(self).__name__}: missing {missing or 'nothing'}, "
                f"unexpected {unexpected or 'nothing'}; was it saved from a model of another architecture?"
            )
        for name, parameter in own.items():
            array = np.asarray(state[name])
            if array.shape != parameter.shape:
                raise ValueError(
                    f"state_dict['{name}'] has shape {array.shape}, but the model's {name} has shape "
                    f"{parameter.shape}; the saved model has other layer sizes"
                )
            if array.dtype != parameter.dtype:
                raise TypeError(f"state_dict['{name}'] has dtype {array.dtype}, the model's has {parameter.dtype}")
        for name, parameter in own.items():
            parameter.copy_(state[name])  # in place (optimizers keep their references), and counted

    def __repr__(self):
        children = [f"  ({name}): {value!r}".replace("\n", "\n  ") for name, value in vars(self).items() if isinstance(value, Module)]
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        return f"{type(self).__name__}(\n" + "\n".join(children) + "\n)"

    def extra_repr(self):
        """The settings shown inside the parentheses of repr(module), e.g. `in_features=784, ...`."""
        return ""


def _parameters_in(value, path):
    if isinstance(value, Tensor):
        if value.requires_grad:
            yield path, value
    elif isinstance(value, Module):
        yield from value.named_parameters(prefix=path + ".")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _parameters_in(item, f"{path}.{index}")


class Linear(Module):
    """y = x @ weight^T + bias.   weight: (out_features, in_features), bias: (out_features,).

    Weights start as He (Kaiming) normal: N(0, 2 / in_features), times `init_scale`. The 2 / fan-in
    variance keeps the size of activations steady through ReLU-like layers; the original program
    multiplied it by 0.1 (init_scale=0.1) for smaller first steps. Biases start at zero.
    Draws: the weights, from `rng` (a numpy Generator), or when None from the library's generator
    that `manual_seed` seeds.
    """

    def __init__(self, in_features, out_features, bias=True, init_scale=1.0, rng=None, dtype=np.float32):
        rng = default_generator if rng is None else rng
        self.in_features = in_features
        self.out_features = out_features
        std = math.sqrt(2.0 / in_features) * init_scale
        weight = rng.standard_normal((out_features, in_features)) * std
        self.weight = Tensor(weight.astype(dtype), requires_grad=True)
        self.bias = Tensor(np.zeros(out_features, dtype=dtype), requires_grad=True) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)  # which checks x's shape

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class LeakyReLU(Module):
    """x where x > 0, negative_slope * x elsewhere."""

    def __init__(self, negative_slope=0.01):
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class ReLU(Module):
    """max(x, 0)."""

    def forward(self, x):
        return F.relu(x)


class Flatten(Module):
    """Merge axes start_dim..end_dim into one, as torch.nn.Flatten: (batch, d1, d2, ...) -> (batch, d1 * d2 * ...)."""

    def __init__(self, start_dim=1, end_dim=-1):
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, x):
        start, end = range(x.ndim)[self.start_dim], range(x.ndim)[self.end_dim]  # negative dims count from the end
        return x.reshape(*x.shape[:start], math.prod(x.shape[start : end + 1]), *x.shape[end + 1 :])  # not -1: N = 0 too

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Sequential(Module):
    """Modules applied one after another. Children are named "0", "1", ... as in PyTorch."""

    def __init__(self, *modules):
        for index, module in enumerate(modules):
            setattr(self, str(index), module)
        self.length = len(modules)

    def __getitem__(self, index):
        return getattr(self, str(range(self.length)[index]))

    def __len__(self):
        return self.length

    def __iter__(self):
        return (self[index] for index in range(self.length))

    def forward(self, x):
        for index in range(self.length):
            x = getattr(self, str(index))(x)  # the child named "0", then "1", ...
        return x


def mlp(layer_sizes, negative_slope=0.01, init_scale=1.0, rng=None, dtype=np.float32):
    """The original program's network: Linear layers with leaky ReLU between them.

    mlp([784, 128, 10]) == Sequential(Linear(784, 128), LeakyReLU(), Linear(128, 10)).
    The last layer has no activation: it returns raw logits for F.cross_entropy.
    Draws: every layer's weights, in order, from `rng`, or when None from the library's generator.
    """
    if len(layer_sizes) < 2:
        raise ValueError(f"mlp needs at least an input and an output size, got {list(layer_sizes)}")
    layers = []
    for index, (fan_in, fan_out) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:])):
        layers.append(Linear(fan_in, fan_out, init_scale=init_scale, rng=rng, dtype=dtype))
        if index < len(layer_sizes) - 2:
            layers.append(LeakyReLU(negative_slope))
    return Sequential(*layers)


# ----- convolutional layers ----------------------------------------------------------------------
class Conv2d(Module):
    """out = conv2d(x, weight, bias, stride, padding): x (N, in, H, W) -> (N, out, OH, OW), as torch.nn.Conv2d.

    weight: (out_channels, in_channels, kh, kw), bias: (out_channels,). Both start uniform in
    +-1/sqrt(fan_in), fan_in = in_channels * kh * kw: PyTorch's default (kaiming_uniform_ with
    a=sqrt(5), whose bound sqrt(6 / ((1 + a^2) fan_in)) is that 1/sqrt(fan_in)), so a net built
    here starts where the same net in PyTorch would. stride and padding are checked by F.conv2d.
    Draws: the weights, then the biases, from `rng` (a numpy Generator), or when None from the
    library's generator that `manual_seed` seeds.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, rng=None, dtype=np.float32):
        rng = default_generator if rng is None else rng
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = F.as_pair(kernel_size, "kernel_size", "Conv2d", 1)  # the weight's shape needs it now
        self.stride = stride
        self.padding = padding
        bound = 1 / math.sqrt(in_channels * self.kernel_size[0] * self.kernel_size[1])
        weight = rng.uniform(-bound, bound, (out_channels, in_channels, *self.kernel_size))
        self.weight = Tensor(weight.astype(dtype), requires_grad=True)
        self.bias = Tensor(rng.uniform(-bound, bound, out_channels).astype(dtype), requires_grad=True) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}")


class MaxPool2d(Module):
    """The maximum of each kernel_size window, windows `stride` apart (default: kernel_size, no overlap)."""

    def __init__(self, kernel_size, stride=None):
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class Dropout(Module):
    """In training mode, zero each element with probability p and scale the rest by 1 / (1 - p); in eval mode, x.

    `model.train()` / `model.eval()` switch it. F.dropout checks p. Draws: a fresh mask at each
    call in training mode, from `generator` (a numpy Generator), or when None from the library's
    generator that `manual_seed` seeds, so a seeded run drops the same elements every time.
    """

    def __init__(self, p=0.5, generator=None):
        self.p = p
        self.generator = generator

    def forward(self, x):
        return F.dropout(x, self.p, self.training, generator=self.generator)

    def extra_repr(self):
        return f"p={self.p}"


def lenet(dropout=0.0, padding=0, channels=(16, 32), rng=None, dtype=np.float32):
    """The LeNet-style CNN for 28x28 images: two 5x5 convolutions with ReLU and 2x2 max-pooling, then Linear.

    (N, 1, 28, 28) -> Conv2d(1, 16, 5) -> (N, 16, 24, 24) -> ReLU, MaxPool2d(2) -> (N, 16, 12, 12)
    -> Conv2d(16, 32, 5) -> (N, 32, 8, 8) -> ReLU, MaxPool2d(2) -> (N, 32, 4, 4) -> Flatten -> (N, 512)
    -> [Dropout(dropout)] -> Linear(512, 10) -> raw logits.
    padding: zeros around the image before the first convolution; 2 keeps it 28x28, as LeNet-5
    did, and the Linear layer then takes 32 * 5 * 5 = 800 features. channels: the output channels
    of the two convolutions, (16, 32) as above.
    The Linear layer keeps this package's He init; the convolutions take PyTorch's.
    Draws: the layers' weights in order, then in training every dropout mask, all from `rng`, or
    when None from the library's generator that `manual_seed` seeds.
    """
    first, second = channels
    side = ((28 + 2 * padding - 4) // 2 - 4) // 2  # the image side after both conv + pool stages
    layers = [
        Conv2d(1, first, 5, padding=padding, rng=rng, dtype=dtype), ReLU(), MaxPool2d(2),
        Conv2d(first, second, 5, rng=rng, dtype=dtype), ReLU(), MaxPool2d(2),
        Flatten(),
    ]
    if dropout:
        layers.append(Dropout(dropout, generator=rng))
    layers.append(Linear(second * side * side, 10, rng=rng, dtype=dtype))
    return Sequential(*layers)
