"""Layers: Linear, activations, convolutions and pooling, normalization, embedding, and the models
mlp and lenet. Names, arguments, shapes and state_dict keys follow torch.nn. Every layer is a
Module (module.py: parameters, buffers, state_dict), reached here as nn.Module with nn.Sequential.
"""

from __future__ import annotations

import math

import numpy as np

from . import functional as F
from .module import Module, Sequential
from .randomness import default_generator
from .tensor import Tensor


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
    """out = conv2d(x, weight, bias, stride, padding, dilation, groups): x (N, in, H, W) -> (N, out, OH, OW),
    as torch.nn.Conv2d.

    weight: (out_channels, in_channels / groups, kh, kw), bias: (out_channels,). Both start uniform
    in +-1/sqrt(fan_in), fan_in = in_channels / groups * kh * kw: PyTorch's default (kaiming_uniform_
    with a=sqrt(5), whose bound sqrt(6 / ((1 + a^2) fan_in)) is that 1/sqrt(fan_in)), so a net built
    here starts where the same net in PyTorch would. stride, padding (an int, a pair, "valid" or
    "same") and dilation are checked by F.conv2d. Draws: the weights, then the biases, from `rng`
    (a numpy Generator), or when None from the library's generator that `manual_seed` seeds.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 rng=None, dtype=np.float32):
        rng = default_generator if rng is None else rng
        if not isinstance(groups, int) or groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{type(self).__name__}: groups={groups!r} must divide in_channels ({in_channels}) "
                             f"and out_channels ({out_channels})")  # the weight's shape needs it now
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = self._kernel(kernel_size)  # the weight's shape needs it now
        self.stride, self.padding, self.dilation = stride, padding, dilation
        bound = 1 / math.sqrt(in_channels // groups * math.prod(self.kernel_size))
        weight = rng.uniform(-bound, bound, (out_channels, in_channels // groups, *self.kernel_size))
        self.weight = Tensor(weight.astype(dtype), requires_grad=True)
        self.bias = Tensor(rng.uniform(-bound, bound, out_channels).astype(dtype), requires_grad=True) if bias else None

    def _kernel(self, kernel_size):
        return F.as_pair(kernel_size, "kernel_size", type(self).__name__, 1)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding!r}, dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None}")


class Conv1d(Conv2d):
    """out = conv1d(x, weight, bias, ...): x (N, in, L) -> (N, out, OL), as torch.nn.Conv1d; weight
    (out_channels, in_channels / groups, k), PyTorch's init (see Conv2d)."""

    def _kernel(self, kernel_size):
        if not isinstance(kernel_size, (int, np.integer)) or kernel_size < 1:
            raise ValueError(f"Conv1d: kernel_size must be an int >= 1, got {kernel_size!r}")
        return (int(kernel_size),)

    def forward(self, x):
        return F.conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class MaxPool2d(Module):
    """F.max_pool2d: the maximum of each kernel_size window, windows `stride` apart (default: kernel_size),
    with -inf padding, dilation and ceil_mode as torch.nn.MaxPool2d."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.dilation, self.ceil_mode = padding, dilation, ceil_mode

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """F.avg_pool2d: the mean of each kernel_size window (zero padding counted), as torch.nn.AvgPool2d."""

    def __init__(self, kernel_size, stride=None, padding=0):
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """F.adaptive_avg_pool2d: (N, C, H, W) -> (N, C, *output_size); (1, 1) is global average pooling."""

    def __init__(self, output_size):
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


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


def lenet(dropout=0.0, padding=0, channels=(16, 32), batch_norm=False, rng=None, dtype=np.float32):
    """The LeNet-style CNN for 28x28 images: two 5x5 convolutions with ReLU and 2x2 max-pooling, then Linear.

    (N, 1, 28, 28) -> Conv2d(1, 16, 5) -> (N, 16, 24, 24) -> ReLU, MaxPool2d(2) -> (N, 16, 12, 12)
    -> Conv2d(16, 32, 5) -> (N, 32, 8, 8) -> ReLU, MaxPool2d(2) -> (N, 32, 4, 4) -> Flatten -> (N, 512)
    -> [Dropout(dropout)] -> Linear(512, 10) -> raw logits.
    padding: zeros around the image before the first convolution; 2 keeps it 28x28, as LeNet-5
    did, and the Linear layer then takes 32 * 5 * 5 = 800 features. channels: the output channels
    of the two convolutions, (16, 32) as above. batch_norm: each convolution without its bias (the
    BatchNorm's bias replaces it), then MaxPool2d(2), BatchNorm2d, ReLU: after the pool, the
    normalization and the ReLU touch a quarter of the values they would before it.
    The Linear layer keeps this package's He init; the convolutions take PyTorch's.
    Draws: the layers' weights in order, then in training every dropout mask, all from `rng`, or
    when None from the library's generator that `manual_seed` seeds.
    """
    first, second = channels
    side = ((28 + 2 * padding - 4) // 2 - 4) // 2  # the image side after both conv + pool stages

    def stage(in_channels, out_channels, pad):
        conv = Conv2d(in_channels, out_channels, 5, padding=pad, bias=not batch_norm, rng=rng, dtype=dtype)
        if batch_norm:
            return [conv, MaxPool2d(2), BatchNorm2d(out_channels, dtype=dtype), ReLU()]
        return [conv, ReLU(), MaxPool2d(2)]

    layers = stage(1, first, padding) + stage(first, second, 0) + [Flatten()]
    if dropout:
        layers.append(Dropout(dropout, generator=rng))
    layers.append(Linear(second * side * side, 10, rng=rng, dtype=dtype))
    return Sequential(*layers)


# ----- normalization, embedding, activations -----------------------------------------------------
class _BatchNorm(Module):
    """What BatchNorm1d and BatchNorm2d share, as torch.nn's _BatchNorm: weight (ones) and bias (zeros)
    when affine; buffers running_mean (zeros), running_var (ones) and num_batches_tracked (int64)
    when track_running_stats. momentum None averages all batches so far (1 / num_batches_tracked)."""

    input_dims = ()  # the numbers of axes the layer takes

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, dtype=np.float32):
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = Tensor(np.ones(num_features, dtype=dtype), requires_grad=True) if affine else None
        self.bias = Tensor(np.zeros(num_features, dtype=dtype), requires_grad=True) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))

    def forward(self, x):
        if x.ndim not in self.input_dims:
            raise ValueError(f"{type(self).__name__}({self.num_features}) expects input with "
                             f"{' or '.join(map(str, self.input_dims))} axes (N, C, ...), got {x.shape}")
        uses_batch = self.training or not self.track_running_stats
        momentum = self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1  # a 0-d array, updated in place
            momentum = 1 / int(self.num_batches_tracked) if self.momentum is None else self.momentum
        updates = self.training and self.track_running_stats
        return F.batch_norm(x, self.running_mean if updates or not uses_batch else None,
                            self.running_var if updates or not uses_batch else None,
                            self.weight, self.bias, uses_batch, momentum, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalization of (N, C) or (N, C, L) per channel, as torch.nn.BatchNorm1d: in training with
    the batch's statistics (and the running ones updated), after eval() with the running ones."""

    input_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalization of images (N, C, H, W) per channel, as torch.nn.BatchNorm2d (see BatchNorm1d)."""

    input_dims = (4,)


def _shape_of(normalized_shape):
    return (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)


class LayerNorm(Module):
    """F.layer_norm over the last axes, normalized_shape, of each example, as torch.nn.LayerNorm; weight
    (ones) and bias (zeros) shaped normalized_shape when elementwise_affine (bias=False leaves it out)."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, dtype=np.float32):
        self.normalized_shape, self.eps = _shape_of(normalized_shape), eps
        self.weight = Tensor(np.ones(self.normalized_shape, dtype=dtype), requires_grad=True) if elementwise_affine else None
        self.bias = Tensor(np.zeros(self.normalized_shape, dtype=dtype), requires_grad=True) if elementwise_affine and bias else None

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.weight is not None}"


class GroupNorm(Module):
    """F.group_norm: (N, C, ...) normalized over groups of C / num_groups channels, as torch.nn.GroupNorm;
    weight (ones) and bias (zeros) per channel when affine."""

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, dtype=np.float32):
        if num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_groups {num_groups} must divide num_channels {num_channels}")
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        self.weight = Tensor(np.ones(num_channels, dtype=dtype), requires_grad=True) if affine else None
        self.bias = Tensor(np.zeros(num_channels, dtype=dtype), requires_grad=True) if affine else None

    def forward(self, x):
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm({self.num_groups}, {self.num_channels}) expects input (N, {self.num_channels}, ...), got {x.shape}")
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.weight is not None}"


class RMSNorm(Module):
    """F.rms_norm: x / sqrt(mean(x^2) + eps) over the last axes, times weight (ones), as torch.nn.RMSNorm;
    eps None is the dtype's machine epsilon."""

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, dtype=np.float32):
        self.normalized_shape, self.eps = _shape_of(normalized_shape), eps
        self.weight = Tensor(np.ones(self.normalized_shape, dtype=dtype), requires_grad=True) if elementwise_affine else None

    def forward(self, x):
        return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.weight is not None}"


class Embedding(Module):
    """A table of num_embeddings vectors of embedding_dim, looked up by index, as torch.nn.Embedding:
    indices (...) -> (..., embedding_dim). The row at padding_idx starts at zeros and gets no gradient.
    Draws: the weights N(0, 1), from `rng` (a numpy Generator), or when None from the library's
    generator that `manual_seed` seeds."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, rng=None, dtype=np.float32):
        rng = default_generator if rng is None else rng
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"Embedding: padding_idx {padding_idx} must lie in -{num_embeddings}..{num_embeddings - 1}")
            padding_idx %= num_embeddings
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        weight = rng.standard_normal((num_embeddings, embedding_dim)).astype(dtype)
        if padding_idx is not None:
            weight[padding_idx] = 0
        self.weight = Tensor(weight, requires_grad=True)

    def forward(self, indices):
        return F.embedding(indices, self.weight, self.padding_idx)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}" + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")


class Tanh(Module):
    """tanh x (ops.TanhOp)."""

    def forward(self, x):
        return x.tanh()


class Sigmoid(Module):
    """1 / (1 + e^-x) (ops.SigmoidOp)."""

    def forward(self, x):
        return x.sigmoid()


class GELU(Module):
    """F.gelu: x Phi(x), the exact erf form by default, approximate="tanh" the faster tanh form."""

    def __init__(self, approximate="none"):
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"
