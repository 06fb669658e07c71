"""Exercise 7, solved: BatchNorm1d, a layer with parameters and running state (docs/exercises.md).

    python -m tinygrad_mnist.exercises check batchnorm examples/solutions/batchnorm.py
"""

import numpy as np

from tinygrad_mnist import Function, Tensor, nn


class BatchNormFunction(Function):
    """Training-mode batch norm of x (N, F), per feature over the batch:

        x_hat = (x - mean) / sqrt(var + eps)     mean, var (biased, / N) of each column
        out   = weight * x_hat + bias

    With g = grad_out * weight:  d loss/d x = (g - mean(g) - x_hat * mean(g * x_hat)) / sqrt(var + eps),
    d loss/d weight = sum over the batch of grad_out * x_hat,  d loss/d bias = sum of grad_out.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps=1e-5):
        mean = x.mean(axis=0)  # (F,)
        inv_std = 1 / np.sqrt(x.var(axis=0) + eps)  # (F,); var divides by N
        x_hat = (x - mean) * inv_std  # (N, F)
        ctx.save_for_backward(x_hat, inv_std, weight)
        return x_hat * weight + bias

    @staticmethod
    def backward(ctx, grad_out):
        x_hat, inv_std, weight = ctx.saved
        g = grad_out * weight  # d loss/d x_hat
        # every x_i moves the mean and the variance, which every other row used: the two
        # subtracted terms are those paths (the derivation is in docs/exercises.md)
        grad_x = (g - g.mean(axis=0) - x_hat * (g * x_hat).mean(axis=0)) * inv_std
        return grad_x, (grad_out * x_hat).sum(axis=0), grad_out.sum(axis=0)


class BatchNorm1d(nn.Module):
    """Batch normalization over (N, num_features), as torch.nn.BatchNorm1d.

    Training: normalize with the batch's mean and biased variance, and update the running
    estimates: running = (1 - momentum) * running + momentum * batch value, where the variance
    kept is the unbiased one (/ (N - 1)). Evaluation: normalize with the running estimates.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = Tensor(np.ones(num_features, dtype=np.float32), requires_grad=True)  # gamma
        self.bias = Tensor(np.zeros(num_features, dtype=np.float32), requires_grad=True)  # beta
        # running state: plain arrays, not parameters (no gradient, the optimizer never sees them)
        self.running_mean = np.zeros(num_features, dtype=np.float32)
        self.running_var = np.ones(num_features, dtype=np.float32)

    def forward(self, x):
        if self.training:
            count = x.shape[0]
            batch_mean, batch_var = x.data.mean(axis=0), x.data.var(axis=0) * count / (count - 1)
            self.running_mean = ((1 - self.momentum) * self.running_mean + self.momentum * batch_mean).astype(self.running_mean.dtype)
            self.running_var = ((1 - self.momentum) * self.running_var + self.momentum * batch_var).astype(self.running_var.dtype)
            return BatchNormFunction.apply(x, self.weight, self.bias, eps=self.eps)
        # evaluation: a fixed affine map of x, still differentiable with respect to weight and bias
        inv_std = Tensor(1 / np.sqrt(self.running_var + self.eps), dtype=x.dtype)
        return (x - Tensor(self.running_mean, dtype=x.dtype)) * inv_std * self.weight + self.bias

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"
