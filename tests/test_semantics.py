"""The engine never lies: comparisons, masks, in-place changes, threads, empty tensors and dtypes
mean what they mean in PyTorch, or raise one clear error (docs/api.md, "Bool tensors, versions,
threads and dtypes"). Each test compares with PyTorch where it is installed."""

import threading
import warnings

import numpy as np
import pytest

from tinygrad_mnist import Function, Tensor, functional as F, nn, no_grad, optim

from helpers import check_op

COMPARISONS = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def torch_or_skip():
    return pytest.importorskip("torch")


# ----- 1. comparisons ------------------------------------------------------------------------------
def test_equal_tensors_compare_equal_elementwise_not_by_identity():
    assert (Tensor([1.0]) == Tensor([1.0])).all()
    assert (Tensor([1.0, 2.0]) == np.array([1.0, 2.0])).data.tolist() == [True, True]
    assert (np.array([1.0, 3.0]) == Tensor([1.0, 2.0])).data.tolist() == [True, False]


@pytest.mark.parametrize("symbol", COMPARISONS)
def test_comparisons_broadcast_between_tensors_arrays_and_numbers_as_in_torch(symbol):
    torch = torch_or_skip()
    compare = COMPARISONS[symbol]
    left = np.array([[0.0], [1.0], [2.0]], dtype=np.float32)  # (3, 1)
    right = np.array([2.0, 1.0, 0.5, 1.0], dtype=np.float32)  # (4,)
    expected = compare(torch.from_numpy(left), torch.from_numpy(right)).numpy()
    for result in (compare(Tensor(left), Tensor(right)), compare(Tensor(left), right), compare(left, Tensor(right))):
        assert result.dtype == np.bool_ and not result.requires_grad and result.grad_fn is None
        np.testing.assert_array_equal(result.data, expected)
    np.testing.assert_array_equal(compare(Tensor(left), 1.0).data, compare(torch.from_numpy(left), 1.0).numpy())
    np.testing.assert_array_equal(compare(1.0, Tensor(left)).data, compare(1.0, torch.from_numpy(left)).numpy())


def test_a_python_number_is_compared_in_the_tensors_dtype_as_in_torch():
    torch = torch_or_skip()
    assert (Tensor([0.1]) == 0.1).item() == (torch.tensor([0.1]) == 0.1).item() == True  # noqa: E712


def test_comparing_with_none_or_a_string_is_false_or_a_type_error_as_in_torch():
    x = Tensor([1.0, 2.0])
    assert (x == None) is False and (x != None) is True  # noqa: E711
    assert (x == "a") is False
    with pytest.raises(TypeError, match="not supported"):
        x < "a"


def test_shapes_that_do_not_broadcast_are_a_value_error_naming_both():
    with pytest.raises(ValueError, match=r"\(2,\) and \(3,\)"):
        Tensor([1.0, 2.0]) < Tensor([1.0, 2.0, 3.0])


def test_a_tensor_stays_hashable_by_identity_as_in_torch():
    a, b = Tensor([1.0]), Tensor([1.0])
    assert hash(a) != hash(b) and len({a, b}) == 2 and {a: 1, b: 2}[b] == 2


def test_counting_correct_predictions_and_their_mean_as_in_torch():
    torch = torch_or_skip()
    logits = np.random.default_rng(0).standard_normal((50, 10)).astype(np.float32)
    labels = np.random.default_rng(1).integers(0, 10, 50).astype(np.uint8)
    predictions = Tensor(logits.argmax(axis=1).astype(np.float32))
    correct = predictions == labels
    torch_correct = torch.from_numpy(logits).argmax(dim=1) == torch.from_numpy(labels.astype(np.int64))
    assert correct.sum().item() == torch_correct.sum().item()
    assert correct.float().mean().item() == pytest.approx(torch_correct.float().mean().item())
    assert correct.float().dtype == np.float32
    assert bool(correct.all()) == bool(torch_correct.all()) and bool(correct.any()) == bool(torch_correct.any())
    np.testing.assert_array_equal(correct.sum(axis=0).data, torch_correct.sum(dim=0).numpy())
    np.testing.assert_array_equal((~correct).data, (~torch_correct).numpy())
    np.testing.assert_array_equal((correct & (predictions > 4)).data, correct.data & (predictions.data > 4))
    np.testing.assert_array_equal((correct | (predictions > 4)).data, correct.data | (predictions.data > 4))
    assert correct[:5].dtype == np.bool_ and correct[:5].data.tolist() == torch_correct[:5].tolist()


def test_the_truth_value_of_a_tensor_is_pytorchs():
    assert Tensor([2.0]) == 2.0
    assert not Tensor([0.0])
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(Tensor([1.0, 2.0]) == Tensor([1.0, 2.0]))
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(Tensor(np.zeros(0)))


def test_a_mask_times_a_float_tensor_promotes_the_mask_as_in_torch():
    torch = torch_or_skip()
    x = Tensor([-1.0, 2.0, 3.0], requires_grad=True)
    (x * (x > 0)).sum().backward()
    tx = torch.tensor([-1.0, 2.0, 3.0], requires_grad=True)
    (tx * (tx > 0)).sum().backward()
    np.testing.assert_array_equal(x.grad, tx.grad.numpy())


def test_a_bool_tensor_cannot_require_grad_and_ops_on_masks_alone_are_refused():
    with pytest.raises(TypeError, match="cannot require grad"):
        Tensor([True, False], requires_grad=True)
    mask = Tensor([1.0, -1.0]) > 0
    for compute in (lambda: mask.exp(), lambda: -mask, lambda: mask + 1, lambda: mask.reshape(2, 1)):
        with pytest.raises(TypeError, match=r"float\(\)"):
            compute()
    assert mask.mean().item() == 0.5  # the fraction of True, from the exact count (PyTorch asks for .float() first)
    with pytest.raises(TypeError, match="masks"):
        Tensor([1.0]) & Tensor([True])


def test_float_of_a_float64_tensor_is_float32_and_passes_the_gradient_back():
    x = Tensor(np.array([1.5, -2.0]), requires_grad=True)
    (x.float() * 3).sum().backward()
    assert x.float().dtype == np.float32 and x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])
    y = Tensor([1.0])
    assert y.float() is y


# ----- 2. masks --------------------------------------------------------------------------------------
def test_a_bool_tensor_index_selects_forward_and_backward_as_in_torch():
    torch = torch_or_skip()
    x = Tensor([10.0, 20.0, 30.0], requires_grad=True)
    picked = x[Tensor([True, False, True])]
    np.testing.assert_array_equal(picked.data, [10.0, 30.0])
    (picked * Tensor([1.0, 2.0])).sum().backward()
    tx = torch.tensor([10.0, 20.0, 30.0], requires_grad=True)
    (tx[torch.tensor([True, False, True])] * torch.tensor([1.0, 2.0])).sum().backward()
    np.testing.assert_array_equal(x.grad, tx.grad.numpy())  # [1, 0, 2]: zero where not selected


def test_x_where_x_is_positive_has_the_gradient_of_the_selected_places():
    mask = np.array([[True, False, True], [False, False, True]])
    check_op(lambda x: x[Tensor(mask)], (2, 3), reference=lambda x: x[mask])
    check_op(lambda x: x[:, mask[0]], (2, 3), reference=lambda x: x[:, mask[0]])
    x = Tensor([-1.0, 2.0, -3.0, 4.0])
    np.testing.assert_array_equal(x[x > 0].data, [2.0, 4.0])


def test_a_mask_of_the_wrong_shape_is_an_index_error():
    with pytest.raises(IndexError, match="does not fit"):
        Tensor([1.0, 2.0, 3.0])[Tensor([True, False])]


# ----- 3. the version counter ------------------------------------------------------------------------
def test_an_optimizer_step_between_forward_and_backward_is_a_runtime_error_naming_the_op():
    w = Tensor(1.0, requires_grad=True)
    loss = w * w * 2.0 + w  # d loss/d w = 4 w + 1 = 5 at w = 1; computed with w = 0.5 it would say 3
    w.grad = np.array(5.0, dtype=np.float32)
    optim.SGD([w], lr=0.1).step()
    with pytest.raises(RuntimeError, match="modified in place after Mul saved it.*before optimizer.step"):
        loss.backward()


def test_pytorch_raises_in_the_same_place():
    torch = torch_or_skip()
    w = torch.tensor(1.0, requires_grad=True)
    loss = w * w * 2.0 + w
    w.grad = torch.tensor(5.0)
    torch.optim.SGD([w], lr=0.1).step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_every_in_place_change_of_the_library_bumps_the_version():
    model = nn.mlp([3, 2], rng=np.random.default_rng(0))
    weight = model[0].weight
    assert weight._version == 0
    state = model.state_dict()
    model.load_state_dict(state)
    assert weight._version == 1
    weight.grad = np.ones_like(weight.data)
    optim.SGD(model.parameters(), lr=0.1, momentum=0.9).step()
    assert weight._version == 2
    x = Tensor([1.0, 2.0])
    x.add_(1.0).mul_(2.0).copy_(np.array([5.0, 6.0])).zero_()
    assert x._version == 4 and x.data.tolist() == [0.0, 0.0]


def test_a_view_shares_its_base_version_so_a_step_after_x_at_w_transposed_is_caught():
    w = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    x = Tensor(np.ones((4, 3), dtype=np.float32), requires_grad=True)
    loss = (x @ w.T).sum()  # MatMul saved w.T's data, a view of w's
    assert w.T._version_counter is w._version_counter
    with no_grad():
        w.add_(1.0)
    with pytest.raises(RuntimeError, match="input 1 of MatMul"):
        loss.backward()


def test_an_op_that_saved_no_value_of_the_changed_tensor_still_gives_its_true_gradient():
    torch = torch_or_skip()
    w = Tensor([1.0, 2.0], requires_grad=True)
    loss = ((w + 1.0) * 3.0).sum()  # Add saves shapes only: its gradient does not depend on w
    with no_grad():
        w.add_(10.0)
    loss.backward()
    tw = torch.tensor([1.0, 2.0], requires_grad=True)
    tloss = ((tw + 1.0) * 3.0).sum()
    with torch.no_grad():
        tw.add_(10.0)
    tloss.backward()
    np.testing.assert_array_equal(w.grad, tw.grad.numpy())


def test_an_in_place_change_of_a_saved_output_is_caught():
    x = Tensor([0.0, 1.0], requires_grad=True)
    y = x.exp()  # Exp saves its output
    with no_grad():
        y.mul_(2.0)
    with pytest.raises(RuntimeError, match="the output of Exp"):
        y.sum().backward()


def test_writing_into_data_bypasses_the_counter_as_in_pytorch():
    w = Tensor(1.0, requires_grad=True)
    loss = w * w
    w.data -= 0.5  # as tensor.data in PyTorch: not counted, so not caught (docs/concepts.md says why)
    assert w._version == 0
    loss.backward()
    assert w.grad == 1.0  # 2 * 0.5: computed with the new value


def test_an_in_place_method_on_an_op_result_in_the_graph_is_refused_outside_no_grad():
    x = Tensor([1.0], requires_grad=True)
    y = x * 2.0
    with pytest.raises(RuntimeError, match="result of Mul, in the graph.*no_grad"):
        y.mul_(3.0)  # backward would give 2, where PyTorch's recorded mul_ gives 6
    x.add_(1.0)  # a leaf may change: any op that saved its old value refuses to backward
    with no_grad():
        y.mul_(3.0)
    with pytest.raises(ValueError, match=r"\(3,\) does not broadcast to the tensor's shape \(1,\)"):
        Tensor([1.0]).add_(np.ones(3))


# ----- 4. grad_out is read-only inside backward -------------------------------------------------------
class DoublesInPlace(Function):
    """out = 2 x, with a backward that writes into grad_out (the bug this guards against)."""

    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, grad_out):
        grad_out *= 2
        return grad_out


def test_a_backward_that_writes_into_grad_out_is_a_runtime_error_naming_the_op():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = x * 1.0
    total = DoublesInPlace.apply(y) + y  # Add hands one array to both branches
    with pytest.raises(RuntimeError, match="DoublesInPlace.backward wrote into a read-only array"):
        total.sum().backward()


def test_the_gradients_backward_keeps_stay_writeable_and_independent():
    x = Tensor([1.0, 2.0], requires_grad=True)
    a, b = x * 1.0, x * 1.0
    (a + b).sum().backward()
    assert a.grad.flags.writeable and b.grad.flags.writeable and x.grad.flags.writeable
    a.grad *= 10  # clipping one gradient in place changes no other
    assert b.grad.tolist() == [1.0, 1.0] and x.grad.tolist() == [2.0, 2.0]


# ----- 5. grad mode is per thread --------------------------------------------------------------------
def test_no_grad_in_one_thread_does_not_stop_another_from_training():
    inside, trained, results = threading.Event(), threading.Event(), {}

    def evaluate():
        with no_grad():
            inside.set()
            trained.wait(timeout=30)
            results["evaluation records a graph"] = (Tensor([1.0], requires_grad=True) * 2).requires_grad

    def train():
        inside.wait(timeout=30)
        model = nn.mlp([3, 4, 2], rng=np.random.default_rng(0))
        F.cross_entropy(model(Tensor(np.ones((2, 3), dtype=np.float32))), [0, 1]).backward()
        results["first layer's gradient"] = model[0].weight.grad
        trained.set()

    threads = [threading.Thread(target=evaluate), threading.Thread(target=train)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results["first layer's gradient"] is not None
    assert results["evaluation records a graph"] is False


# ----- 6. empty tensors -------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, axis", [((3, 0), -1), ((0, 3), -1), ((0, 3), 0)])
def test_softmax_and_log_softmax_of_an_empty_tensor_are_empty_as_in_torch(shape, axis):
    torch = torch_or_skip()
    for method in ("softmax", "log_softmax"):
        x = Tensor(np.zeros(shape, dtype=np.float32), requires_grad=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # not even a warning from numpy
            out = getattr(x, method)(axis)
            out.sum().backward()
        assert out.shape == tuple(getattr(torch.zeros(shape), method)(axis).shape) and x.grad.shape == shape


def test_reductions_of_an_empty_axis_give_torchs_values():
    torch = torch_or_skip()
    empty = np.zeros((3, 0), dtype=np.float32)
    np.testing.assert_array_equal(Tensor(empty).sum(axis=1).data, torch.zeros(3, 0).sum(1).numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy warns about a mean of nothing
        np.testing.assert_array_equal(Tensor(empty).mean(axis=1).data, torch.zeros(3, 0).mean(1).numpy())
    assert Tensor(np.zeros((0, 3))).max(axis=1).shape == tuple(torch.zeros(0, 3).amax(1).shape)
    with pytest.raises(ValueError, match="axis of size 0"):
        Tensor(empty).max(axis=1)  # torch: IndexError, "Expected reduction dim 1 to have non-zero size"


def test_cross_entropy_of_an_empty_batch_is_nan_as_in_torch_with_an_empty_gradient():
    torch = torch_or_skip()
    logits = Tensor(np.zeros((0, 10), dtype=np.float32), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = F.cross_entropy(logits, np.zeros(0, dtype=np.uint8))
        loss.backward()
    expected = torch.nn.functional.cross_entropy(torch.zeros(0, 10), torch.zeros(0, dtype=torch.long))
    assert np.isnan(loss.item()) and np.isnan(expected.item())
    assert logits.grad.shape == (0, 10)
    assert np.isnan(F.cross_entropy(Tensor(np.zeros((0, 10))), np.zeros((0, 10))).item())


def test_linear_with_an_empty_axis_matches_torch():
    torch = torch_or_skip()
    x = Tensor(np.zeros((2, 0), dtype=np.float32), requires_grad=True)
    weight = Tensor(np.zeros((3, 0), dtype=np.float32), requires_grad=True)
    bias = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    out = F.linear(x, weight, bias)
    out.sum().backward()
    np.testing.assert_array_equal(out.data, torch.nn.functional.linear(torch.zeros(2, 0), torch.zeros(3, 0), torch.ones(3)).numpy())
    assert x.grad.shape == (2, 0) and weight.grad.shape == (3, 0) and bias.grad.tolist() == [2.0, 2.0, 2.0]


def test_the_cnn_on_an_empty_batch_gives_torchs_shapes_and_zero_weight_gradients():
    torch = torch_or_skip()
    model = nn.lenet(rng=np.random.default_rng(0))
    images = Tensor(np.zeros((0, 1, 28, 28), dtype=np.float32))
    conv = model[0](images)
    assert conv.shape == tuple(torch.nn.functional.conv2d(torch.zeros(0, 1, 28, 28), torch.zeros(16, 1, 5, 5)).shape)
    assert F.max_pool2d(conv, 2).shape == (0, 16, 12, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = F.cross_entropy(model(images), np.zeros(0, dtype=np.uint8))
        loss.backward()
    assert np.isnan(loss.item())
    for parameter in model.parameters():
        assert parameter.grad.shape == parameter.shape and not parameter.grad.any()


# ----- 7. dtypes -------------------------------------------------------------------------------------
def test_float16_and_small_integer_data_become_float32_exactly():
    assert Tensor(np.array([1.5, 2.25], dtype=np.float16)).dtype == np.float32
    assert Tensor(np.array([255], dtype=np.uint8)).data.tolist() == [255.0]
    assert Tensor(np.array([16777216], dtype=np.int64)).data.tolist() == [16777216.0]  # 2^24 fits


def test_integer_data_float32_cannot_hold_exactly_is_a_value_error_not_rounded():
    with pytest.raises(ValueError, match="do not fit float32 exactly.*float64"):
        Tensor(np.array([16777217], dtype=np.int64))
    assert Tensor(np.array([16777217]), dtype="float64").data.tolist() == [16777217.0]


def test_integer_float16_and_bool_operands_take_the_tensors_dtype():
    x = Tensor([1.0, 2.0])
    for other in (np.array([1, 2], dtype=np.int64), np.array([0.5, 1.5], dtype=np.float16), np.array([True, False])):
        result = x * other
        assert result.dtype == np.float32
        np.testing.assert_array_equal(result.data, x.data * other.astype(np.float32))


def test_a_custom_op_returning_float16_or_integers_gets_its_inputs_dtype():
    class Rounds(Function):
        """out = round(x) as an integer array (a gradient of zero)."""

        @staticmethod
        def forward(ctx, x):
            return np.round(x).astype(np.int64)

        @staticmethod
        def backward(ctx, grad_out):
            return np.zeros_like(grad_out)

    out = Rounds.apply(Tensor(np.array([1.4, 2.6])))
    assert out.dtype == np.float64 and out.data.tolist() == [1.0, 3.0]


def test_comparisons_with_integer_arrays_are_exact():
    assert not (Tensor(np.array([16777216.0])) == np.array([16777217])).item()
