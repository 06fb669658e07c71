"""Convolution, max-pooling and dropout: values against loops written from the definition (and
PyTorch when installed), gradients against central differences, the tie rule, and the errors."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_mnist as tg
from tinygrad_mnist import Tensor, manual_seed, nn
from tinygrad_mnist import functional as F
from tinygrad_mnist.conv import Conv2dOp, MaxPool2dOp
from tinygrad_mnist.randomness import default_generator

from helpers import PROPERTY, check_op, random_array


# ----- references written from the definitions, one output element at a time ---------------------
def naive_conv2d(x, weight, bias=None, stride=1, padding=0):
    batch, channels, height, width = x.shape
    out_channels, _, kernel_h, kernel_w = weight.shape
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out_h = (height + 2 * padding - kernel_h) // stride + 1
    out_w = (width + 2 * padding - kernel_w) // stride + 1
    out = np.zeros((batch, out_channels, out_h, out_w))
    for n in range(batch):
        for o in range(out_channels):
            for p in range(out_h):
                for q in range(out_w):
                    window = x[n, :, p * stride : p * stride + kernel_h, q * stride : q * stride + kernel_w]
                    out[n, o, p, q] = (window * weight[o]).sum() + (0.0 if bias is None else bias[o])
    return out


def naive_max_pool2d(x, kernel, stride):
    batch, channels, height, width = x.shape
    out = np.zeros((batch, channels, (height - kernel) // stride + 1, (width - kernel) // stride + 1))
    for p in range(out.shape[2]):
        for q in range(out.shape[3]):
            out[:, :, p, q] = x[:, :, p * stride : p * stride + kernel, q * stride : q * stride + kernel].max(axis=(2, 3))
    return out


# ----- Conv2d -----------------------------------------------------------------------------------
CONV_CASES = [  # (x shape, weight shape, stride, padding)
    ((2, 1, 5, 5), (3, 1, 3, 3), 1, 0),
    ((1, 2, 6, 5), (2, 2, 3, 2), 1, 1),  # odd sizes, a non-square kernel, padding
    ((2, 3, 7, 6), (2, 3, 3, 3), 2, 0),  # stride 2 leaves the last column out
    ((1, 2, 5, 7), (3, 2, 2, 3), 3, 2),  # stride larger than the kernel: some pixels unread
    ((1, 1, 3, 3), (1, 1, 3, 3), 1, 0),  # one window: a dot product
]


@pytest.mark.parametrize("x_shape, weight_shape, stride, padding", CONV_CASES)
def test_conv2d_matches_the_definition_and_central_differences(x_shape, weight_shape, stride, padding):
    bias_shape = (weight_shape[0],)
    check_op(
        lambda x, weight, bias: F.conv2d(x, weight, bias, stride=stride, padding=padding),
        x_shape, weight_shape, bias_shape,
        reference=lambda x, weight, bias: naive_conv2d(x, weight, bias, stride, padding),
    )


def test_conv2d_without_bias_matches_the_definition_and_central_differences():
    check_op(lambda x, weight: F.conv2d(x, weight, padding=1), (2, 2, 4, 4), (3, 2, 3, 3),
             reference=lambda x, weight: naive_conv2d(x, weight, padding=1))


@st.composite
def conv_settings(draw):
    channels, out_channels = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel_h, kernel_w = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride, padding = draw(st.integers(1, 3)), draw(st.integers(0, 2))
    height = draw(st.integers(max(1, kernel_h - 2 * padding), 6))
    width = draw(st.integers(max(1, kernel_w - 2 * padding), 6))
    batch = draw(st.integers(1, 2))
    return (batch, channels, height, width), (out_channels, channels, kernel_h, kernel_w), stride, padding


@PROPERTY
@given(conv_settings(), st.integers(0, 2**16))
def test_conv2d_gradients_are_right_for_any_shape_stride_and_padding(settings, seed):
    x_shape, weight_shape, stride, padding = settings
    check_op(
        lambda x, weight, bias: F.conv2d(x, weight, bias, stride=stride, padding=padding),
        x_shape, weight_shape, (weight_shape[0],), seed=seed,
        reference=lambda x, weight, bias: naive_conv2d(x, weight, bias, stride, padding),
    )


def test_conv2d_of_a_3x3_image_with_a_2x2_kernel_gives_the_numbers_worked_by_hand():
    x = Tensor(np.arange(1.0, 10.0).reshape(1, 1, 3, 3), requires_grad=True)  # 1 2 3 / 4 5 6 / 7 8 9
    weight = Tensor(np.array([[[[1.0, 0.0], [0.0, -1.0]]]]), requires_grad=True)
    out = F.conv2d(x, weight)
    np.testing.assert_array_equal(out.data, [[[[1 - 5, 2 - 6], [4 - 8, 5 - 9]]]])  # every entry -4
    out.sum().backward()
    # each pixel's gradient: the sum of the kernel entries that touched it (a full convolution)
    np.testing.assert_array_equal(x.grad[0, 0], [[1, 1, 0], [1, 0, -1], [0, -1, -1]])
    # each weight's gradient: the sum of the pixels it touched (a correlation of x with grad_out)
    np.testing.assert_array_equal(weight.grad[0, 0], [[1 + 2 + 4 + 5, 2 + 3 + 5 + 6], [4 + 5 + 7 + 8, 5 + 6 + 8 + 9]])


def test_conv2d_keeps_float32_and_skips_the_input_gradient_it_is_not_asked_for():
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((2, 1, 6, 6)).astype(np.float32))  # images: no gradient wanted
    layer = nn.Conv2d(1, 4, 3, rng=rng)
    out = layer(x)
    assert out.dtype == np.float32
    out.sum().backward()
    assert x.grad is None and layer.weight.grad.dtype == np.float32 and layer.bias.grad.dtype == np.float32


# ----- MaxPool2d ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, kernel, stride", [
    ((2, 2, 4, 4), 2, 2),
    ((1, 2, 5, 7), 2, 2),  # odd sizes: the last row and column are left out
    ((1, 1, 5, 5), 3, 1),  # overlapping windows: a maximum shared by windows gets their sum
    ((2, 1, 6, 6), 3, 2),
    ((1, 1, 4, 4), 1, 1),  # a 1x1 window is the identity
])
def test_max_pool2d_matches_the_definition_and_central_differences(shape, kernel, stride):
    check_op(lambda x: F.max_pool2d(x, kernel, stride), shape, values="distinct",
             reference=lambda x: naive_max_pool2d(x, kernel, stride))


def test_max_pool2d_gives_a_tied_windows_gradient_to_its_first_maximum_in_row_major_order():
    x = Tensor(np.array([[[[1.0, 3.0, 5.0, 5.0],
                           [3.0, 2.0, 5.0, 5.0],
                           [0.0, 0.0, 7.0, 1.0],
                           [0.0, 0.0, 1.0, 7.0]]]]), requires_grad=True)
    out = F.max_pool2d(x, 2)
    np.testing.assert_array_equal(out.data, [[[[3, 5], [0, 7]]]])
    out.backward(np.array([[[[10.0, 20.0], [30.0, 40.0]]]]))
    np.testing.assert_array_equal(x.grad[0, 0], [[0, 10, 20, 0],
                                                 [0, 0, 0, 0],
                                                 [30, 0, 40, 0],
                                                 [0, 0, 0, 0]])


def test_max_pool2d_default_stride_is_the_kernel_size():
    x = Tensor(np.arange(36.0).reshape(1, 1, 6, 6))
    assert F.max_pool2d(x, 3).shape == (1, 1, 2, 2)
    assert F.max_pool2d(x, 3, stride=1).shape == (1, 1, 4, 4)
    assert nn.MaxPool2d(2)(x).shape == (1, 1, 3, 3)


# ----- against PyTorch ---------------------------------------------------------------------------
def test_conv2d_and_max_pool2d_match_pytorch_values_and_gradients_ties_included():
    torch = pytest.importorskip("torch", reason="PyTorch is the optional cross-check")
    rng = np.random.default_rng(1)
    for x_shape, weight_shape, stride, padding in CONV_CASES:
        x, weight, bias = (rng.standard_normal(shape) for shape in (x_shape, weight_shape, weight_shape[:1]))
        ours = [Tensor(array, requires_grad=True) for array in (x, weight, bias)]
        theirs = [torch.tensor(array, requires_grad=True) for array in (x, weight, bias)]
        out = F.conv2d(*ours, stride=stride, padding=padding)
        expected = torch.nn.functional.conv2d(*theirs, stride=stride, padding=padding)
        grad_out = rng.standard_normal(out.shape)
        out.backward(grad_out)
        expected.backward(torch.tensor(grad_out))
        np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
        for mine, torch_tensor in zip(ours, theirs):
            np.testing.assert_allclose(mine.grad, torch_tensor.grad.numpy(), rtol=1e-10, atol=1e-12)

    # small integers: many ties inside windows, overlapping or not
    for kernel, stride in ((2, 2), (3, 1), (3, 2)):
        x = rng.integers(0, 3, (2, 2, 7, 7)).astype(np.float64)
        ours, theirs = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        out = F.max_pool2d(ours, kernel, stride)
        expected = torch.nn.functional.max_pool2d(theirs, kernel, stride)
        grad_out = rng.standard_normal(out.shape)
        out.backward(grad_out)
        expected.backward(torch.tensor(grad_out))
        np.testing.assert_array_equal(out.data, expected.detach().numpy())
        np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=1e-12, atol=1e-12)


# ----- Dropout -----------------------------------------------------------------------------------
def test_dropout_zeroes_about_p_of_the_elements_and_scales_the_rest_by_one_over_one_minus_p():
    x = Tensor(np.ones((200, 100), dtype=np.float32), requires_grad=True)
    out = F.dropout(x, p=0.25, generator=np.random.default_rng(0))
    assert out.dtype == np.float32
    kept = out.data != 0
    assert set(np.unique(out.data)) == {0.0, np.float32(1 / 0.75)}
    assert abs(kept.mean() - 0.75) < 0.01  # 20,000 draws: the standard deviation is 0.003
    grad_out = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    out.backward(grad_out)
    np.testing.assert_allclose(x.grad, grad_out * kept / 0.75, rtol=1e-6)  # dropped elements learn nothing


def test_dropout_is_the_identity_in_eval_mode_and_for_p_zero_and_all_zeros_for_p_one():
    x = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    np.testing.assert_array_equal(F.dropout(x, 1.0).data, np.zeros((2, 3)))


def test_dropout_with_the_same_seed_drops_the_same_elements():
    x = Tensor(np.ones((8, 8)))
    first = F.dropout(x, 0.5, generator=np.random.default_rng(7)).data
    second = F.dropout(x, 0.5, generator=np.random.default_rng(7)).data
    third = F.dropout(x, 0.5, generator=np.random.default_rng(8)).data
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, third)


def test_dropout_gradient_matches_central_differences_for_a_fixed_mask():
    check_op(lambda x: F.dropout(x, 0.4, generator=np.random.default_rng(3)), (4, 5),
             reference=lambda x: x * (np.random.default_rng(3).random((4, 5), dtype=np.float32) >= 0.4) / 0.6)


def test_dropout_layer_follows_train_and_eval_of_the_model_that_holds_it():
    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Dropout(0.5, generator=np.random.default_rng(0))))
    inner = model[1][0]
    x = Tensor(np.ones((3, 4), dtype=np.float32))
    model.eval()
    assert not inner.training
    np.testing.assert_array_equal(inner(x).data, x.data)
    model.train()
    assert inner.training and (inner(x).data == 0).any()


def test_dropout_layer_without_a_generator_draws_from_the_generator_manual_seed_seeds():
    x = Tensor(np.ones((6, 6)))
    manual_seed(5)
    first = nn.Dropout(0.5)(x).data
    manual_seed(5)
    np.testing.assert_array_equal(nn.Dropout(0.5)(x).data, first)


def test_f_dropout_without_a_generator_repeats_after_manual_seed():
    # it drew from a generator of its own that nothing seeded, so no seed made it repeatable
    x = Tensor(np.ones((6, 6)))
    manual_seed(5)
    first = F.dropout(x, 0.5).data
    manual_seed(5)
    np.testing.assert_array_equal(F.dropout(x, 0.5).data, first)
    assert not np.array_equal(F.dropout(x, 0.5).data, first)  # the next call draws the next mask


def test_manual_seed_seeds_weights_and_dropout_from_one_generator():
    x = Tensor(np.ones((4, 8), dtype=np.float32))
    manual_seed(3)
    first = nn.Linear(8, 8).weight.data, F.dropout(x, 0.5).data
    manual_seed(3)
    second = nn.Linear(8, 8).weight.data, F.dropout(x, 0.5).data
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    # one stream, as np.random.default_rng(3) would draw it: the weights, then the mask
    expected = np.random.default_rng(3)
    expected.standard_normal((8, 8))
    keep = expected.random((4, 8), dtype=np.float32) >= 0.5
    np.testing.assert_array_equal(first[1] != 0, keep)


def test_a_generator_passed_to_dropout_is_the_one_drawn_from():
    x = Tensor(np.ones((6, 6)))
    mask = np.random.default_rng(11).random((6, 6), dtype=np.float32) >= 0.5
    np.testing.assert_array_equal(F.dropout(x, 0.5, generator=np.random.default_rng(11)).data != 0, mask)
    manual_seed(0)
    layer_out = nn.Dropout(0.5, generator=np.random.default_rng(11))(x).data
    np.testing.assert_array_equal(layer_out != 0, mask)
    manual_seed(0)
    untouched = np.random.default_rng(0).random()
    assert default_generator.random() == untouched  # the library's generator drew nothing


def test_lenet_draws_its_dropout_masks_from_the_rng_it_was_given():
    # a resumed run restores that one generator's state, so it must hold the masks' draws too
    model = nn.lenet(dropout=0.5, rng=np.random.default_rng(0))
    assert isinstance(model[7], nn.Dropout) and model[7].generator is not None
    x = Tensor(np.ones((2, 1, 28, 28), dtype=np.float32))
    manual_seed(1)
    first = model(x).data
    manual_seed(1)
    assert not np.array_equal(model(x).data, first)  # the model's generator moved on; the library's did not matter


# ----- layers ------------------------------------------------------------------------------------
def test_conv2d_layer_has_pytorch_shapes_and_initial_weights_within_one_over_sqrt_fan_in():
    layer = nn.Conv2d(16, 32, 5, rng=np.random.default_rng(0))
    bound = 1 / np.sqrt(16 * 5 * 5)
    assert layer.weight.shape == (32, 16, 5, 5) and layer.bias.shape == (32,)
    assert layer.weight.dtype == np.float32
    assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.bias.data).max() <= bound
    # uniform on [-b, b] has standard deviation b / sqrt(3)
    assert abs(layer.weight.data.std() - bound / np.sqrt(3)) < 0.05 * bound
    assert nn.Conv2d(1, 2, 3, bias=False).bias is None
    assert [name for name, _ in nn.Sequential(layer).named_parameters()] == ["0.weight", "0.bias"]


def test_conv2d_layer_takes_pairs_for_kernel_stride_and_padding():
    layer = nn.Conv2d(1, 1, (3, 2), stride=(2, 1), padding=(1, 0))
    assert layer(Tensor(np.zeros((1, 1, 5, 5), dtype=np.float32))).shape == (1, 1, 3, 4)


def test_flatten_merges_start_dim_to_end_dim_as_pytorch_does():
    x = Tensor(np.zeros((2, 3, 4, 5)))
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(0, -1)(x).shape == (120,)
    assert nn.Flatten(1, 2)(x).shape == (2, 12, 5)
    assert nn.Flatten(-2)(x).shape == (2, 3, 20)


def test_lenet_maps_a_batch_of_28x28_images_to_ten_logits():
    model = nn.lenet(dropout=0.25, rng=np.random.default_rng(0))
    logits = model(Tensor(random_array((3, 1, 28, 28), np.random.default_rng(0)).astype(np.float32)))
    assert logits.shape == (3, 10) and logits.dtype == np.float32
    assert sum(p.data.size for p in model.parameters()) == 16 * 25 + 16 + 32 * 16 * 25 + 32 + 512 * 10 + 10
    padded = nn.lenet(padding=2, rng=np.random.default_rng(0))  # LeNet-5's 28x28 after the first conv
    assert padded(Tensor(np.zeros((2, 1, 28, 28), dtype=np.float32))).shape == (2, 10)
    assert padded[-1].weight.shape == (10, 32 * 5 * 5)


# ----- errors a user can make --------------------------------------------------------------------
def test_conv2d_on_flat_images_says_which_shape_to_reshape_them_to():
    layer = nn.Conv2d(1, 16, 5)
    with pytest.raises(ValueError, match=r"C=1 channels; got \(64, 784\): reshape to \(64, 1, 28, 28\)"):
        layer(Tensor(np.zeros((64, 784), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"reshape to \(8, 1, 28, 28\)"):
        layer(Tensor(np.zeros((8, 28, 28), dtype=np.float32)))


@pytest.mark.parametrize("call, message", [
    (lambda: F.conv2d(Tensor(np.zeros((1, 3, 5, 5))), Tensor(np.zeros((2, 1, 3, 3)))), r"C=1 channels; got \(1, 3, 5, 5\)"),
    (lambda: F.conv2d(Tensor(np.zeros((1, 1, 2, 2))), Tensor(np.zeros((2, 1, 3, 3)))), "larger than the input"),
    (lambda: F.conv2d(Tensor(np.zeros((1, 1, 5, 5))), Tensor(np.zeros((2, 1, 3, 3))), Tensor(np.zeros(3))), r"bias \(2,\)"),
    (lambda: F.conv2d(Tensor(np.zeros((1, 1, 5, 5))), Tensor(np.zeros((2, 1, 3))), None), "weight"),
    (lambda: F.conv2d(Tensor(np.zeros((1, 1, 5, 5))), Tensor(np.zeros((2, 1, 3, 3))), stride=0), "stride must be"),
    (lambda: F.conv2d(Tensor(np.zeros((1, 1, 5, 5))), Tensor(np.zeros((2, 1, 3, 3))), padding=-1), "padding must be"),
    (lambda: F.max_pool2d(Tensor(np.zeros((4, 784))), 2), r"max_pool2d expects input \(N, C, H, W\)"),
    (lambda: F.max_pool2d(Tensor(np.zeros((4, 28, 28))), 2), r"max_pool2d expects input \(N, C, H, W\); got \(4, 28, 28\): reshape to \(4, 1, 28, 28\)"),
    (lambda: F.max_pool2d(Tensor(np.zeros((1, 1, 3, 3))), 4), "larger than the input"),
    (lambda: F.dropout(Tensor(np.zeros(3)), 1.5), r"p must lie in \[0, 1\]"),
    (lambda: nn.Dropout(-0.1)(Tensor(np.zeros(3))), r"p must lie in \[0, 1\]"),  # F.dropout checks, for both
    (lambda: nn.Dropout(1.5).eval()(Tensor(np.zeros(3))), r"p must lie in \[0, 1\]"),
    (lambda: F.dropout(Tensor(np.zeros(3)), "0.5"), r"p must lie in \[0, 1\], got '0.5'"),
    (lambda: F.conv2d(Tensor(np.zeros((1, 1, 5, 5))), Tensor(np.zeros((2, 1, 3, 3))), stride=1.5), r"conv2d: stride must be .*got 1.5"),
    (lambda: nn.Conv2d(1, 2, 3, padding=-1)(Tensor(np.zeros((1, 1, 5, 5)))), r"conv2d: padding must be an int >= 0"),
    (lambda: nn.Conv2d(1, 2, 0), r"Conv2d: kernel_size must be an int >= 1"),
    (lambda: nn.MaxPool2d(2, stride=0)(Tensor(np.zeros((1, 1, 4, 4)))), r"max_pool2d: stride must be an int >= 1"),
])
def test_shape_and_argument_mistakes_get_one_clear_line(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_ops_are_functions_a_learner_could_have_written():
    # only the public API: forward/backward static methods of Function, nothing private
    for op in (Conv2dOp, MaxPool2dOp):
        assert set(vars(op)) - {"__module__", "__doc__", "_keyword_defaults"} == {"forward", "backward"}


def test_lenet_channels_set_both_convolutions_and_the_linear_layer_follows():
    model = nn.lenet(padding=2, channels=(32, 64), rng=np.random.default_rng(0))
    assert model[0].weight.shape == (32, 1, 5, 5) and model[3].weight.shape == (64, 32, 5, 5)
    assert model[-1].weight.shape == (10, 64 * 5 * 5)
    assert model(Tensor(np.zeros((2, 1, 28, 28), dtype=np.float32))).shape == (2, 10)


def test_under_no_grad_an_op_keeps_no_arrays_for_a_backward_that_cannot_come():
    contexts = []

    class Recording(Conv2dOp):
        @staticmethod
        def forward(ctx, x, weight, bias=None, stride=(1, 1), padding=(0, 0)):
            contexts.append(ctx)
            return Conv2dOp.forward(ctx, x, weight, bias, stride, padding)

    x = Tensor(np.ones((2, 1, 6, 6)))
    weight = Tensor(np.ones((3, 1, 3, 3)), requires_grad=True)
    with tg.no_grad():
        Recording.apply(x, weight)
    Recording.apply(x, Tensor(weight.data))  # no input wants a gradient
    Recording.apply(x, weight)
    assert [len(ctx.saved) for ctx in contexts] == [0, 0, 3]  # the im2col matrix is freed at once
