"""tinygrad_mnist: a small numpy autograd engine, and the MNIST classifier built on it.

    from tinygrad_mnist import Tensor, Function, no_grad, gradcheck
    from tinygrad_mnist import functional as F
"""

from . import conv, functional, fused, nn, ops, optim
from .function import Context, Function, unbroadcast, unreduce
from .gradcheck import GradcheckError, gradcheck
from .modes import AnomalyError, detect_anomaly, enable_grad, is_grad_enabled, no_grad
from .randomness import manual_seed
from .tensor import Tensor, cat, stack

__version__ = "0.1.0"

__all__ = [
    "AnomalyError",
    "Context",
    "Function",
    "GradcheckError",
    "Tensor",
    "cat",
    "conv",
    "detect_anomaly",
    "enable_grad",
    "functional",
    "fused",
    "gradcheck",
    "is_grad_enabled",
    "manual_seed",
    "nn",
    "no_grad",
    "ops",
    "optim",
    "stack",
    "unbroadcast",
    "unreduce",
]
