"""tinygrad_mnist: a small numpy autograd engine, and the MNIST classifier built on it.

    from tinygrad_mnist import Tensor, Function, no_grad, gradcheck
    from tinygrad_mnist import functional as F
"""

import os

from . import conv, functional, fused, modes, nn, ops, optim
from .function import Context, Function, unbroadcast, unreduce
from .gradcheck import GradcheckError, gradcheck
from .modes import AnomalyError, detect_anomaly, enable_grad, is_grad_enabled, no_grad
from .randomness import manual_seed
from .tensor import Tensor, cat, stack

__version__ = "0.1.0"

# a CNN step's temporaries are reused instead of faulted in again every step (2x faster in a plain
# process); process-wide, see modes.pin_malloc_thresholds for the cost. TINYGRAD_MNIST_MALLOC=system
# leaves glibc's own settings, and so do malloc settings given in GLIBC_TUNABLES.
if os.environ.get("TINYGRAD_MNIST_MALLOC") != "system" and "glibc.malloc" not in os.environ.get("GLIBC_TUNABLES", ""):
    modes.pin_malloc_thresholds()

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
