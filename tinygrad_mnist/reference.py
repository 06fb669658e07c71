"""The MLP of the original program, with backpropagation derived by hand: no autograd at all.

This is the reference the engine is checked against (tests compare every gradient) and the
speed limit it is measured against (benchmarks/train_step.py). It is plain numpy: read it next
to ops.py to see that autograd computes exactly these lines, one op at a time.

The network: x -> Linear -> LeakyReLU -> ... -> Linear -> logits -> softmax cross-entropy.
Parameters are a list of (weight, bias) pairs, weight shaped (out_features, in_features).
"""

from __future__ import annotations

import numpy as np


def mlp_loss_and_grads(params, images, labels, negative_slope=0.01):
    """Mean cross-entropy of the MLP on one batch, and its gradient for every parameter.

    params  list of (weight (out, in), bias (out,)) pairs, first layer first
    images  (N, in) inputs;  labels (N,) integer classes
    Returns (loss, [(grad_weight, grad_bias), ...]) in the dtype of the parameters.
    """
    # forward, keeping what backward needs: each layer's input and its leaky ReLU's slopes
    layer_inputs, slopes = [], []
    activation = images
    for index, (weight, bias) in enumerate(params):
        layer_inputs.append(activation)
        pre_activation = activation @ weight.T  # (N, in) @ (in, out) -> (N, out)
        pre_activation += bias
        if index == len(params) - 1:
            logits = pre_activation
        else:
            positive = pre_activation > 0
            # leaky ReLU's slope: 1 where positive, negative_slope elsewhere (True is 1, False 0).
            # Multiplying by it is np.where(positive, pre, pre * negative_slope), exactly, but
            # without a branch per element (which a random mask makes slow: see ops.LeakyReLUOp)
            slope = positive + ~positive * pre_activation.dtype.type(negative_slope)
            slopes.append(slope)
            activation = pre_activation * slope

    # softmax cross-entropy, with the row max subtracted so exp cannot overflow
    count = logits.shape[0]
    rows = np.arange(count)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp_shifted = np.exp(shifted)
    sum_exp = exp_shifted.sum(axis=1, keepdims=True)
    loss = (np.log(sum_exp[:, 0]) - shifted[rows, labels]).sum() / count

    # backward: d loss / d logits = (softmax - onehot) / N
    grad = exp_shifted / sum_exp
    grad[rows, labels] -= 1
    grad /= count
    grads = []
    for index in range(len(params) - 1, -1, -1):
        weight, _ = params[index]
        grad_weight = grad.T @ layer_inputs[index]  # (out, N) @ (N, in) -> (out, in)
        grad_bias = grad.sum(axis=0)
        grads.append((grad_weight, grad_bias))
        if index > 0:
            grad = grad @ weight  # (N, out) @ (out, in) -> (N, in): d loss / d activation
            # through leaky ReLU: slope 1 where the input was positive, negative_slope elsewhere
            grad *= slopes[index - 1]
    grads.reverse()
    return loss, grads


def mlp_predict(params, images, negative_slope=0.01):
    """Logits of the MLP for a batch of inputs (N, in) -> (N, classes)."""
    activation = images
    for index, (weight, bias) in enumerate(params):
        activation = activation @ weight.T + bias
        if index < len(params) - 1:
            activation = np.where(activation > 0, activation, activation * negative_slope)
    return activation


class ManualSGD:
    """SGD with momentum written out by hand, in place, the update PyTorch's SGD makes:
    buffer = momentum * buffer + grad;  param -= lr * buffer."""

    def __init__(self, params, lr, momentum=0.0):
        self.params = params
        self.lr = lr
        self.momentum = momentum
        self.buffers = [[np.zeros_like(weight), np.zeros_like(bias)] for weight, bias in params]

    def step(self, grads):
        """Update every parameter in place from `grads`, a list of (grad_weight, grad_bias) pairs."""
        for pair, grad_pair, buffer_pair in zip(self.params, grads, self.buffers):
            for param, grad, buffer in zip(pair, grad_pair, buffer_pair):
                if self.momentum:
                    buffer *= self.momentum
                    buffer += grad
                    grad = buffer
                param -= self.lr * grad
