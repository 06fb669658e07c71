"""Autograd against backpropagation derived by hand (tinygrad_mnist/reference.py).

The reference computes the same MLP loss and gradients with no graph at all. In float64 the two
must agree to rounding error (1e-10 relative), for every parameter: any mistake in an op's
backward, in broadcasting or in accumulation would show here as a large difference.
"""

import numpy as np
import pytest

import tinygrad_mnist.functional as F
from tinygrad_mnist import Tensor, nn, optim
from tinygrad_mnist.reference import ManualSGD, mlp_loss_and_grads, mlp_predict
from helpers import assert_relative_close


def model_and_batch(layer_sizes, batch_size, dtype, seed):
    rng = np.random.default_rng(seed)
    model = nn.mlp(layer_sizes, rng=rng, dtype=dtype)
    for layer in model:  # nonzero biases, so their gradients are exercised on the way in too
        if isinstance(layer, nn.Linear):
            layer.bias.data[...] = rng.standard_normal(layer.bias.shape) * 0.1
    images = rng.random((batch_size, layer_sizes[0])).astype(dtype)
    labels = rng.integers(0, layer_sizes[-1], batch_size)
    return model, images, labels


def reference_params(model):
    return [(layer.weight.data, layer.bias.data) for layer in model if isinstance(layer, nn.Linear)]


def autograd_loss_and_grads(model, images, labels):
    model.zero_grad()
    loss = F.cross_entropy(model(Tensor(images)), labels)
    loss.backward()
    grads = [(layer.weight.grad, layer.bias.grad) for layer in model if isinstance(layer, nn.Linear)]
    return loss.item(), grads


def assert_matches_reference(model, images, labels, tolerance):
    loss, grads = autograd_loss_and_grads(model, images, labels)
    expected_loss, expected_grads = mlp_loss_and_grads(reference_params(model), images, labels)
    assert loss == pytest.approx(float(expected_loss), rel=tolerance)
    for layer, ((grad_weight, grad_bias), (expected_weight, expected_bias)) in enumerate(zip(grads, expected_grads)):
        assert grad_weight.dtype == expected_weight.dtype
        assert_relative_close(grad_weight, expected_weight, tolerance, f"layer {layer} weight gradient")
        assert_relative_close(grad_bias, expected_bias, tolerance, f"layer {layer} bias gradient")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_small_float64_mlp_matches_the_hand_derived_gradients(seed):
    model, images, labels = model_and_batch([6, 5, 4, 3], batch_size=7, dtype=np.float64, seed=seed)
    assert_matches_reference(model, images, labels, tolerance=1e-10)


def test_the_mnist_sized_float64_mlp_matches_the_hand_derived_gradients():
    model, images, labels = model_and_batch([784, 64, 32, 10], batch_size=32, dtype=np.float64, seed=10)
    assert_matches_reference(model, images, labels, tolerance=1e-10)


def test_a_float32_mlp_matches_the_hand_derived_gradients_to_float32_precision():
    model, images, labels = model_and_batch([784, 64, 32, 10], batch_size=32, dtype=np.float32, seed=11)
    assert_matches_reference(model, images, labels, tolerance=1e-5)


def test_a_float32_mlp_matches_its_float64_twin_to_float32_precision():
    # the float32 reference runs the same float32 arithmetic; this compares against exact math
    model32, images, labels = model_and_batch([784, 64, 32, 10], batch_size=32, dtype=np.float32, seed=12)
    model64 = nn.mlp([784, 64, 32, 10], dtype=np.float64)
    model64.load_state_dict({name: array.astype(np.float64) for name, array in model32.state_dict().items()})
    loss32, grads32 = autograd_loss_and_grads(model32, images, labels)
    loss64, grads64 = autograd_loss_and_grads(model64, images.astype(np.float64), labels)
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    for pair32, pair64 in zip(grads32, grads64):
        for grad32, grad64 in zip(pair32, pair64):
            assert_relative_close(grad32, grad64, 1e-4)


def test_the_model_predicts_the_same_logits_as_the_reference():
    model, images, _ = model_and_batch([10, 8, 4], batch_size=5, dtype=np.float64, seed=3)
    assert_relative_close(model(Tensor(images)).data, mlp_predict(reference_params(model), images), 1e-12)


def test_sgd_with_momentum_takes_the_same_steps_as_the_manual_update():
    model, images, labels = model_and_batch([6, 5, 3], batch_size=4, dtype=np.float64, seed=4)
    manual_params = [(weight.copy(), bias.copy()) for weight, bias in reference_params(model)]
    optimizer = optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    manual = ManualSGD(manual_params, lr=0.5, momentum=0.9)
    for _ in range(3):
        autograd_loss_and_grads(model, images, labels)
        optimizer.step()
        manual.step(mlp_loss_and_grads(manual_params, images, labels)[1])
    for (weight, bias), (manual_weight, manual_bias) in zip(reference_params(model), manual_params):
        assert_relative_close(weight, manual_weight, 1e-10)
        assert_relative_close(bias, manual_bias, 1e-10)


def test_mlp_gradients_match_pytorch():
    torch = pytest.importorskip("torch")
    model, images, labels = model_and_batch([12, 8, 6, 4], batch_size=5, dtype=np.float64, seed=5)
    loss, grads = autograd_loss_and_grads(model, images, labels)

    torch_params = [
        (torch.tensor(weight, requires_grad=True), torch.tensor(bias, requires_grad=True))
        for weight, bias in reference_params(model)
    ]
    activation = torch.tensor(images)
    for index, (weight, bias) in enumerate(torch_params):
        activation = torch.nn.functional.linear(activation, weight, bias)
        if index < len(torch_params) - 1:
            activation = torch.nn.functional.leaky_relu(activation, 0.01)
    expected = torch.nn.functional.cross_entropy(activation, torch.tensor(labels))
    expected.backward()

    assert loss == pytest.approx(expected.item(), rel=1e-12)
    for (grad_weight, grad_bias), (weight, bias) in zip(grads, torch_params):
        assert_relative_close(grad_weight, weight.grad.numpy(), 1e-10)
        assert_relative_close(grad_bias, bias.grad.numpy(), 1e-10)
