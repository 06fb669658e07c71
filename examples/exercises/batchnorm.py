"""Exercise 7: BatchNorm1d, a layer with parameters and running state. See docs/exercises.md.

Copy this file, fill in the methods, then check your copy:

    python -m tinygrad_mnist.exercises check batchnorm my_batchnorm.py
"""

import numpy as np

from tinygrad_mnist import Function, Tensor, nn


class BatchNormFunction(Function):
    """Training-mode batch norm of x (N, F), per feature over the batch:

        x_hat = (x - mean) / sqrt(var + eps)     mean, var (biased, / N) of each column
        out   = weight * x_hat + bias

    d loss/d x = ... (derive it; the hint in docs/exercises.md),  d loss/d weight = ...,  d loss/d bias = ...
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps=1e-5):
        raise NotImplementedError("BatchNormFunction.forward")

    @staticmethod
    def backward(ctx, grad_out):
        raise NotImplementedError("BatchNormFunction.backward")


class BatchNorm1d(nn.Module):
    """Batch normalization over (N, num_features), as torch.nn.BatchNorm1d.

    Training: normalize with the batch's mean and biased variance, and update the running
    estimates: running = (1 - momentum) * running + momentum * batch value, where the variance
    kept is the unbiased one (/ (N - 1)). Evaluation: normalize with the running estimates.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        # weight (ones) and bias (zeros): float32 Tensors with requires_grad=True;
        # running_mean (zeros) and running_var (ones): plain float32 numpy arrays
        raise NotImplementedError("BatchNorm1d.__init__")

    def forward(self, x):
        # self.training tells the two modes apart (model.train() / model.eval() set it)
        raise NotImplementedError("BatchNorm1d.forward")
