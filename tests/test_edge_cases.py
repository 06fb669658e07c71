"""Inputs a user can hand the engine on purpose or by accident: each has defined behaviour
(documented in docs/reliability.md) or a clear error, never a traceback from numpy's depths."""

import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_mnist as tg
from tinygrad_mnist import Tensor, functional as F, nn


@pytest.mark.parametrize(
    "data, what",
    [
        ("3", "string"),
        (b"3", "string"),
        (["1", "2"], "strings"),
        ([object()], "Python objects"),
        ([1 + 2j], "complex numbers"),
        (None, "None"),
    ],
)
def test_non_numeric_data_is_refused_with_a_type_error_naming_what_it_got(data, what):
    with pytest.raises(TypeError, match=what):
        Tensor(data)


def test_an_operator_with_a_non_numeric_other_side_is_a_type_error():
    with pytest.raises(TypeError, match="string"):
        Tensor([1.0]) + "a"
    with pytest.raises(TypeError, match="None"):
        Tensor([1.0]) * None


def test_ragged_lists_are_a_value_error_that_says_rows_must_match():
    with pytest.raises(ValueError, match="rectangular"):
        Tensor([[1, 2], [3]])


def test_an_empty_tensor_flows_forward_and_backward_with_empty_gradients():
    empty = Tensor(np.zeros((0, 3), dtype=np.float32), requires_grad=True)
    out = nn.Linear(3, 2, rng=np.random.default_rng(0))(empty)
    assert out.shape == (0, 2)
    total = out.sum()
    assert total.item() == 0.0
    total.backward()
    assert empty.grad.shape == (0, 3) and empty.grad.dtype == np.float32


def test_mean_of_nothing_is_nan_like_numpy_and_pytorch():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert np.isnan(Tensor(np.zeros((0,))).mean().item())


def test_max_over_an_axis_of_size_0_is_a_value_error_but_over_another_axis_is_empty():
    with pytest.raises(ValueError, match="axis of size 0"):
        Tensor(np.zeros((0,))).max()
    with pytest.raises(ValueError, match="axis of size 0"):
        Tensor(np.zeros((3, 0))).max(axis=1)
    assert Tensor(np.zeros((0, 3))).max(axis=1).shape == (0,)


def test_nan_inputs_propagate_to_the_output_and_to_the_gradient():
    x = Tensor([1.0, np.nan, 2.0], requires_grad=True)
    y = (x * 3).sum()
    assert np.isnan(y.item())
    y.backward()
    assert x.grad.tolist() == [3.0, 3.0, 3.0]  # d(3x)/dx does not depend on x: still finite
    logits = Tensor([[np.nan, 1.0], [0.0, 1.0]], requires_grad=True)
    loss = F.cross_entropy(logits, [0, 1])
    assert np.isnan(loss.item())


def test_detect_anomaly_turns_a_nan_input_into_an_error_at_the_first_op():
    with tg.detect_anomaly(), pytest.raises(tg.AnomalyError) as caught:
        (Tensor([1.0, np.nan]) * 2).sum()
    assert caught.value.op == "Mul" and caught.value.phase == "forward"
    assert caught.value.input_shapes == ((2,), ())


def test_detect_anomaly_names_the_exploding_layer_of_a_network():
    model = nn.mlp([4, 8, 3], rng=np.random.default_rng(0))
    model[0].weight.data[...] = 1e38  # a layer that overflows float32
    x = Tensor(np.ones((2, 4), dtype=np.float32))
    with warnings.catch_warnings(), tg.detect_anomaly(), pytest.raises(tg.AnomalyError, match=r"LinearOp\.forward produced Inf.*\(2, 4\), \(8, 4\), \(8,\)"):
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's overflow warning; the error says more
        F.cross_entropy(model(x), [0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        loss = F.cross_entropy(model(x), [0, 1])  # without the mode: no error, just a NaN loss
    assert not np.isfinite(loss.item())


def test_detect_anomaly_catches_a_gradient_that_blows_up_only_backward():
    x = Tensor([0.0, 4.0], requires_grad=True)
    y = (x**0.5).sum()  # forward is finite: sqrt(0) = 0; its derivative at 0 is infinite
    with tg.detect_anomaly(), pytest.raises(tg.AnomalyError) as caught:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            y.backward()
    assert caught.value.op == "Pow" and caught.value.phase == "backward"


@settings(max_examples=40, deadline=None)
@given(
    left=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4),
    right=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4),
)
def test_elementwise_ops_either_broadcast_like_numpy_or_raise_a_value_error_naming_both_shapes(left, right):
    a = Tensor(np.ones(left, dtype=np.float32))
    b = Tensor(np.ones(right, dtype=np.float32))
    try:
        expected = np.broadcast_shapes(left, right)
    except ValueError:
        for operation in (lambda: a + b, lambda: a - b, lambda: a * b, lambda: a / b):
            with pytest.raises(ValueError, match=rf"{re.escape(str(left))} and {re.escape(str(right))}"):
                operation()
    else:
        assert (a + b).shape == expected and (a * b).shape == expected


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=5), min_size=2, max_size=4))
def test_matmul_of_mismatched_matrices_raises_a_value_error_with_both_shapes(sizes):
    rows, inner, other_inner, cols = (sizes + [3, 3])[:4]
    a = Tensor(np.ones((rows, inner)))
    b = Tensor(np.ones((other_inner, cols)))
    if inner == other_inner:
        assert (a @ b).shape == (rows, cols)
    else:
        with pytest.raises(ValueError, match=re.escape(f"{(rows, inner)} and {(other_inner, cols)}")):
            a @ b



# ----- 0-d tensors: axis 0 and -1 mean "the whole tensor", as in PyTorch --------------------------
@pytest.mark.parametrize("axis", [0, -1])
@pytest.mark.parametrize(
    "method, value, grad",
    [("sum", 2.0, 1.0), ("mean", 2.0, 1.0), ("max", 2.0, 1.0), ("softmax", 1.0, 0.0), ("log_softmax", 0.0, 0.0)],
)
def test_a_0d_tensor_reduces_and_softmaxes_over_axis_0_or_minus_1_like_pytorch(method, value, grad, axis):
    x = Tensor(2.0, requires_grad=True)
    out = getattr(x, method)(axis)
    out.backward()
    assert out.shape == () and out.item() == value
    assert x.grad.shape == () and x.grad.item() == grad


def test_a_0d_tensor_still_refuses_axis_1():
    with pytest.raises(ValueError, match=r"valid: -1\.\.0"):
        Tensor(2.0).sum(1)


def test_0d_reductions_and_softmax_match_torch():
    torch = pytest.importorskip("torch")
    for method, torch_method in [("sum", "sum"), ("mean", "mean"), ("max", "amax"), ("softmax", "softmax"), ("log_softmax", "log_softmax")]:
        for axis in (0, -1):
            x, x_torch = Tensor(3.0, requires_grad=True, dtype="float64"), torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
            out, out_torch = getattr(x, method)(axis), getattr(x_torch, torch_method)(axis)
            out.backward()
            out_torch.backward()
            assert (out.item(), x.grad.item()) == (out_torch.item(), x_torch.grad.item()), (method, axis)


# ----- number ** tensor -------------------------------------------------------------------------
def test_a_negative_base_to_whole_powers_gives_the_signed_values():
    np.testing.assert_array_equal(((-2) ** Tensor([2.0, 3.0])).data, [4.0, -8.0])
    np.testing.assert_array_equal(((-0.5) ** Tensor([-1.0, 0.0, 1.0])).data, [-2.0, 1.0, -0.5])


def test_a_negative_base_to_a_fractional_power_or_with_a_gradient_is_a_clear_error_not_nan():
    with pytest.raises(ValueError, match=r"\(-2\) \*\* x is not a real number for fractional x"):
        (-2) ** Tensor([2.5])
    with pytest.raises(ValueError, match="no real gradient"):
        (-2) ** Tensor([2.0, 3.0], requires_grad=True)  # d/dx (-2)^x is not real (PyTorch: NaN)


def test_zero_to_a_power_gives_pytorchs_values_and_gradients():
    x = Tensor([-1.0, 0.0, 2.0], requires_grad=True, dtype="float64")
    out = 0 ** x
    out.sum().backward()
    np.testing.assert_array_equal(out.data, [np.inf, 1.0, 0.0])
    np.testing.assert_array_equal(x.grad, [-np.inf, 0.0, 0.0])  # never NaN


def test_a_positive_base_to_a_power_has_value_and_gradient_base_to_x_times_ln_base():
    x = Tensor([-1.0, 0.0, 3.0], requires_grad=True, dtype="float64")
    out = 2 ** x
    out.sum().backward()
    np.testing.assert_array_equal(out.data, [0.5, 1.0, 8.0])
    np.testing.assert_allclose(x.grad, np.array([0.5, 1.0, 8.0]) * np.log(2), rtol=1e-15)
    assert (2 ** Tensor([1.0])).dtype == np.float32


@pytest.mark.parametrize("base", [0.0, 0.5, 2.0, -2.0])
def test_number_to_the_power_of_a_tensor_matches_torch(base):
    torch = pytest.importorskip("torch")
    values = [-1.0, 0.0, 1.0, 2.0, 3.0] if base < 0 else [-1.5, -1.0, 0.0, 1.0, 2.5]
    x = Tensor(values, requires_grad=base >= 0, dtype="float64")
    x_torch = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    out, out_torch = base**x, base**x_torch
    np.testing.assert_array_equal(out.data, out_torch.detach().numpy())
    if base >= 0:  # a negative base's gradient is NaN in PyTorch, and an error here
        out.sum().backward()
        out_torch.sum().backward()
        np.testing.assert_allclose(x.grad, x_torch.grad.numpy(), rtol=1e-15)


# ----- indexing with tensors --------------------------------------------------------------------
def test_an_index_tensor_with_a_fractional_value_is_an_index_error_not_truncated():
    with pytest.raises(IndexError, match="whole numbers"):
        Tensor([1.0, 2.0, 3.0])[Tensor(1.1)]
    with pytest.raises(IndexError, match="whole numbers"):
        Tensor([1.0, 2.0, 3.0])[Tensor([0.0, np.nan])]
    assert Tensor([1.0, 2.0, 3.0])[Tensor(1.0)].item() == 2.0


def test_an_integer_mixed_with_an_index_array_orders_axes_as_numpy_does():
    # numpy (and so this engine) puts the axes of separated advanced indices first: (2, 3) here,
    # where PyTorch gives (3, 2). docs/api.md says so where indexing is described.
    x = Tensor(np.arange(24.0).reshape(2, 3, 4), requires_grad=True)
    out = x[0, :, [0, 1]]
    assert out.shape == (2, 3)
    np.testing.assert_array_equal(out.data, np.arange(24.0).reshape(2, 3, 4)[0, :, [0, 1]])
    out.sum().backward()
    assert x.grad.sum() == 6 and x.grad[0, :, :2].all()
