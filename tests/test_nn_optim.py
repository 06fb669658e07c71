"""Layers, parameters, state dicts, SGD and gradient clipping, with numbers worked out by hand.

Where PyTorch is installed, the same steps are also run through torch.optim.SGD and
torch.nn.utils.clip_grad_norm_; without it those tests skip and the hand-computed ones still run.
"""

import math

import numpy as np
import pytest

from tinygrad_mnist import Tensor, manual_seed, nn, optim


def parameter(values, grad=None):
    tensor = Tensor(np.array(values, dtype=np.float64), requires_grad=True)
    tensor.grad = None if grad is None else np.array(grad, dtype=np.float64)
    return tensor


# ----- layers ------------------------------------------------------------------------------------
def test_linear_weight_is_out_by_in_and_bias_is_out_like_pytorch():
    layer = nn.Linear(5, 3)
    assert layer.weight.shape == (3, 5)
    assert layer.bias.shape == (3,)
    assert layer.weight.dtype == layer.bias.dtype == np.float32
    np.testing.assert_array_equal(layer.bias.data, np.zeros(3))
    assert layer(Tensor(np.ones((4, 5)))).shape == (4, 3)


def test_linear_without_bias_has_only_a_weight():
    layer = nn.Linear(5, 3, bias=False)
    assert layer.bias is None
    assert [name for name, _ in layer.named_parameters()] == ["weight"]


@pytest.mark.parametrize("fan_in, init_scale", [(100, 1.0), (784, 1.0), (784, 0.1)])
def test_he_initialization_has_std_sqrt_two_over_fan_in_times_scale(fan_in, init_scale):
    layer = nn.Linear(fan_in, 200, init_scale=init_scale, rng=np.random.default_rng(0))
    expected_std = math.sqrt(2 / fan_in) * init_scale
    # with 200 * fan_in >= 20,000 samples, the sample std is within about 1% of the true one
    assert layer.weight.data.std() == pytest.approx(expected_std, rel=0.03)
    assert abs(layer.weight.data.mean()) < 0.03 * expected_std


def test_manual_seed_makes_initial_weights_repeatable():
    manual_seed(123)
    first = nn.mlp([6, 4, 2]).state_dict()
    manual_seed(123)
    second = nn.mlp([6, 4, 2]).state_dict()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])


def test_mlp_puts_leaky_relu_between_linear_layers_and_none_after_the_last():
    model = nn.mlp([784, 128, 64, 10], negative_slope=0.05)
    kinds = [type(layer).__name__ for layer in model]
    assert kinds == ["Linear", "LeakyReLU", "Linear", "LeakyReLU", "Linear"]
    assert model[1].negative_slope == 0.05
    assert model[-1].out_features == 10
    assert len(model) == 5


def test_leaky_relu_layer_passes_negative_inputs_times_the_slope():
    out = nn.LeakyReLU(0.1)(Tensor([-10.0, 10.0]))
    np.testing.assert_allclose(out.data, [-1.0, 10.0])


def test_flatten_layer_turns_images_into_rows():
    assert nn.Flatten()(Tensor(np.zeros((64, 28, 28)))).shape == (64, 784)


def test_named_parameters_use_pytorch_names():
    model = nn.mlp([4, 3, 2])
    names = [name for name, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert [tensor.name for _, tensor in model.named_parameters()] == [None] * 4  # drawing names them
    assert model.parameters() == [tensor for _, tensor in model.named_parameters()]


def test_named_parameters_of_nested_modules_join_the_paths():
    model = nn.Sequential(nn.Flatten(), nn.mlp([4, 3, 2]))
    assert [name for name, _ in model.named_parameters()] == ["1.0.weight", "1.0.bias", "1.2.weight", "1.2.bias"]


def test_a_parameter_shared_by_two_layers_is_listed_once():
    first = nn.Linear(3, 3)
    second = nn.Linear(3, 3)
    second.weight = first.weight
    model = nn.Sequential(first, second)
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias", "1.bias"]


def test_module_zero_grad_forgets_every_gradient():
    model = nn.mlp([4, 3, 2])
    model(Tensor(np.ones((1, 4)))).sum().backward()
    assert all(tensor.grad is not None for tensor in model.parameters())
    model.zero_grad()
    assert all(tensor.grad is None for tensor in model.parameters())


def test_train_and_eval_set_the_mode_of_every_layer():
    model = nn.mlp([4, 3, 2])
    assert model.eval() is model
    assert not any(module.training for module in model.modules())
    model.train()
    assert all(module.training for module in model.modules())


# ----- state dicts -------------------------------------------------------------------------------
def test_state_dict_round_trip_copies_every_parameter():
    source = nn.mlp([6, 4, 3], rng=np.random.default_rng(0))
    target = nn.mlp([6, 4, 3], rng=np.random.default_rng(1))
    target_arrays = [tensor.data for tensor in target.parameters()]
    target.load_state_dict(source.state_dict())
    for (name, loaded), (_, original) in zip(target.named_parameters(), source.named_parameters()):
        np.testing.assert_array_equal(loaded.data, original.data, err_msg=name)
    # loaded in place: an optimizer built before loading still updates the model's arrays
    assert all(tensor.data is array for tensor, array in zip(target.parameters(), target_arrays))


def test_state_dict_holds_copies_not_the_parameters_themselves():
    model = nn.mlp([4, 3, 2])
    state = model.state_dict()
    state["0.weight"][...] = 99.0
    assert not (model[0].weight.data == 99.0).any()


# ----- SGD ---------------------------------------------------------------------------------------
def test_plain_sgd_subtracts_learning_rate_times_gradient():
    weight = parameter([1.0, 2.0], grad=[0.5, -1.0])
    optim.SGD([weight], lr=0.1).step()
    np.testing.assert_allclose(weight.data, [0.95, 2.1], rtol=1e-15)


def test_sgd_with_momentum_keeps_a_running_direction_over_two_steps():
    weight = parameter([1.0], grad=[1.0])
    optimizer = optim.SGD([weight], lr=0.1, momentum=0.9)
    optimizer.step()  # buffer = 1;              weight = 1 - 0.1 * 1 = 0.9
    np.testing.assert_allclose(weight.data, [0.9], rtol=1e-15)
    weight.grad = np.array([2.0])
    optimizer.step()  # buffer = 0.9 * 1 + 2 = 2.9; weight = 0.9 - 0.1 * 2.9 = 0.61
    np.testing.assert_allclose(weight.data, [0.61], rtol=1e-14)


def test_sgd_weight_decay_adds_decay_times_weight_to_the_gradient():
    weight = parameter([2.0, -4.0], grad=[1.0, 0.0])
    optim.SGD([weight], lr=0.5, weight_decay=0.1).step()
    # gradient + 0.1 * weight = [1.2, -0.4];  weight - 0.5 * that = [1.4, -3.8]
    np.testing.assert_allclose(weight.data, [1.4, -3.8], rtol=1e-15)


def test_sgd_leaves_the_gradient_itself_alone_when_decaying():
    weight = parameter([2.0], grad=[1.0])
    optim.SGD([weight], lr=0.5, weight_decay=0.1).step()
    np.testing.assert_array_equal(weight.grad, [1.0])


def test_sgd_skips_parameters_without_a_gradient():
    with_grad = parameter([1.0], grad=[1.0])
    without_grad = parameter([1.0])
    optim.SGD([with_grad, without_grad], lr=0.5, momentum=0.9).step()
    np.testing.assert_array_equal(with_grad.data, [0.5])
    np.testing.assert_array_equal(without_grad.data, [1.0])


def test_sgd_zero_grad_forgets_the_gradients():
    weight = parameter([1.0], grad=[1.0])
    optimizer = optim.SGD([weight], lr=0.1)
    optimizer.zero_grad()
    assert weight.grad is None


def test_sgd_state_dict_round_trip_continues_the_same_momentum():
    def run(restart):
        weight = parameter([1.0, -1.0])
        optimizer = optim.SGD([weight], lr=0.1, momentum=0.9)
        for step in range(4):
            weight.grad = np.array([1.0, 2.0]) * (step + 1)
            if restart and step == 2:
                state = optimizer.state_dict()
                optimizer = optim.SGD([weight], lr=0.1, momentum=0.9)
                optimizer.load_state_dict(state)
            optimizer.step()
        return weight.data

    np.testing.assert_array_equal(run(restart=True), run(restart=False))


def test_sgd_matches_pytorch_with_momentum_and_weight_decay():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    start = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in range(4)]

    weight = parameter(start)
    optimizer = optim.SGD([weight], lr=0.05, momentum=0.9, weight_decay=0.01)
    expected = torch.tensor(start, requires_grad=True)
    torch_optimizer = torch.optim.SGD([expected], lr=0.05, momentum=0.9, weight_decay=0.01)
    for grad in grads:
        weight.grad = grad.copy()
        optimizer.step()
        expected.grad = torch.tensor(grad)
        torch_optimizer.step()
    np.testing.assert_allclose(weight.data, expected.detach().numpy(), rtol=1e-13, atol=1e-15)


# ----- clipping ----------------------------------------------------------------------------------
def test_clip_grad_value_clamps_each_element_in_place():
    weight = parameter([0.0, 0.0, 0.0], grad=[3.0, -4.0, 0.5])
    grad = weight.grad
    optim.clip_grad_value_([weight], 1.0)
    assert weight.grad is grad
    np.testing.assert_array_equal(weight.grad, [1.0, -1.0, 0.5])


def test_clip_grad_norm_returns_the_norm_before_and_scales_to_max_norm():
    first = parameter([0.0, 0.0], grad=[3.0, 0.0])
    second = parameter([[0.0]], grad=[[4.0]])
    total_norm = optim.clip_grad_norm_([first, second], max_norm=1.0)
    assert total_norm == pytest.approx(5.0, rel=1e-15)  # sqrt(3^2 + 4^2)
    np.testing.assert_allclose(first.grad, [0.6, 0.0], rtol=1e-6)  # same direction, 1/5 the length
    np.testing.assert_allclose(second.grad, [[0.8]], rtol=1e-6)
    clipped_norm = math.sqrt((first.grad**2).sum() + (second.grad**2).sum())
    assert clipped_norm == pytest.approx(1.0, rel=1e-6)


def test_clip_grad_norm_leaves_small_gradients_alone():
    weight = parameter([0.0, 0.0], grad=[0.3, 0.4])
    assert optim.clip_grad_norm_([weight], max_norm=1.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(weight.grad, [0.3, 0.4])


def test_clip_grad_norm_ignores_parameters_without_a_gradient():
    weight = parameter([0.0], grad=[2.0])
    assert optim.clip_grad_norm_([weight, parameter([5.0])], max_norm=1.0) == pytest.approx(2.0)


def test_clip_grad_norm_keeps_float32_gradients_float32():
    weight = Tensor(np.zeros(2, dtype=np.float32), requires_grad=True)
    weight.grad = np.array([30.0, 40.0], dtype=np.float32)
    optim.clip_grad_norm_([weight], max_norm=5.0)
    assert weight.grad.dtype == np.float32
    np.testing.assert_allclose(weight.grad, [3.0, 4.0], rtol=1e-6)


def test_sgd_with_clip_value_clips_before_stepping():
    weight = parameter([0.0, 0.0], grad=[10.0, -0.5])
    optim.SGD([weight], lr=1.0, clip_value=1.0).step()
    np.testing.assert_array_equal(weight.data, [-1.0, 0.5])


def test_sgd_with_clip_norm_clips_before_stepping():
    weight = parameter([0.0, 0.0], grad=[30.0, 40.0])
    optim.SGD([weight], lr=1.0, clip_norm=5.0).step()
    np.testing.assert_allclose(weight.data, [-3.0, -4.0], rtol=1e-6)


def test_clip_grad_norm_matches_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal((4, 3)) * 5, rng.standard_normal(3) * 5]
    ours = [parameter(np.zeros_like(grad), grad=grad.copy()) for grad in grads]
    theirs = [torch.zeros(grad.shape, dtype=torch.float64, requires_grad=True) for grad in grads]
    for tensor, grad in zip(theirs, grads):
        tensor.grad = torch.tensor(grad)
    total_norm = optim.clip_grad_norm_(ours, max_norm=2.0)
    expected_norm = torch.nn.utils.clip_grad_norm_(theirs, max_norm=2.0)
    assert total_norm == pytest.approx(expected_norm.item(), rel=1e-12)
    for mine, expected in zip(ours, theirs):
        np.testing.assert_allclose(mine.grad, expected.grad.numpy(), rtol=1e-12)


# ----- the Optimizer base class ------------------------------------------------------------------
class _SignDescent(optim.Optimizer):
    """A small optimizer written the way a learner would: state per parameter, step()."""

    def __init__(self, params, lr):
        super().__init__(params)
        self.lr = lr
        self.steps_taken = self.per_parameter_state("steps_taken")

    def step(self):
        for index, parameter in enumerate(self.params):
            if parameter.grad is not None:
                count = self.steps_taken[index]
                self.steps_taken[index] = np.ones_like(parameter.data) if count is None else count + 1
                parameter.data -= self.lr * np.sign(parameter.grad)


def test_an_optimizer_subclass_gets_zero_grad_and_a_state_dict_that_round_trips():
    used, unused = Tensor([1.0, -2.0], requires_grad=True), Tensor([5.0], requires_grad=True)
    optimizer = _SignDescent([used, unused], lr=0.5)
    (used * used).sum().backward()
    optimizer.step()
    np.testing.assert_array_equal(used.data, [0.5, -1.5])
    state = optimizer.state_dict()
    assert list(state) == ["steps_taken.0"]  # the unused parameter has no state yet
    optimizer.zero_grad()
    assert used.grad is None and unused.grad is None

    restored = _SignDescent([used, unused], lr=0.5)
    restored.load_state_dict(state)
    np.testing.assert_array_equal(restored.steps_taken[0], [1.0, 1.0])
    assert restored.steps_taken[1] is None and restored.steps_taken is restored.state["steps_taken"]
    with pytest.raises(KeyError, match="unexpected entry 'momentum_buffer.0'"):
        restored.load_state_dict({"momentum_buffer.0": np.zeros(2, dtype=np.float32)})


def test_sgd_is_an_optimizer_and_keeps_its_momentum_buffer_keys():
    weight = Tensor([1.0, 2.0], requires_grad=True)
    optimizer = optim.SGD([weight], lr=0.1, momentum=0.9)
    assert isinstance(optimizer, optim.Optimizer)
    (weight * weight).sum().backward()
    optimizer.step()
    assert list(optimizer.state_dict()) == ["momentum_buffer.0"]
    np.testing.assert_array_equal(optimizer.state_dict()["momentum_buffer.0"], [2.0, 4.0])


def test_the_optimizer_base_needs_a_step_and_some_parameters():
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Optimizer([])
    with pytest.raises(NotImplementedError, match="must define step"):
        optim.Optimizer([Tensor([1.0], requires_grad=True)]).step()
