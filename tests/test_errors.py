"""Mistakes a person can make, and the messages they get back.

A good message names what was wrong and what was expected, in terms of the user's own tensors,
so each test checks the words as well as the exception type. The last section is anomaly mode,
which turns the first NaN or Inf into an error that names the op and the phase.
"""

import numpy as np
import pytest

import tinygrad_mnist.functional as F
from tinygrad_mnist import AnomalyError, Function, Tensor, detect_anomaly, nn, optim
from tinygrad_mnist import modes


# ----- shapes ------------------------------------------------------------------------------------
def test_matmul_of_incompatible_shapes_names_both_shapes():
    with pytest.raises(ValueError, match=r"matmul of shapes \(2, 3\) and \(4, 5\)"):
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((4, 5)))


def test_matmul_of_a_scalar_points_to_multiplication():
    with pytest.raises(ValueError, match=r"use \* for scalars"):
        Tensor(np.ones(3)) @ Tensor(2.0)


def test_elementwise_ops_on_shapes_that_do_not_broadcast_name_both_shapes():
    with pytest.raises(ValueError, match=r"add: shapes \(2, 3\) and \(4,\) do not broadcast"):
        Tensor(np.ones((2, 3))) + Tensor(np.ones(4))
    with pytest.raises(ValueError, match=r"multiply: shapes \(3,\) and \(2,\)"):
        Tensor(np.ones(3)) * np.ones(2)


def test_reshape_to_a_shape_with_another_size_says_how_many_elements_there_are():
    with pytest.raises(ValueError, match=r"cannot reshape a tensor of shape \(2, 3\) \(6 elements\) to \(4, 2\)"):
        Tensor(np.ones((2, 3))).reshape(4, 2)


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "softmax", "log_softmax"])
def test_an_axis_the_tensor_does_not_have_is_a_value_error(reduce):
    with pytest.raises(ValueError, match=r"axis 5 does not exist for a tensor with 2 dimension\(s\)"):
        getattr(Tensor(np.ones((2, 3))), reduce)(axis=5)


def test_an_axis_that_is_not_an_integer_is_a_type_error():
    with pytest.raises(TypeError, match="axis must be an int"):
        Tensor(np.ones((2, 3))).sum(axis=1.0)


def test_transpose_that_repeats_an_axis_is_refused():
    with pytest.raises(ValueError, match=r"must list each axis of a 2-d tensor once"):
        Tensor(np.ones((2, 3))).transpose(0, 0)


def test_an_index_out_of_range_names_the_shape():
    with pytest.raises(IndexError, match=r"does not fit a tensor of shape \(3, 4\)"):
        Tensor(np.ones((3, 4)))[5]


def test_linear_layer_on_unflattened_images_says_to_flatten_them():
    layer = nn.Linear(784, 128)
    with pytest.raises(ValueError, match=r"Linear\(784, 128\) got input of shape \(64, 28, 28\); flatten it to \(64, 784\)"):
        layer(Tensor(np.zeros((64, 28, 28), dtype=np.float32)))


def test_linear_layer_on_the_wrong_feature_count_names_the_expected_count():
    with pytest.raises(ValueError, match=r"got input of shape \(64, 100\); its last axis must be 784"):
        nn.Linear(784, 128)(Tensor(np.zeros((64, 100))))


def test_functional_linear_with_a_mismatched_weight_names_the_layer_the_weight_makes():
    # F.linear is the one owner of this check: nn.Linear gets its message from here
    with pytest.raises(ValueError, match=r"^Linear\(5, 4\) got input of shape \(2, 3\); its last axis must be 5$"):
        F.linear(Tensor(np.ones((2, 3))), Tensor(np.ones((4, 5))))
    with pytest.raises(ValueError, match=r"^Linear\(784, 128\) got input of shape \(64, 28, 28\); flatten it to \(64, 784\) first$"):
        F.linear(np.zeros((64, 28, 28)), Tensor(np.ones((128, 784))))
    with pytest.raises(ValueError, match=r"linear expects weight \(out_features, in_features\); got \(5,\)"):
        F.linear(Tensor(np.ones((2, 3))), Tensor(np.ones(5)))


def test_a_leaky_relu_slope_that_is_not_a_finite_number_is_refused():
    # a NaN slope made every negative input NaN without a word; a string failed inside numpy
    for slope in (float("nan"), float("inf"), "0.1", None):
        with pytest.raises(ValueError, match=r"leaky_relu: negative_slope must be a finite number, got"):
            nn.LeakyReLU(slope)(Tensor(np.ones(3)))
    assert F.leaky_relu(Tensor(np.array([-2.0])), np.float32(0.5)).data.tolist() == [-1.0]


# ----- backward ----------------------------------------------------------------------------------
def test_backward_on_a_non_scalar_says_to_reduce_or_pass_a_gradient():
    with pytest.raises(RuntimeError, match=r"needs a scalar, but this tensor has shape \(2, 3\); reduce it first"):
        (Tensor(np.ones((2, 3)), requires_grad=True) * 2).backward()


def test_backward_on_a_tensor_that_needs_no_gradient_says_why():
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(2)).sum().backward()


def test_backward_with_a_gradient_of_the_wrong_shape_names_both_shapes():
    with pytest.raises(ValueError, match=r"grad of shape \(3,\) for a tensor of shape \(2,\)"):
        (Tensor(np.ones(2), requires_grad=True) * 2).backward(np.ones(3))


class ReturnsTheWrongShape(Function):
    """out = x.sum(axis=0), with a backward that forgets to broadcast back to x's shape."""

    @staticmethod
    def forward(ctx, x):
        return x.sum(axis=0)

    @staticmethod
    def backward(ctx, grad_out):
        return grad_out


class ReturnsOneGradientForTwoInputs(Function):
    """out = a * b, with a backward that only returns the gradient for a."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(b)
        return a * b

    @staticmethod
    def backward(ctx, grad_out):
        (b,) = ctx.saved
        return (grad_out * b,)


def test_a_custom_backward_returning_the_wrong_shape_names_the_function_and_both_shapes():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    expected = r"ReturnsTheWrongShape\.backward returned a gradient of shape \(3,\) for input 0 of shape \(2, 3\)"
    with pytest.raises(RuntimeError, match=expected):
        ReturnsTheWrongShape.apply(x).sum().backward()


def test_a_custom_backward_returning_too_few_gradients_names_the_function():
    a = Tensor([1.0], requires_grad=True)
    b = Tensor([2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"ReturnsOneGradientForTwoInputs\.backward returned 1 gradient\(s\) for 2 input\(s\)"):
        ReturnsOneGradientForTwoInputs.apply(a, b).backward()


def test_a_function_without_forward_says_what_to_define():
    class Empty(Function):
        pass

    with pytest.raises(NotImplementedError, match=r"must define forward"):
        Empty.apply(Tensor([1.0]))


# ----- data --------------------------------------------------------------------------------------
def test_a_string_is_refused_with_a_type_error():
    with pytest.raises(TypeError, match=r"must be numbers, not a string \('abc'\)"):
        Tensor("abc")


def test_complex_numbers_are_refused_by_name():
    with pytest.raises(TypeError, match="not complex numbers"):
        Tensor([1 + 2j])


def test_python_objects_are_refused_by_name():
    with pytest.raises(TypeError, match="not Python objects"):
        Tensor([object()])


def test_ragged_nested_lists_are_refused():
    with pytest.raises(ValueError, match="rectangular"):
        Tensor([[1, 2], [3]])


def test_a_dtype_other_than_float32_or_float64_is_refused():
    with pytest.raises(TypeError, match="must be float32, float64 or bool, not float16"):
        Tensor([1.0], dtype="float16")


def test_item_of_a_tensor_with_several_elements_names_the_shape():
    with pytest.raises(ValueError, match=r"one element; this one has shape \(2,\)"):
        Tensor([1.0, 2.0]).item()


def test_a_tensor_exponent_is_refused():
    with pytest.raises(TypeError, match=r"x \*\* p takes a number p"):
        Tensor([1.0]) ** Tensor([2.0])


# ----- cross_entropy -----------------------------------------------------------------------------
@pytest.mark.parametrize("labels", [[0, 3], [-1, 0]], ids=["too large", "negative"])
def test_cross_entropy_with_labels_out_of_range_names_the_valid_range(labels):
    with pytest.raises(ValueError, match=r"class indices must lie in 0\.\.2 for 3 classes"):
        F.cross_entropy(Tensor(np.zeros((2, 3))), labels)


def test_cross_entropy_with_targets_of_the_wrong_shape_names_the_shapes_it_accepts():
    with pytest.raises(ValueError, match=r"class indices shaped \(2,\) or probabilities shaped \(2, 3\); got shape \(3,\)"):
        F.cross_entropy(Tensor(np.zeros((2, 3))), [0, 1, 2])


@pytest.mark.parametrize("labels", [[0.5, 1.0], ["a", "b"]], ids=["fractions", "strings"])
def test_cross_entropy_with_labels_that_are_not_whole_numbers_is_a_type_error(labels):
    with pytest.raises(TypeError, match="class indices must be whole numbers"):
        F.cross_entropy(Tensor(np.zeros((2, 3))), labels)


def test_cross_entropy_accepts_whole_numbers_stored_as_floats():
    loss = F.cross_entropy(Tensor(np.zeros((2, 3))), np.array([0.0, 2.0]))
    assert loss.item() == pytest.approx(np.log(3))


def test_cross_entropy_on_one_dimensional_logits_says_how_to_add_the_batch_axis():
    with pytest.raises(ValueError, match=r"logits shaped \(batch, classes\), got \(3,\); .*reshape\(1, -1\)"):
        F.cross_entropy(Tensor(np.zeros(3)), [0])


# ----- state dicts and optimizers ----------------------------------------------------------------
def test_load_state_dict_with_missing_keys_names_them():
    model = nn.mlp([4, 3, 2])
    state = model.state_dict()
    del state["0.bias"]
    with pytest.raises(KeyError, match=r"missing \['0\.bias'\], unexpected nothing"):
        model.load_state_dict(state)


def test_load_state_dict_with_unexpected_keys_names_them():
    model = nn.mlp([4, 3, 2])
    state = model.state_dict()
    state["4.weight"] = np.zeros((2, 2), dtype=np.float32)
    with pytest.raises(KeyError, match=r"unexpected \['4\.weight'\]"):
        model.load_state_dict(state)


def test_load_state_dict_with_a_wrong_shape_names_both_shapes_and_changes_nothing():
    model = nn.mlp([4, 3, 2])
    before = model.state_dict()
    state = model.state_dict()
    state["0.bias"] = np.ones(3, dtype=np.float32)  # valid, but loading must stop at the bad entry
    state["2.weight"] = np.zeros((2, 5), dtype=np.float32)
    expected = r"state_dict\['2\.weight'\] has shape \(2, 5\), but the model's 2\.weight has shape \(2, 3\)"
    with pytest.raises(ValueError, match=expected):
        model.load_state_dict(state)
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(array, before[name])


def test_load_state_dict_with_a_wrong_dtype_names_both_dtypes():
    model = nn.mlp([4, 3, 2])
    state = {name: array.astype(np.float64) for name, array in model.state_dict().items()}
    with pytest.raises(TypeError, match="has dtype float64, the model's has float32"):
        model.load_state_dict(state)


def test_sgd_without_parameters_says_what_to_pass():
    with pytest.raises(ValueError, match=r"empty parameter list; pass model\.parameters\(\)"):
        optim.SGD([], lr=0.1)


@pytest.mark.parametrize("options", [{"lr": 0.0}, {"lr": 0.1, "momentum": 1.0}, {"lr": 0.1, "clip_norm": -1.0}])
def test_sgd_with_an_impossible_setting_is_refused(options):
    with pytest.raises(ValueError, match="SGD"):
        optim.SGD([Tensor([1.0], requires_grad=True)], **options)


# ----- anomaly mode ------------------------------------------------------------------------------
def test_anomaly_mode_names_the_op_that_made_the_first_nan_in_forward():
    x = Tensor([1.0, -1.0], requires_grad=True)
    with detect_anomaly(), np.errstate(invalid="ignore"):
        with pytest.raises(AnomalyError, match=r"Log\.forward produced NaN in its output") as caught:
            (x * 2).log().sum()
    assert caught.value.op == "Log"
    assert caught.value.phase == "forward"
    assert caught.value.input_shapes == ((2,),)


def test_anomaly_mode_names_the_op_whose_backward_blew_up():
    x = Tensor([0.0, 4.0], requires_grad=True)
    with detect_anomaly(), np.errstate(divide="ignore"):
        root = (x**0.5).sum()  # sqrt(0) = 0 is fine forward; its slope 1 / (2 sqrt(0)) is not
        with pytest.raises(AnomalyError, match=r"Pow\.backward produced Inf in the gradient for input 0") as caught:
            root.backward()
    assert caught.value.op == "Pow"
    assert caught.value.phase == "backward"


def test_anomaly_errors_are_floating_point_errors():
    assert issubclass(AnomalyError, FloatingPointError)


def test_anomaly_mode_is_off_by_default_and_after_the_block():
    assert not modes.anomaly_enabled
    with detect_anomaly():
        assert modes.anomaly_enabled
    assert not modes.anomaly_enabled
    x = Tensor([-1.0], requires_grad=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = x.log()  # no error: NaN flows on, as in numpy
        assert np.isnan(out.data).all()
        root = (Tensor([0.0], requires_grad=True) ** 0.5).sum()
        root.backward()


def test_anomaly_mode_is_switched_off_after_an_error():
    with pytest.raises(AnomalyError), detect_anomaly(), np.errstate(invalid="ignore"):
        Tensor([-1.0]).log()
    assert not modes.anomaly_enabled


def test_linear_with_a_bias_of_the_wrong_size_names_both_shapes():
    with pytest.raises(ValueError, match=r"bias of shape \(5,\).*weight of shape \(4, 3\)"):
        F.linear(Tensor(np.ones((2, 3))), Tensor(np.ones((4, 3))), Tensor(np.ones(5)))


class _SumForgetsItsAxis(Function):
    """A reduction whose backward forgot to put the summed axis back."""

    @staticmethod
    def forward(ctx, x, axis=1):
        return x.sum(axis=axis)

    @staticmethod
    def backward(ctx, grad_out):
        return grad_out


class _AddForgetsTheBroadcast(Function):
    """x + bias whose backward forgot to sum the broadcast bias's gradient back."""

    @staticmethod
    def forward(ctx, x, bias):
        return x + bias

    @staticmethod
    def backward(ctx, grad_out):
        return grad_out, grad_out


def test_a_reduction_that_forgot_its_axes_is_pointed_to_unreduce():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"shape \(2,\) for input 0 of shape \(2, 3\).*use unreduce\(\)"):
        _SumForgetsItsAxis.apply(x).sum().backward()


def test_a_broadcast_that_was_not_summed_back_is_pointed_to_unbroadcast():
    x, bias = Tensor(np.ones((2, 3)), requires_grad=True), Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"shape \(2, 3\) for input 1 of shape \(3,\).*use unbroadcast\(\)"):
        _AddForgetsTheBroadcast.apply(x, bias).sum().backward()


def test_backward_twice_without_retain_graph_says_what_to_do():
    loss = (Tensor([1.0], requires_grad=True) * 2).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match=r"second time: .*backward\(retain_graph=True\)"):
        loss.backward()


class _TransposesItsGradient(Function):
    """An op whose backward hands back its gradient transposed."""

    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, grad_out):
        return grad_out.T


def test_a_gradient_of_an_unrelated_shape_is_a_clear_error_not_numpy_s_broadcast_error():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"shape \(3, 2\) for input 0 of shape \(2, 3\): a gradient has the shape of its input$"):
        _TransposesItsGradient.apply(x).sum().backward()


def test_ctx_saved_tensors_pytorch_s_name_is_refused_with_the_name_to_use():
    class Square(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad_out):
            (x,) = ctx.saved_tensors  # PyTorch's name
            return 2 * x * grad_out

    y = Square.apply(Tensor([3.0], requires_grad=True)).sum()
    with pytest.raises(AttributeError, match=r"^ctx.saved_tensors is PyTorch's name; here .* is ctx.saved$"):
        y.backward()
    with pytest.raises(AttributeError, match="'Context' object has no attribute 'saved_arrays'"):
        y.grad_fn.saved_arrays  # any other missing name: the usual message
