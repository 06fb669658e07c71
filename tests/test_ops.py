"""Every op: forward against numpy, backward against central differences, float32 kept float32.

Most tests are properties over shapes drawn by hypothesis (see helpers.check_op); the ones with
known numbers show a single rule at work (ties in max, repeated indices, the slope of leaky ReLU).
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_mnist.functional as F
from tinygrad_mnist import Function, GradcheckError, Tensor, gradcheck
from helpers import PROPERTY, broadcast_pairs, check_op, nonscalar_shapes, random_array, seeds, shapes, shapes_and_axes


def softmax_reference(x, axis=-1):
    exp = np.exp(x - x.max(axis=axis, keepdims=True))
    return exp / exp.sum(axis=axis, keepdims=True)


def log_softmax_reference(x, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def cross_entropy_reference(logits, labels):
    return -log_softmax_reference(logits, axis=1)[np.arange(len(labels)), labels].mean()


# ----- arithmetic --------------------------------------------------------------------------------
@PROPERTY
@given(pair=broadcast_pairs, seed=seeds)
def test_add_matches_numpy_and_central_differences_when_broadcasting(pair, seed):
    check_op(lambda a, b: a + b, *pair, reference=np.add, seed=seed)


@PROPERTY
@given(pair=broadcast_pairs, seed=seeds)
def test_sub_matches_numpy_and_central_differences_when_broadcasting(pair, seed):
    check_op(lambda a, b: a - b, *pair, reference=np.subtract, seed=seed)


@PROPERTY
@given(pair=broadcast_pairs, seed=seeds)
def test_mul_matches_numpy_and_central_differences_when_broadcasting(pair, seed):
    check_op(lambda a, b: a * b, *pair, reference=np.multiply, seed=seed)


@PROPERTY
@given(pair=broadcast_pairs, seed=seeds)
def test_div_matches_numpy_and_central_differences_when_broadcasting(pair, seed):
    rng = np.random.default_rng(seed)
    numerator = random_array(pair[0], rng)
    denominator = random_array(pair[1], rng, "nonzero")  # keep away from the pole at 0
    check_op(lambda a, b: a / b, numerator, denominator, reference=np.divide, seed=seed)


@PROPERTY
@given(shape=shapes, seed=seeds)
def test_neg_matches_numpy_and_central_differences(shape, seed):
    check_op(lambda x: -x, shape, reference=np.negative, seed=seed)


@PROPERTY
@given(shape=shapes, exponent=st.sampled_from([0, 1, 2, 3, -1, -2]), seed=seeds)
def test_pow_with_whole_exponents_matches_numpy_for_either_sign_of_base(shape, exponent, seed):
    check_op(lambda x: x**exponent, shape, reference=lambda x: x**exponent, values="nonzero", seed=seed)


@PROPERTY
@given(shape=shapes, exponent=st.sampled_from([0.5, -0.5, 1.5, 2.5, -1.5]), seed=seeds)
def test_pow_with_fractional_exponents_matches_numpy_for_positive_base(shape, exponent, seed):
    check_op(lambda x: x**exponent, shape, reference=lambda x: x**exponent, values="positive", seed=seed)


def test_pow_gives_p_times_x_to_the_p_minus_one():
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x**3).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 12.0, 27.0])


def test_pow_zero_has_zero_gradient_even_at_zero():
    x = Tensor([0.0, 2.0], requires_grad=True)
    (x**0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0])  # not 0 * 0^-1 = NaN


# ----- matmul ------------------------------------------------------------------------------------
MATMUL_CASES = {
    "matrix @ matrix": ((3, 4), (4, 2)),
    "vector @ matrix": ((4,), (4, 2)),
    "matrix @ vector": ((3, 4), (4,)),
    "vector @ vector": ((4,), (4,)),
    "batch @ batch": ((2, 3, 4), (2, 4, 5)),
    "batch @ matrix": ((2, 3, 4), (4, 5)),
    "matrix @ batch": ((3, 4), (2, 4, 5)),
    "broadcast batches": ((2, 1, 3, 4), (5, 4, 2)),
    "batch @ vector": ((2, 3, 4), (4,)),
    "vector @ batch": ((4,), (2, 4, 3)),
}


@pytest.mark.parametrize("left, right", MATMUL_CASES.values(), ids=MATMUL_CASES.keys())
def test_matmul_matches_numpy_and_central_differences(left, right):
    output = check_op(lambda a, b: a @ b, left, right, reference=np.matmul)
    assert output.shape == np.matmul(np.ones(left), np.ones(right)).shape


@st.composite
def matmul_shapes(draw):
    """Two shapes matmul accepts: vectors, matrices, or stacks with broadcasting leading axes."""
    rows, inner, columns = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    batches = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3)).input_shapes
    left = draw(st.sampled_from([(inner,), batches[0] + (rows, inner)]))
    right = draw(st.sampled_from([(inner,), batches[1] + (inner, columns)]))
    return left, right


@PROPERTY
@given(pair=matmul_shapes(), seed=seeds)
def test_matmul_matches_numpy_and_central_differences_for_any_valid_shapes(pair, seed):
    check_op(lambda a, b: a @ b, *pair, reference=np.matmul, seed=seed)


def test_matmul_gradients_are_grad_times_transposes():
    a = Tensor([[1.0, 2.0]], requires_grad=True)  # (1, 2)
    b = Tensor([[3.0], [4.0]], requires_grad=True)  # (2, 1)
    (a @ b).backward(np.array([[10.0]]))
    np.testing.assert_array_equal(a.grad, [[30.0, 40.0]])  # grad_out @ b^T
    np.testing.assert_array_equal(b.grad, [[10.0], [20.0]])  # a^T @ grad_out


# ----- reductions --------------------------------------------------------------------------------
@PROPERTY
@given(shape_and_axis=shapes_and_axes(), keepdims=st.booleans(), seed=seeds)
def test_sum_matches_numpy_and_central_differences_for_any_axis(shape_and_axis, keepdims, seed):
    shape, axis = shape_and_axis
    check_op(
        lambda x: x.sum(axis=axis, keepdims=keepdims), shape, reference=lambda x: x.sum(axis=axis, keepdims=keepdims), seed=seed
    )


@PROPERTY
@given(shape_and_axis=shapes_and_axes(), keepdims=st.booleans(), seed=seeds)
def test_mean_matches_numpy_and_central_differences_for_any_axis(shape_and_axis, keepdims, seed):
    shape, axis = shape_and_axis
    check_op(
        lambda x: x.mean(axis=axis, keepdims=keepdims), shape, reference=lambda x: x.mean(axis=axis, keepdims=keepdims), seed=seed
    )


@PROPERTY
@given(shape_and_axis=shapes_and_axes(), keepdims=st.booleans(), seed=seeds)
def test_max_matches_numpy_and_central_differences_without_ties(shape_and_axis, keepdims, seed):
    shape, axis = shape_and_axis
    check_op(
        lambda x: x.max(axis=axis, keepdims=keepdims),
        shape,
        reference=lambda x: x.max(axis=axis, keepdims=keepdims),
        values="distinct",
        seed=seed,
    )


def test_mean_spreads_the_gradient_evenly():
    x = Tensor(np.zeros((2, 4)), requires_grad=True)
    x.mean(axis=1).backward(np.array([4.0, 8.0]))
    np.testing.assert_array_equal(x.grad, [[1.0] * 4, [2.0] * 4])


def test_max_sends_the_gradient_only_to_the_maximum():
    x = Tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]], requires_grad=True)
    x.max(axis=1).backward(np.array([10.0, 20.0]))
    np.testing.assert_array_equal(x.grad, [[0.0, 10.0, 0.0], [20.0, 0.0, 0.0]])


def test_max_splits_the_gradient_evenly_among_ties_along_an_axis():
    x = Tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]], requires_grad=True)
    out = x.max(axis=1)
    np.testing.assert_array_equal(out.data, [3.0, 2.0])
    out.backward(np.array([1.0, 6.0]))
    np.testing.assert_array_equal(x.grad, [[0.0, 0.5, 0.5], [2.0, 2.0, 2.0]])


def test_max_splits_the_gradient_evenly_among_ties_over_all_axes():
    x = Tensor([[4.0, 1.0], [4.0, 4.0]], requires_grad=True)
    x.max().backward()
    np.testing.assert_allclose(x.grad, [[1 / 3, 0.0], [1 / 3, 1 / 3]])


def test_max_with_keepdims_splits_ties_over_a_tuple_of_axes():
    x = Tensor(np.array([[[1.0, 9.0], [9.0, 0.0]], [[2.0, 2.0], [2.0, 2.0]]]), requires_grad=True)  # (2, 2, 2)
    out = x.max(axis=(1, 2), keepdims=True)
    assert out.shape == (2, 1, 1)
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, [[[0.0, 0.5], [0.5, 0.0]], [[0.25, 0.25], [0.25, 0.25]]])


def test_max_splits_ties_exactly_like_pytorch_amax():
    torch = pytest.importorskip("torch")
    values = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [5.0, -1.0, 5.0, 5.0]])
    upstream = np.array([1.0, 2.0, 3.0])
    x = Tensor(values, requires_grad=True)
    x.max(axis=1).backward(upstream)
    expected = torch.tensor(values, requires_grad=True)
    expected.amax(dim=1).backward(torch.tensor(upstream))
    np.testing.assert_allclose(x.grad, expected.grad.numpy(), rtol=1e-15)


# ----- elementwise -------------------------------------------------------------------------------
@PROPERTY
@given(shape=shapes, seed=seeds)
def test_exp_matches_numpy_and_central_differences(shape, seed):
    check_op(lambda x: x.exp(), shape, reference=np.exp, seed=seed)


@PROPERTY
@given(shape=shapes, seed=seeds)
def test_log_matches_numpy_and_central_differences_for_positive_inputs(shape, seed):
    check_op(lambda x: x.log(), shape, reference=np.log, values="positive", seed=seed)


@PROPERTY
@given(shape=shapes, seed=seeds)
def test_relu_matches_numpy_and_central_differences_away_from_zero(shape, seed):
    check_op(lambda x: x.relu(), shape, reference=lambda x: np.maximum(x, 0), values="nonzero", seed=seed)


@PROPERTY
@given(shape=shapes, slope=st.sampled_from([0.01, 0.2, 0.5]), seed=seeds)
def test_leaky_relu_matches_numpy_and_central_differences_away_from_zero(shape, slope, seed):
    check_op(
        lambda x: x.leaky_relu(slope), shape, reference=lambda x: np.where(x > 0, x, slope * x), values="nonzero", seed=seed
    )


@PROPERTY
@given(shape=shapes, seed=seeds)
def test_tanh_matches_numpy_and_central_differences(shape, seed):
    check_op(lambda x: x.tanh(), shape, reference=np.tanh, seed=seed)


@PROPERTY
@given(shape=shapes, seed=seeds)
def test_sigmoid_matches_numpy_and_central_differences(shape, seed):
    check_op(lambda x: x.sigmoid(), shape, reference=lambda x: 1 / (1 + np.exp(-x)), seed=seed)


def test_relu_passes_the_gradient_above_zero_and_nothing_below():
    x = Tensor([-2.0, -0.5, 0.5, 3.0], requires_grad=True)
    x.relu().backward(np.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 3.0, 4.0])


def test_leaky_relu_passes_slope_times_grad_below_zero():
    x = Tensor([-2.0, -0.5, 0.5, 3.0], requires_grad=True)
    out = x.leaky_relu(0.1)
    np.testing.assert_allclose(out.data, [-0.2, -0.05, 0.5, 3.0])
    out.backward(np.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_allclose(x.grad, [0.1, 0.2, 3.0, 4.0])


def test_sigmoid_and_its_gradient_stay_finite_for_huge_inputs():
    x = Tensor([-1000.0, 0.0, 1000.0], requires_grad=True)
    out = x.sigmoid()
    np.testing.assert_array_equal(out.data, [0.0, 0.5, 1.0])
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.25, 0.0])


def test_exp_gradient_is_exp_itself():
    x = Tensor([0.0, 1.0, 2.0], requires_grad=True)
    x.exp().sum().backward()
    np.testing.assert_allclose(x.grad, np.exp([0.0, 1.0, 2.0]), rtol=1e-6)


# ----- shapes ------------------------------------------------------------------------------------
@st.composite
def shapes_and_new_shapes(draw):
    """A shape and another with the same number of elements, maybe written with a -1."""
    shape = draw(shapes)
    new_shape = list(draw(st.permutations(shape)))
    new_shape.insert(draw(st.integers(0, len(new_shape))), 1)
    if draw(st.booleans()):
        new_shape[draw(st.integers(0, len(new_shape) - 1))] = -1  # numpy works this one out
    return shape, tuple(new_shape)


@PROPERTY
@given(shape_and_new_shape=shapes_and_new_shapes(), seed=seeds)
def test_reshape_matches_numpy_and_central_differences(shape_and_new_shape, seed):
    shape, new_shape = shape_and_new_shape
    check_op(lambda x: x.reshape(new_shape), shape, reference=lambda x: x.reshape(new_shape), seed=seed)


@st.composite
def shapes_and_permutations(draw):
    shape = draw(nonscalar_shapes)
    return shape, tuple(draw(st.permutations(range(len(shape)))))


@PROPERTY
@given(shape_and_axes=shapes_and_permutations(), seed=seeds)
def test_transpose_matches_numpy_and_central_differences(shape_and_axes, seed):
    shape, axes = shape_and_axes
    check_op(lambda x: x.transpose(axes), shape, reference=lambda x: x.transpose(axes), seed=seed)


def test_transpose_without_axes_reverses_them():
    check_op(lambda x: x.T, (2, 3, 4), reference=lambda x: x.T)


def test_transpose_accepts_negative_axes_like_numpy():
    check_op(lambda x: x.transpose(-1, 0, -2), (2, 3, 4), reference=lambda x: x.transpose(-1, 0, -2))


def test_flatten_merges_every_axis_after_the_first():
    output = check_op(lambda x: x.flatten(), (2, 3, 4), reference=lambda x: x.reshape(2, 12))
    assert output.shape == (2, 12)


INDEX_CASES = {
    "an integer": 1,
    "a negative integer pair": (-1, 2),
    "a slice": slice(1, 3),
    "a reversed strided slice": (slice(None), slice(None, None, -2)),
    "an ellipsis": (Ellipsis, 1),
    "an integer array": np.array([2, 0]),
    "repeated integers": np.array([0, 2, 0, 0]),
    "repeated integer pairs": (np.array([0, 0, 1]), np.array([1, 1, 3])),
    "a slice and a list": (slice(1, None), [3, 3, 0]),
}


@pytest.mark.parametrize("index", INDEX_CASES.values(), ids=INDEX_CASES.keys())
def test_index_matches_numpy_and_central_differences(index):
    check_op(lambda x: x[index], (3, 4), reference=lambda x: x[index])


def test_index_takes_a_tensor_of_indices():
    check_op(lambda x: x[Tensor([2, 2, 1])], (3, 4), reference=lambda x: x[[2, 2, 1]])


def test_index_adds_up_the_gradient_of_an_element_picked_twice():
    x = Tensor([10.0, 20.0, 30.0], requires_grad=True)
    picked = x[np.array([2, 0, 2, 2])]
    np.testing.assert_array_equal(picked.data, [30.0, 10.0, 30.0, 30.0])
    picked.backward(np.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(x.grad, [2.0, 0.0, 8.0])


# ----- softmax and friends -----------------------------------------------------------------------
@st.composite
def shapes_and_one_axis(draw):
    shape = draw(nonscalar_shapes)
    return shape, draw(st.integers(-len(shape), len(shape) - 1))


@PROPERTY
@given(shape_and_axis=shapes_and_one_axis(), seed=seeds)
def test_softmax_matches_numpy_and_central_differences(shape_and_axis, seed):
    shape, axis = shape_and_axis
    check_op(lambda x: x.softmax(axis), shape, reference=lambda x: softmax_reference(x, axis), seed=seed)


@PROPERTY
@given(shape_and_axis=shapes_and_one_axis(), seed=seeds)
def test_log_softmax_matches_numpy_and_central_differences(shape_and_axis, seed):
    shape, axis = shape_and_axis
    check_op(lambda x: x.log_softmax(axis), shape, reference=lambda x: log_softmax_reference(x, axis), seed=seed)


def test_softmax_rows_sum_to_one_and_stay_finite_for_huge_logits():
    x = Tensor([[1000.0, 0.0, -1000.0], [5.0, 5.0, 5.0]])
    out = F.softmax(x)
    np.testing.assert_allclose(out.data.sum(axis=1), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(out.data, [[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)
    np.testing.assert_allclose(F.log_softmax(x).data[0], [0.0, -1000.0, -2000.0])


# ----- linear ------------------------------------------------------------------------------------
LINEAR_CASES = {
    "2-D input": ((5, 3), True),
    "2-D input, no bias": ((5, 3), False),
    "3-D input": ((2, 5, 3), True),
    "3-D input, no bias": ((2, 5, 3), False),
    "1-D input": ((3,), True),
}


@pytest.mark.parametrize("input_shape, with_bias", LINEAR_CASES.values(), ids=LINEAR_CASES.keys())
def test_linear_matches_x_times_weight_transposed_plus_bias(input_shape, with_bias):
    input_shapes = [input_shape, (4, 3)] + ([(4,)] if with_bias else [])  # weight (out, in), bias (out,)
    output = check_op(
        lambda x, weight, bias=None: F.linear(x, weight, bias),
        *input_shapes,
        reference=lambda x, weight, bias=0.0: x @ weight.T + bias,
    )
    assert output.shape == input_shape[:-1] + (4,)


def test_linear_needs_no_input_gradient_for_data():
    x = Tensor(np.ones((2, 3)))  # data: no gradient wanted
    weight = Tensor(np.ones((4, 3)), requires_grad=True)
    F.linear(x, weight).sum().backward()
    assert x.grad is None
    np.testing.assert_array_equal(weight.grad, np.full((4, 3), 2.0))


# ----- cross-entropy -----------------------------------------------------------------------------
@st.composite
def logits_shapes(draw):
    return draw(st.integers(1, 5)), draw(st.integers(2, 5))


@PROPERTY
@given(shape=logits_shapes(), seed=seeds)
def test_cross_entropy_with_class_indices_matches_numpy_and_central_differences(shape, seed):
    labels = np.random.default_rng(seed).integers(0, shape[1], shape[0])
    check_op(
        lambda logits: F.cross_entropy(logits, labels),
        shape,
        reference=lambda logits: cross_entropy_reference(logits, labels),
        seed=seed,
    )


@PROPERTY
@given(shape=logits_shapes(), seed=seeds)
def test_cross_entropy_with_probability_targets_has_gradients_for_logits_and_targets(shape, seed):
    targets = np.random.default_rng(seed).dirichlet(np.ones(shape[1]), size=shape[0])  # rows sum to 1
    check_op(
        lambda logits, targets: F.cross_entropy(logits, targets),
        shape,
        targets,
        reference=lambda logits, targets: -(targets * log_softmax_reference(logits, axis=1)).sum(axis=1).mean(),
        seed=seed,
    )


def test_cross_entropy_gradient_is_right_for_targets_that_do_not_sum_to_one():
    rng = np.random.default_rng(3)
    check_op(lambda logits, targets: F.cross_entropy(logits, targets), (4, 3), rng.uniform(0, 2, (4, 3)))


def test_cross_entropy_of_uniform_logits_is_log_of_the_class_count():
    loss = F.cross_entropy(Tensor(np.zeros((4, 10))), [0, 3, 9, 9])
    assert loss.item() == pytest.approx(np.log(10), rel=1e-6)


def test_cross_entropy_gradient_is_softmax_minus_onehot_over_batch_size():
    logits_array = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    labels = np.array([1, 0])
    logits = Tensor(logits_array, requires_grad=True)
    F.cross_entropy(logits, labels).backward()
    onehot = np.eye(3)[labels]
    np.testing.assert_allclose(logits.grad, (softmax_reference(logits_array) - onehot) / 2, rtol=1e-12)


def test_cross_entropy_stays_finite_for_logits_of_plus_minus_one_thousand():
    logits = Tensor([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 1000.0]], requires_grad=True)
    loss = F.cross_entropy(logits, [1, 0])
    # row 0 misses by 2000, row 1 by 2000 shared between two classes: (2000 + 2000 + log 2) / 2
    assert loss.item() == pytest.approx((2000 + 2000 + np.log(2)) / 2, rel=1e-6)
    loss.backward()
    assert np.isfinite(logits.grad).all()
    np.testing.assert_allclose(logits.grad, [[0.5, -0.5, 0.0], [-0.5, 0.25, 0.25]], atol=1e-7)


def test_cross_entropy_accepts_labels_as_a_list_an_array_or_a_tensor():
    logits = Tensor(np.random.default_rng(0).standard_normal((3, 4)))
    losses = [F.cross_entropy(logits, labels).item() for labels in ([0, 3, 1], np.array([0, 3, 1]), Tensor([0, 3, 1]))]
    assert losses[0] == losses[1] == losses[2]


def test_cross_entropy_matches_pytorch_for_indices_and_probabilities():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    logits_array = rng.standard_normal((6, 5)) * 3
    labels = rng.integers(0, 5, 6)
    probabilities = rng.dirichlet(np.ones(5), size=6)
    for targets, torch_targets in ((labels, torch.tensor(labels)), (probabilities, torch.tensor(probabilities))):
        logits = Tensor(logits_array, requires_grad=True)
        loss = F.cross_entropy(logits, targets)
        loss.backward()
        expected_logits = torch.tensor(logits_array, requires_grad=True)
        expected = torch.nn.functional.cross_entropy(expected_logits, torch_targets)
        expected.backward()
        assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
        np.testing.assert_allclose(logits.grad, expected_logits.grad.numpy(), rtol=1e-10, atol=1e-15)


# ----- gradcheck itself --------------------------------------------------------------------------
class SquareWithWrongBackward(Function):
    """out = x^2, with the classic mistake in backward: the factor 2 is missing."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved
        return grad_out * x


def test_gradcheck_catches_a_wrong_backward_and_names_the_input():
    with pytest.raises(GradcheckError, match=r"input 0 \(shape \(3,\)\) at index \(0,\)"):
        gradcheck(SquareWithWrongBackward.apply, [np.array([1.0, 2.0, 3.0])])


def test_gradcheck_checks_only_the_inputs_that_require_grad():
    checked = Tensor([1.0, 2.0], requires_grad=True)
    constant = Tensor([3.0, 4.0])  # the wrong backward would only show in its gradient
    assert gradcheck(lambda x, c: x * 2 + SquareWithWrongBackward.apply(c), [checked, constant])


def test_cross_entropy_of_a_perfect_prediction_is_plus_zero_not_minus_zero():
    loss = F.cross_entropy(Tensor([[0.0, -200.0]]), [0])
    assert loss.item() == 0.0 and not np.signbit(loss.item())


# ----- unreduce and number ** tensor ------------------------------------------------------------
@pytest.mark.parametrize(
    "input_shape, axis, keepdims, grad_shape, expected",
    [
        ((4, 3), 1, False, (4,), (4, 1)),
        ((4, 3), -1, False, (4,), (4, 1)),
        ((4, 3), 0, False, (3,), (1, 3)),
        ((2, 3, 4), (0, 2), False, (3,), (1, 3, 1)),
        ((2, 3, 4), None, False, (), (1, 1, 1)),
        ((4, 3), 1, True, (4, 1), (4, 1)),
        ((), 0, False, (), ()),
        ((), None, False, (), ()),
    ],
)
def test_unreduce_puts_the_reduced_axes_back_as_size_one(input_shape, axis, keepdims, grad_shape, expected):
    from tinygrad_mnist import unreduce

    grad = np.arange(np.prod(grad_shape, dtype=int), dtype=np.float64).reshape(grad_shape)
    back = unreduce(grad, input_shape, axis, keepdims)
    assert back.shape == expected
    np.testing.assert_array_equal(np.broadcast_to(back, input_shape).sum(axis=axis, keepdims=keepdims), grad * (np.prod(input_shape, dtype=int) // max(grad.size, 1)))


@pytest.mark.parametrize("base", [0.5, 2.0, 3.0])
def test_number_to_the_power_of_a_tensor_matches_numpy_and_central_differences(base):
    check_op(lambda x: base**x, (3, 4), reference=lambda x: np.power(base, x))
