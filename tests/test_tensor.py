"""What a Tensor is: the data it accepts, the dtype it keeps, and what it tells you about itself.

The dtype rule in one line: float32 and float64 arrays keep their dtype; everything else numeric
becomes float32; and nothing in the engine quietly turns float32 into float64.
"""

import numpy as np
import pytest

import tinygrad_mnist.functional as F
from tinygrad_mnist import Tensor, nn, optim


# ----- what data becomes -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_arrays_keep_their_dtype_and_are_not_copied(dtype):
    array = np.ones((2, 3), dtype=dtype)
    tensor = Tensor(array)
    assert tensor.dtype == dtype
    assert tensor.data is array


@pytest.mark.parametrize(
    "data",
    [[1, 2, 3], [[1.5, 2.5]], 3, 2.5, np.arange(3), np.array([1, 2], dtype=np.uint8), np.float16(1.5)],
    ids=["int list", "float list", "int", "python float", "int array", "uint8 array", "float16"],
)
def test_lists_numbers_and_other_arrays_become_float32(data):
    tensor = Tensor(data)
    assert tensor.dtype == np.float32
    np.testing.assert_array_equal(tensor.data, np.asarray(data, dtype=np.float32))


@pytest.mark.parametrize("data", [True, [True, False], np.array([False, True])], ids=["bool", "bool list", "bool array"])
def test_bools_become_a_bool_tensor_as_in_pytorch(data):
    tensor = Tensor(data)
    assert tensor.dtype == np.bool_ and not tensor.requires_grad
    np.testing.assert_array_equal(tensor.data, np.asarray(data))


def test_numpy_float_scalars_keep_their_dtype():
    assert Tensor(np.float64(1.5)).dtype == np.float64
    assert Tensor(np.float32(1.5)).dtype == np.float32


def test_dtype_argument_forces_the_dtype():
    assert Tensor([1, 2], dtype="float64").dtype == np.float64
    assert Tensor(np.ones(2, dtype=np.float64), dtype=np.float32).dtype == np.float32


@pytest.mark.parametrize("data", ["abc", b"abc", ["a", "b"], [1 + 2j], np.array([1j]), object(), None, [object()]])
def test_strings_objects_and_complex_numbers_are_refused(data):
    with pytest.raises(TypeError, match="Tensor data must be"):
        Tensor(data)


def test_a_tensor_of_a_tensor_shares_its_data():
    inner = Tensor(np.ones(3))
    outer = Tensor(inner)
    assert outer.data is inner.data
    assert not outer.requires_grad


# ----- what a tensor tells you -------------------------------------------------------------------
def test_shape_ndim_size_and_len_describe_the_data():
    tensor = Tensor(np.zeros((2, 3, 4)))
    assert (tensor.shape, tensor.ndim, tensor.size, len(tensor)) == ((2, 3, 4), 3, 24, 2)


def test_item_gives_a_python_float():
    value = Tensor([[2.5]]).item()
    assert value == 2.5 and type(value) is float


def test_numpy_returns_the_data_itself():
    tensor = Tensor(np.arange(3.0))
    assert tensor.numpy() is tensor.data


def test_user_tensors_are_leaves_and_op_results_are_not():
    x = Tensor([1.0], requires_grad=True)
    assert x.is_leaf
    assert not (x * 2).is_leaf


def test_repr_shows_values_dtype_and_the_op_that_made_it():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True, name="x")
    assert repr(x) == "Tensor([1., 2.], dtype=float64, requires_grad=True, name='x')"
    assert repr(Tensor([1.0, 2.0]) * x) == "Tensor([1., 4.], dtype=float64, op=Mul)"


# ----- float32 stays float32 ---------------------------------------------------------------------
@pytest.mark.parametrize("scalar", [2, 2.5, np.float64(2.5), np.int64(3)])
def test_scalars_do_not_upcast_float32(scalar):
    x = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    for result in (x + scalar, scalar + x, x - scalar, scalar - x, x * scalar, scalar * x, x / scalar, scalar / x):
        assert result.dtype == np.float32
    assert (x**scalar).dtype == np.float32


def test_a_float64_array_does_not_upcast_a_float32_tensor():
    x = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    assert (np.ones(3) + x).dtype == np.float32  # a constant takes the dtype of the tensor
    assert (x * np.ones(3)).dtype == np.float32


def _float32(rng, *shape):
    return Tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)


FLOAT32_OPS = {
    "add": lambda rng: _float32(rng, 3, 1) + _float32(rng, 4),
    "sub": lambda rng: _float32(rng, 3, 1) - _float32(rng, 4),
    "mul": lambda rng: _float32(rng, 3, 1) * _float32(rng, 4),
    "div": lambda rng: _float32(rng, 3, 1) / (_float32(rng, 4) + 5),
    "neg": lambda rng: -_float32(rng, 3),
    "pow": lambda rng: _float32(rng, 3) ** 3,
    "matmul": lambda rng: _float32(rng, 2, 3) @ _float32(rng, 3, 4),
    "sum": lambda rng: _float32(rng, 2, 3).sum(axis=1),
    "mean": lambda rng: _float32(rng, 2, 3).mean(axis=0),
    "max": lambda rng: _float32(rng, 2, 3).max(axis=1),
    "exp": lambda rng: _float32(rng, 3).exp(),
    "log": lambda rng: (_float32(rng, 3) * 0 + 2).log(),
    "relu": lambda rng: _float32(rng, 3).relu(),
    "leaky_relu": lambda rng: _float32(rng, 3).leaky_relu(0.1),
    "tanh": lambda rng: _float32(rng, 3).tanh(),
    "sigmoid": lambda rng: _float32(rng, 3).sigmoid(),
    "reshape": lambda rng: _float32(rng, 2, 3).reshape(3, 2),
    "transpose": lambda rng: _float32(rng, 2, 3).T,
    "index": lambda rng: _float32(rng, 4)[np.array([0, 0, 2])],
    "softmax": lambda rng: _float32(rng, 2, 3).softmax(),
    "log_softmax": lambda rng: _float32(rng, 2, 3).log_softmax(),
    "linear": lambda rng: F.linear(_float32(rng, 2, 3), _float32(rng, 4, 3), _float32(rng, 4)),
    "cross_entropy": lambda rng: F.cross_entropy(_float32(rng, 2, 3), [0, 2]),
    "cross_entropy_probabilities": lambda rng: F.cross_entropy(_float32(rng, 2, 3), _float32(rng, 2, 3)),
}


@pytest.mark.parametrize("make", FLOAT32_OPS.values(), ids=FLOAT32_OPS.keys())
def test_every_op_returns_float32_outputs_and_backward_gradients_for_float32_inputs(make):
    output = make(np.random.default_rng(0))
    assert output.dtype == np.float32
    # call the op's own backward: the engine would cast a float64 gradient back to float32, which
    # hides the upcast but still pays for it
    ctx = output.grad_fn
    grads = ctx.function.backward(ctx, np.ones_like(output.data))
    for grad in grads if isinstance(grads, tuple) else (grads,):
        assert grad is None or np.asarray(grad).dtype == np.float32


def test_a_float32_mlp_training_step_stays_float32_everywhere():
    rng = np.random.default_rng(0)
    model = nn.mlp([20, 16, 10], rng=rng)
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, clip_norm=1.0)
    images = Tensor(rng.random((8, 20), dtype=np.float32))
    labels = rng.integers(0, 10, 8)
    for _ in range(2):  # the second step uses the momentum buffers
        optimizer.zero_grad()
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        optimizer.step()
        assert logits.dtype == np.float32 and loss.dtype == np.float32
        for name, parameter in model.named_parameters():
            assert parameter.dtype == np.float32, name
            assert parameter.grad.dtype == np.float32, name
    assert all(buffer.dtype == np.float32 for buffer in optimizer.momentum_buffers)


def test_float64_stays_float64():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    loss = F.cross_entropy((x * 2.0).exp() @ Tensor(np.ones((3, 4))), [0, 1])
    loss.backward()
    assert loss.dtype == np.float64 and x.grad.dtype == np.float64


# ----- detach ------------------------------------------------------------------------------------
def test_detach_shares_the_data_but_not_the_graph():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    detached = y.detach()
    assert detached.data is y.data
    assert not detached.requires_grad and detached.is_leaf


def test_a_numpy_float64_leaky_relu_slope_keeps_float32_float32():
    x = Tensor(np.array([-1.0, 2.0], dtype=np.float32), requires_grad=True)
    out = x.leaky_relu(np.float64(0.1))
    assert out.dtype == np.float32
    out.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, [0.1, 1.0], rtol=1e-6)


def test_a_custom_op_returning_ints_or_float16_gives_a_tensor_of_its_input_dtype():
    from tinygrad_mnist import Function

    class Rounded(Function):
        @staticmethod
        def forward(ctx, x):
            return np.round(x).astype(np.int64)

    class Half(Function):
        @staticmethod
        def forward(ctx, x):
            return x.astype(np.float16)

    x = Tensor(np.array([1.4, 2.6], dtype=np.float64))
    assert Rounded.apply(x).dtype == np.float64 and Rounded.apply(x).data.tolist() == [1.0, 3.0]
    assert Half.apply(Tensor([1.5])).dtype == np.float32
