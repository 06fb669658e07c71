"""The graph and backward(): the cases every autograd engine gets wrong once.

Each test builds a tiny computation whose gradient you can do in your head, and checks the exact
numbers: a tensor used twice, a diamond, a very long chain, gradients adding up over two calls,
broadcasting both ways, numbers on either side of an operator, and what no_grad records.
"""

import weakref

import numpy as np
import pytest

from tinygrad_mnist import Function, Tensor, enable_grad, is_grad_enabled, no_grad
from tinygrad_mnist.function import forward_defaults
from tinygrad_mnist.ops import Sum
from tinygrad_mnist.viz import op_label


# ----- shapes of graphs --------------------------------------------------------------------------
def test_a_tensor_used_twice_gets_both_contributions():
    x = Tensor([3.0, -2.0], requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [6.0, -4.0])  # d x^2 / dx = 2x, not x


def test_a_tensor_added_to_itself_gets_gradient_two():
    x = Tensor([1.0, 5.0], requires_grad=True)
    (x + x).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])


def test_a_diamond_sums_the_gradients_of_both_paths():
    # a -> b = 2a and a -> c = a + 1, then d = b * c = 2a^2 + 2a, so d d/d a = 4a + 2
    a = Tensor([1.0, 3.0], requires_grad=True)
    b = a * 2
    c = a + 1
    (b * c).sum().backward()
    np.testing.assert_array_equal(a.grad, [6.0, 14.0])


def test_a_diamond_visits_the_shared_node_once():
    # if backward ran through `shared` once per path, the gradient to x would be counted twice
    x = Tensor([2.0], requires_grad=True)
    shared = x * 3
    (shared.exp() + shared * 2).backward()
    np.testing.assert_allclose(x.grad, [3 * np.exp(6.0) + 6], rtol=1e-6)


def test_a_chain_of_ten_thousand_ops_does_not_hit_the_recursion_limit():
    x = Tensor(np.array([1.0]), requires_grad=True)  # float64: 10,000 float32 roundings would add up
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    np.testing.assert_allclose(x.grad, [1.0001**10_000], rtol=1e-10)


def test_gradients_accumulate_over_two_backward_calls():
    x = Tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0 + 2.0, 3.0 + 4.0])


def test_backward_twice_through_the_same_graph_with_retain_graph_doubles_the_gradient():
    x = Tensor([1.0, 2.0], requires_grad=True)
    loss = (x * x).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_array_equal(x.grad, [4.0, 8.0])


def test_backward_twice_through_the_same_graph_without_retain_graph_is_a_clear_error():
    x = Tensor([1.0, 2.0], requires_grad=True)
    loss = (x * x).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match=r"a second time: .*retain_graph=True"):
        loss.backward()
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])  # the first pass's gradient, untouched


def test_a_second_loss_through_a_shared_part_of_a_freed_graph_is_refused_too():
    x = Tensor([1.0, 2.0], requires_grad=True)
    hidden = x.exp()
    hidden.sum().backward()
    with pytest.raises(RuntimeError, match="Exp's saved arrays were released"):
        (hidden * 2).sum().backward()


class _SavesAFreshArray(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x * 2)  # an array only the context holds
        return x.copy()

    @staticmethod
    def backward(ctx, grad_out):
        (doubled,) = ctx.saved
        return grad_out * doubled


def test_the_arrays_saved_for_backward_are_freed_after_the_pass():
    x = Tensor([1.0, 2.0], requires_grad=True)
    out = _SavesAFreshArray.apply(x)
    saved = weakref.ref(out.grad_fn.saved[0])
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])
    assert out.grad_fn.saved is None
    assert saved() is None  # the graph is still alive (out holds it), its saved array is not


def test_retain_graph_keeps_the_saved_arrays():
    x = Tensor([1.0, 2.0], requires_grad=True)
    out = _SavesAFreshArray.apply(x)
    out.sum().backward(retain_graph=True)
    np.testing.assert_array_equal(out.grad_fn.saved[0], [2.0, 4.0])


def test_zero_grad_starts_the_sum_over():
    x = Tensor([1.0], requires_grad=True)
    (x * 5).backward()
    x.zero_grad()
    (x * 7).backward()
    np.testing.assert_array_equal(x.grad, [7.0])


# ----- broadcasting ------------------------------------------------------------------------------
def test_broadcasting_in_both_directions_sums_gradients_back_to_each_shape():
    column = Tensor(np.zeros((3, 1)), requires_grad=True)
    row = Tensor(np.zeros((1, 4)), requires_grad=True)
    out = column + row
    assert out.shape == (3, 4)
    out.sum().backward()
    np.testing.assert_array_equal(column.grad, np.full((3, 1), 4.0))  # each used by 4 columns
    np.testing.assert_array_equal(row.grad, np.full((1, 4), 3.0))  # each used by 3 rows


def test_a_vector_broadcast_over_rows_gets_the_sum_of_the_rows():
    matrix = Tensor(np.ones((2, 3)), requires_grad=True)
    vector = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    (matrix * vector).backward(np.array([[1.0, 1.0, 1.0], [10.0, 10.0, 10.0]]))
    np.testing.assert_array_equal(vector.grad, [11.0, 11.0, 11.0])
    np.testing.assert_array_equal(matrix.grad, [[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])


# ----- numbers and arrays on either side ---------------------------------------------------------
def test_a_number_on_the_left_of_minus_and_divide():
    x = Tensor([2.0, 4.0], requires_grad=True)
    out = 2 - x
    np.testing.assert_array_equal(out.data, [0.0, -2.0])
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, [-1.0, -1.0])

    x.zero_grad()
    out = 2 / x
    np.testing.assert_array_equal(out.data, [1.0, 0.5])
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, [-2 / 4, -2 / 16])  # d (2/x) / dx = -2 / x^2


def test_a_number_on_the_right_of_every_operator():
    x = Tensor([2.0, 4.0], requires_grad=True)
    out = (x + 1) * 3 - x / 2 - 1
    np.testing.assert_array_equal(out.data, [7.0, 12.0])
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, [2.5, 2.5])


def test_a_numpy_array_on_the_left_gives_a_tensor_with_a_gradient():
    x = Tensor([1.0, 2.0], requires_grad=True)
    for out in (np.array([10.0, 20.0]) + x, np.array([10.0, 20.0]) - x, np.array([10.0, 20.0]) * x):
        assert isinstance(out, Tensor) and out.requires_grad
    (np.array([10.0, 20.0]) * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [10.0, 20.0])


def test_a_numpy_matrix_on_the_left_of_matmul():
    x = Tensor([[1.0], [2.0]], requires_grad=True)  # (2, 1)
    out = np.array([[1.0, 2.0], [3.0, 4.0]]) @ x
    assert isinstance(out, Tensor)
    np.testing.assert_array_equal(out.data, [[5.0], [11.0]])
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, [[4.0], [6.0]])


# ----- what is recorded --------------------------------------------------------------------------
def test_no_grad_records_nothing():
    x = Tensor([1.0, 2.0], requires_grad=True)
    with no_grad():
        assert not is_grad_enabled()
        y = (x * 2).sum()
    assert is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None


def test_enable_grad_records_again_inside_no_grad():
    x = Tensor([1.0], requires_grad=True)
    with no_grad():
        with enable_grad():
            y = x * 2
        z = x * 2
    assert y.requires_grad and not z.requires_grad


def test_no_grad_is_switched_back_on_after_an_exception():
    with pytest.raises(ZeroDivisionError), no_grad():
        1 / 0
    assert is_grad_enabled()


def test_tensors_that_need_no_gradient_record_no_graph():
    a = Tensor([1.0, 2.0])
    b = Tensor([3.0, 4.0])
    out = (a * b).exp().sum()
    assert not out.requires_grad and out.grad_fn is None


def test_only_inputs_that_require_grad_get_a_gradient():
    weight = Tensor([2.0], requires_grad=True)
    data = Tensor([5.0])
    (weight * data).backward()
    np.testing.assert_array_equal(weight.grad, [5.0])
    assert data.grad is None


def test_backward_on_a_non_scalar_without_a_gradient_is_refused():
    x = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"needs a scalar.*shape \(2,\)"):
        (x * 2).backward()


def test_backward_with_a_given_gradient_works_for_a_non_scalar():
    x = Tensor([1.0, 2.0], requires_grad=True)
    (x * 3).backward(np.array([1.0, 10.0]))
    np.testing.assert_array_equal(x.grad, [3.0, 30.0])


def test_backward_accepts_the_gradient_as_a_tensor():
    x = Tensor([1.0, 2.0], requires_grad=True)
    (x * 3).backward(Tensor(np.array([1.0, -1.0])))
    np.testing.assert_array_equal(x.grad, [3.0, -3.0])


def test_backward_does_not_keep_or_change_the_given_gradient():
    x = Tensor([1.0, 2.0], requires_grad=True)
    upstream = np.array([1.0, 1.0])
    x.backward(upstream)
    x.grad *= 5
    np.testing.assert_array_equal(upstream, [1.0, 1.0])


# ----- the .grad arrays --------------------------------------------------------------------------
def test_leaf_grads_are_never_shared_between_tensors():
    a = Tensor([1.0, 2.0], requires_grad=True)
    b = Tensor([3.0, 4.0], requires_grad=True)
    (a + b).sum().backward()  # Add hands the same array to both inputs
    assert a.grad is not None and b.grad is not None
    assert not np.shares_memory(a.grad, b.grad)
    a.grad *= 100  # what gradient clipping does, in place
    np.testing.assert_array_equal(b.grad, [1.0, 1.0])


def test_a_leaf_grad_is_not_shared_with_the_intermediate_it_came_from():
    a = Tensor([1.0, 2.0], requires_grad=True)
    total = a + 0  # Add passes the upstream gradient through untouched
    total.backward(np.array([1.0, 1.0]))
    if total.grad is not None:
        assert not np.shares_memory(a.grad, total.grad)


@pytest.mark.parametrize(
    "make",
    [lambda x: x.sum(), lambda x: x.reshape(6).sum(), lambda x: x.T.sum(), lambda x: (x + x[0]).sum(), lambda x: x.mean()],
    ids=["sum (a broadcast view)", "reshape (a view)", "transpose (a view)", "index and add", "mean"],
)
def test_leaf_grads_are_writable_arrays_of_their_own(make):
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    make(x).backward()
    assert x.grad.flags.writeable and x.grad.base is None
    x.grad += 1  # no "assignment destination is read-only"


def test_detach_cuts_the_graph():
    x = Tensor([2.0, 3.0], requires_grad=True)
    constant = (x * 10).detach()
    (constant * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [20.0, 30.0])  # no gradient through `constant`


class _Scale(Function):
    """A learner's op: backward reads forward's keyword from ctx.options, default or not."""

    @staticmethod
    def forward(ctx, x, slope=2.0):
        return x * slope

    @staticmethod
    def backward(ctx, grad_out):
        return grad_out * ctx.options["slope"]


@pytest.mark.parametrize("options, expected", [({}, 2.0), ({"slope": 3.0}, 3.0)])
def test_backward_reads_forward_keywords_with_their_defaults_from_ctx_options(options, expected):
    x = Tensor([1.0, -2.0], requires_grad=True)
    _Scale.apply(x, **options).sum().backward()
    np.testing.assert_array_equal(x.grad, [expected, expected])


def test_a_default_taken_positionally_by_an_input_is_not_an_option():
    class AddOptional(Function):
        @staticmethod
        def forward(ctx, x, other=None):
            return x if other is None else x + other

        @staticmethod
        def backward(ctx, grad_out):
            return (grad_out,) if len(ctx.inputs) == 1 else (grad_out, grad_out)

    x, y = Tensor([1.0], requires_grad=True), Tensor([2.0], requires_grad=True)
    AddOptional.apply(x, y).sum().backward()
    assert y.grad.tolist() == [1.0]
    assert AddOptional.apply(x).grad_fn.options == {"other": None}


def test_forward_defaults_is_the_one_reading_of_forward_s_defaults_the_engine_and_viz_share():
    assert forward_defaults(Sum, 1) == {"axis": None, "keepdims": False}
    assert Tensor([1.0, 2.0], requires_grad=True).sum().grad_fn.options == forward_defaults(Sum, 1)
    x = Tensor([1.0], requires_grad=True)
    assert forward_defaults(_Scale) == {"slope": 2.0}
    assert op_label(x.sum().grad_fn) == "Sum"  # both defaults left out of the label
