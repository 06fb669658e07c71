"""PyTorch's everyday toolkit (Tensor methods, layers, norms, pooling, convolution options, Adam, AdamW,
StepLR): each against central differences (check_op) and against PyTorch itself when it is installed,
values and gradients with one random upstream gradient, state_dict round trips included."""

from __future__ import annotations

import numpy as np
import pytest

import tinygrad_mnist as tg
from tinygrad_mnist import Tensor, nn, optim
from tinygrad_mnist import functional as F
from tinygrad_mnist.fused import NormalizeOp

from helpers import check_op


def torch_or_skip():
    return pytest.importorskip("torch", reason="PyTorch is the optional cross-check")


def against_torch(ours, theirs, *arrays, rtol=1e-10, atol=1e-12, seed=0):
    """Run ours(*Tensors) and theirs(*torch tensors) on float64 copies of `arrays`; compare the outputs and,
    with one random upstream gradient, every input's gradient."""
    torch = torch_or_skip()
    mine = [Tensor(np.array(array, dtype=np.float64), requires_grad=True) for array in arrays]
    other = [torch.tensor(np.array(array, dtype=np.float64), requires_grad=True) for array in arrays]
    out, expected = ours(*mine), theirs(*other)
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=rtol, atol=atol)
    grad_out = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(grad_out)
    expected.backward(torch.tensor(grad_out))
    for index, (tensor, torch_tensor) in enumerate(zip(mine, other)):
        if torch_tensor.grad is None:
            assert tensor.grad is None or not tensor.grad.any(), f"input {index}: torch has no gradient"
        else:
            np.testing.assert_allclose(tensor.grad, torch_tensor.grad.numpy(), rtol=rtol, atol=atol, err_msg=f"input {index}")
    return out


# ----- Tensor methods ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, ours, theirs, values", [
    ("min over an axis", lambda x: x.min(1), lambda x: x.amin(1), "distinct"),
    ("min of all", lambda x: x.min(), lambda x: x.min(), "distinct"),
    ("prod of all", lambda x: x.prod(), lambda x: x.prod(), "normal"),
    ("prod over an axis", lambda x: x.prod(0, keepdims=True), lambda x: x.prod(0, keepdim=True), "normal"),
    ("abs", lambda x: x.abs(), lambda x: x.abs(), "nonzero"),
    ("sqrt", lambda x: x.sqrt(), lambda x: x.sqrt(), "positive"),
    ("clamp", lambda x: x.clamp(-0.5, 0.7), lambda x: x.clamp(-0.5, 0.7), "normal"),
    ("clamp below only", lambda x: x.clamp(min=0.1), lambda x: x.clamp(min=0.1), "normal"),
    ("var, unbiased", lambda x: x.var(1), lambda x: x.var(1), "normal"),
    ("var, correction 0, keepdims", lambda x: x.var(0, correction=0, keepdims=True), lambda x: x.var(0, correction=0, keepdim=True), "normal"),
    ("std of all", lambda x: x.std(), lambda x: x.std(), "normal"),
    ("squeeze", lambda x: x.reshape(3, 1, 4).squeeze(), lambda x: x.reshape(3, 1, 4).squeeze(), "normal"),
    ("squeeze one axis", lambda x: x.reshape(1, 3, 1, 4).squeeze(2), lambda x: x.reshape(1, 3, 1, 4).squeeze(2), "normal"),
    ("unsqueeze", lambda x: x.unsqueeze(-1), lambda x: x.unsqueeze(-1), "normal"),
])
def test_tensor_toolkit_methods_match_pytorch_and_central_differences(name, ours, theirs, values):
    check_op(ours, (3, 4), values=values)
    from helpers import random_array
    against_torch(ours, theirs, random_array((3, 4), np.random.default_rng(1), values))


def test_maximum_and_minimum_broadcast_and_split_ties_as_pytorch():
    rng = np.random.default_rng(2)
    check_op(lambda a, b: a.maximum(b), (3, 4), (4,), values="distinct")
    check_op(lambda a, b: a.minimum(b), (3, 1), (1, 4), values="distinct")
    a, b = rng.standard_normal((3, 4)), rng.standard_normal(4)
    a[0, :2] = b[:2]  # ties: each side gets half the gradient, as torch.maximum
    torch = torch_or_skip()
    against_torch(lambda x, y: x.maximum(y), torch.maximum, a, b)
    against_torch(lambda x, y: x.minimum(y), torch.minimum, a, b)
    assert Tensor([1.0, 5.0]).maximum(3.0).data.tolist() == [3.0, 5.0]


def test_clamp_passes_the_gradient_at_its_boundaries_as_pytorch():
    torch = torch_or_skip()
    x = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, np.inf, -np.inf])
    out = against_torch(lambda t: t.clamp(-0.5, 0.5), lambda t: t.clamp(-0.5, 0.5), x)
    assert out.data.tolist() == [-0.5, -0.5, 0.0, 0.5, 0.5, 0.5, -0.5]
    with pytest.raises(ValueError, match="min or max"):
        Tensor(x).clamp()
    with pytest.raises(TypeError, match="numbers"):
        Tensor(x).clamp(Tensor(x))


def test_prod_gradient_is_right_where_inputs_are_zero():
    torch = torch_or_skip()
    x = np.array([[2.0, 0.0, 3.0], [0.0, 0.0, 4.0], [1.0, -2.0, 5.0]])
    for axis in (None, 0, 1):
        against_torch(lambda t: t.prod(axis), (lambda t: t.prod()) if axis is None else (lambda t: t.prod(axis)), x)
    check_op(lambda t: t.prod(1), x)


def test_argmax_and_argmin_give_torch_indices_and_no_gradient():
    torch = torch_or_skip()
    x = np.array([[1.0, 3.0, 3.0], [-1.0, -5.0, 2.0]])  # a tie: the first index, as torch
    tensor = Tensor(x, requires_grad=True)
    for axis in (None, 0, 1):
        for keepdims in (False, True):
            for ours, theirs in ((tensor.argmax, torch.tensor(x).argmax), (tensor.argmin, torch.tensor(x).argmin)):
                got = ours(axis, keepdims=keepdims)
                want = theirs(axis, keepdim=keepdims) if axis is not None else theirs().reshape((1, 1) if keepdims else ())
                assert got.data.tolist() == want.numpy().astype(float).tolist() and not got.requires_grad
    rows = Tensor(np.arange(2.0))
    assert Tensor(x)[rows, Tensor(x).argmax(1)].data.tolist() == [3.0, 2.0]  # whole numbers: usable as an index


def test_cat_and_stack_as_torch_cat_and_torch_stack():
    torch = torch_or_skip()
    rng = np.random.default_rng(3)
    a, b, c = rng.standard_normal((2, 3)), rng.standard_normal((4, 3)), rng.standard_normal((2, 3))
    against_torch(lambda x, y: tg.cat([x, y]), lambda x, y: torch.cat([x, y]), a, b)
    against_torch(lambda x, y: tg.cat([x, y], axis=1), lambda x, y: torch.cat([x, y], dim=1), a, c)
    against_torch(lambda x, y: tg.stack([x, y], axis=-1), lambda x, y: torch.stack([x, y], dim=-1), a, c)
    check_op(lambda x, y, z: tg.cat([x, y, z], axis=0), (2, 3), (4, 3), (1, 3))
    check_op(lambda x, y: tg.stack([x, y], axis=1), (2, 3), (2, 3))
    with pytest.raises(ValueError, match="agree on every other axis"):
        tg.cat([Tensor(a), Tensor(b)], axis=1)
    with pytest.raises(ValueError, match="one shape"):
        tg.stack([Tensor(a), Tensor(b)])


# ----- convolution and pooling options ----------------------------------------------------------
@pytest.mark.parametrize("options", [
    {"dilation": 2},
    {"dilation": (2, 1), "padding": 1, "stride": 2},
    {"groups": 2},
    {"groups": 4, "padding": "same"},
    {"padding": "same", "dilation": 2},
    {"padding": "valid"},
])
@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch's note about its own copy, not ours
def test_conv2d_options_match_pytorch(options):
    torch = torch_or_skip()
    rng = np.random.default_rng(4)
    groups = options.get("groups", 1)
    x, weight, bias = rng.standard_normal((2, 4, 7, 8)), rng.standard_normal((4, 4 // groups, 2, 3)), rng.standard_normal(4)
    against_torch(lambda *t: F.conv2d(*t, **options), lambda *t: torch.nn.functional.conv2d(*t, **options), x, weight, bias)
    check_op(lambda *t: F.conv2d(*t, **options), x[:1], weight, bias)


def test_conv1d_matches_pytorch_with_every_option():
    torch = torch_or_skip()
    rng = np.random.default_rng(5)
    x, weight, bias = rng.standard_normal((2, 4, 9)), rng.standard_normal((6, 4, 3)), rng.standard_normal(6)
    for options in ({}, {"stride": 2, "padding": 1}, {"dilation": 2, "groups": 2}, {"padding": "same"}):
        grouped = weight[:, : 4 // options.get("groups", 1)]
        against_torch(lambda *t: F.conv1d(*t, **options), lambda *t: torch.nn.functional.conv1d(*t, **options), x, grouped, bias)
    check_op(lambda *t: F.conv1d(*t, padding=1), x[:1], weight[:, :, :2], bias)


@pytest.mark.parametrize("options", [
    {"kernel_size": 3, "stride": 2, "padding": 1},
    {"kernel_size": 2, "ceil_mode": True},
    {"kernel_size": 3, "stride": 2, "ceil_mode": True, "padding": 1},
    {"kernel_size": 2, "stride": 1, "dilation": 2},
    {"kernel_size": (2, 3), "stride": (2, 1), "dilation": (2, 1), "padding": (1, 1), "ceil_mode": True},
])
def test_max_pool2d_padding_dilation_and_ceil_mode_match_pytorch(options):
    torch = torch_or_skip()
    rng = np.random.default_rng(6)
    x = rng.permutation(2 * 3 * 7 * 7).reshape(2, 3, 7, 7) * 0.1  # distinct values: no ties
    against_torch(lambda t: F.max_pool2d(t, **options), lambda t: torch.nn.functional.max_pool2d(t, **options), x)
    check_op(lambda t: F.max_pool2d(t, **options), x[:1, :1])


def test_max_pool2d_with_dilation_gives_a_tie_to_the_first_maximum_as_pytorch():
    torch = torch_or_skip()
    x = np.ones((1, 1, 5, 5))
    against_torch(lambda t: F.max_pool2d(t, 2, 1, dilation=2), lambda t: torch.nn.functional.max_pool2d(t, 2, 1, dilation=2), x)


def test_avg_pool2d_and_adaptive_avg_pool2d_match_pytorch():
    torch = torch_or_skip()
    x = np.random.default_rng(7).standard_normal((2, 3, 6, 7))
    for options in ({"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1}, {"kernel_size": (2, 3), "stride": 1}):
        against_torch(lambda t: F.avg_pool2d(t, **options), lambda t: torch.nn.functional.avg_pool2d(t, **options), x)
    against_torch(lambda t: F.adaptive_avg_pool2d(t, 1), lambda t: torch.nn.functional.adaptive_avg_pool2d(t, 1), x)
    against_torch(lambda t: F.adaptive_avg_pool2d(t, (3, 7)), lambda t: torch.nn.functional.adaptive_avg_pool2d(t, (3, 7)), x)
    check_op(lambda t: F.avg_pool2d(t, 3, 2, 1), x[:1])
    assert nn.AdaptiveAvgPool2d((1, 1))(Tensor(x)).shape == (2, 3, 1, 1)
    assert nn.AvgPool2d(2)(Tensor(x)).shape == (2, 3, 3, 3)
    with pytest.raises(ValueError, match="must divide"):
        F.adaptive_avg_pool2d(Tensor(x), (4, 4))


def test_conv_layers_have_pytorch_shapes_and_state_dict_keys():
    torch = torch_or_skip()
    for ours, theirs in ((nn.Conv2d(4, 6, 3, padding="same", dilation=2, groups=2), torch.nn.Conv2d(4, 6, 3, padding="same", dilation=2, groups=2)),
                         (nn.Conv1d(4, 6, 3, groups=2), torch.nn.Conv1d(4, 6, 3, groups=2))):
        state = {name: array.shape for name, array in ours.state_dict().items()}
        assert state == {name: tuple(value.shape) for name, value in theirs.state_dict().items()}
        ours.load_state_dict({name: value.numpy() for name, value in theirs.state_dict().items()})
        x = np.random.default_rng(8).standard_normal((2, 4, 9, 9)[: ours.weight.ndim]).astype(np.float32)
        np.testing.assert_allclose(ours(Tensor(x)).data, theirs(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="stride 1"):
        F.conv2d(Tensor(np.zeros((1, 1, 5, 5))), Tensor(np.zeros((1, 1, 3, 3))), stride=2, padding="same")


# ----- normalization ----------------------------------------------------------------------------
def test_normalize_op_matches_its_composite_and_central_differences():
    def composite(x):
        centered = x - x.mean((0, 2), keepdims=True)
        return centered / ((centered**2).mean((0, 2), keepdims=True) + 1e-5).sqrt()

    x = np.random.default_rng(9).standard_normal((4, 3, 5))
    check_op(lambda t: NormalizeOp.apply(t, axes=(0, 2)), x)
    ours, composed = Tensor(x, requires_grad=True), Tensor(x, requires_grad=True)
    grad_out = np.random.default_rng(1).standard_normal(x.shape)
    NormalizeOp.apply(ours, axes=(0, 2)).backward(grad_out)
    out = composite(composed)
    out.backward(grad_out)
    np.testing.assert_allclose(NormalizeOp.apply(Tensor(x), axes=(0, 2)).data, out.data, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.grad, composed.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("ours_class, theirs_name, shape", [
    (nn.BatchNorm1d, "BatchNorm1d", (8, 3)),
    (nn.BatchNorm1d, "BatchNorm1d", (4, 3, 5)),
    (nn.BatchNorm2d, "BatchNorm2d", (4, 3, 5, 5)),
])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm_trains_and_evaluates_as_pytorch_with_its_running_statistics(ours_class, theirs_name, shape, momentum):
    torch = torch_or_skip()
    rng = np.random.default_rng(10)
    ours = ours_class(3, momentum=momentum, dtype=np.float64)
    theirs = getattr(torch.nn, theirs_name)(3, momentum=momentum, dtype=torch.float64)
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(rng.uniform(0.5, 2, 3)))
        theirs.bias.copy_(torch.tensor(rng.standard_normal(3)))
    ours.load_state_dict({name: value.numpy() for name, value in theirs.state_dict().items()})
    for _ in range(3):  # training: batch statistics, running ones moved
        batch = rng.standard_normal(shape) * 2 + 1
        against_torch(ours, theirs, batch, rtol=1e-9, atol=1e-10)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for name, value in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[name], value.numpy(), rtol=1e-12, err_msg=name)
    assert ours.state_dict()["num_batches_tracked"].dtype == np.int64 and int(ours.num_batches_tracked) == 3
    ours.eval()
    theirs.eval()
    before = ours.state_dict()
    against_torch(ours, theirs, rng.standard_normal(shape), rtol=1e-9, atol=1e-10)  # running statistics
    assert all(np.array_equal(before[name], array) for name, array in ours.state_dict().items())


def test_batch_norm_gradients_agree_with_central_differences():
    layer = nn.BatchNorm2d(2, dtype=np.float64)
    check_op(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), (3, 2, 2, 2), (2,), (2,))
    check_op(lambda x, w, b: F.batch_norm(x, layer.running_mean, layer.running_var, w, b), (3, 2, 2, 2), (2,), (2,))
    with pytest.raises(ValueError, match="more than one value per channel"):
        nn.BatchNorm1d(2)(Tensor(np.zeros((1, 2))))
    with pytest.raises(ValueError, match="4 axes"):
        nn.BatchNorm2d(2)(Tensor(np.zeros((3, 2))))


def test_batch_norm_without_running_statistics_or_affine_as_pytorch():
    torch = torch_or_skip()
    ours = nn.BatchNorm2d(3, affine=False, track_running_stats=False, dtype=np.float64)
    theirs = torch.nn.BatchNorm2d(3, affine=False, track_running_stats=False, dtype=torch.float64)
    assert ours.state_dict() == {} and not theirs.state_dict()
    x = np.random.default_rng(11).standard_normal((4, 3, 2, 2))
    ours.eval()
    theirs.eval()
    against_torch(ours, theirs, x, rtol=1e-9, atol=1e-10)  # batch statistics, even in eval


@pytest.mark.parametrize("make", [
    lambda torch: (nn.LayerNorm(5, dtype=np.float64), torch.nn.LayerNorm(5, dtype=torch.float64)),
    lambda torch: (nn.LayerNorm((4, 5), bias=False, dtype=np.float64), torch.nn.LayerNorm((4, 5), bias=False, dtype=torch.float64)),
    lambda torch: (nn.GroupNorm(2, 4, dtype=np.float64), torch.nn.GroupNorm(2, 4, dtype=torch.float64)),
    lambda torch: (nn.RMSNorm(5, dtype=np.float64), torch.nn.RMSNorm(5, dtype=torch.float64)),
    lambda torch: (nn.RMSNorm((4, 5), eps=1e-3, dtype=np.float64), torch.nn.RMSNorm((4, 5), eps=1e-3, dtype=torch.float64)),
])
def test_layer_group_and_rms_norm_match_pytorch_and_round_trip_their_state(make):
    torch = torch_or_skip()
    ours, theirs = make(torch)
    rng = np.random.default_rng(12)
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.copy_(torch.tensor(rng.standard_normal(tuple(parameter.shape))))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict({name: value.numpy() for name, value in theirs.state_dict().items()})
    x = rng.standard_normal((3, 4, 5))
    against_torch(ours, theirs, x, rtol=1e-9, atol=1e-10)
    for tensor, parameter in zip(ours.parameters(), theirs.parameters()):
        np.testing.assert_allclose(tensor.grad, parameter.grad.numpy(), rtol=1e-9, atol=1e-10)
    assert tg.gradcheck(lambda t: ours(t), [x[:2]])  # the parameters' gradients: against torch above


# ----- embedding and activations ----------------------------------------------------------------
def test_embedding_looks_up_rows_as_pytorch_and_adds_the_gradients_of_repeated_rows():
    torch = torch_or_skip()
    indices = np.array([[0, 2, 2], [3, 1, 0]])
    for padding_idx in (None, 0):
        ours = nn.Embedding(4, 3, padding_idx=padding_idx, dtype=np.float64)
        theirs = torch.nn.Embedding(4, 3, padding_idx=padding_idx, dtype=torch.float64)
        theirs.load_state_dict({"weight": torch.tensor(ours.weight.data)})
        out, expected = ours(indices), theirs(torch.tensor(indices))
        np.testing.assert_array_equal(out.data, expected.detach().numpy())
        grad_out = np.random.default_rng(13).standard_normal(out.shape)
        out.backward(grad_out)
        expected.backward(torch.tensor(grad_out))
        np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-12)
    assert list(ours.state_dict()) == ["weight"]
    with pytest.raises(IndexError, match="0..3"):
        ours(np.array([4]))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_pytorch_in_both_forms(approximate):
    torch = torch_or_skip()
    x = np.linspace(-6, 6, 25)
    against_torch(lambda t: F.gelu(t, approximate), lambda t: torch.nn.functional.gelu(t, approximate=approximate), x)
    check_op(lambda t: nn.GELU(approximate)(t), (3, 4))
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(Tensor(x), "fast")


def test_tanh_and_sigmoid_modules_match_pytorch():
    torch = torch_or_skip()
    x = np.random.default_rng(14).standard_normal((3, 4))
    against_torch(nn.Tanh(), torch.nn.Tanh(), x)
    against_torch(nn.Sigmoid(), torch.nn.Sigmoid(), x)


# ----- a model's state_dict with buffers ---------------------------------------------------------
def test_a_model_with_batch_norm_saves_and_loads_its_buffers_in_pytorchs_order():
    torch = torch_or_skip()
    ours = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    theirs = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8, 3))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [name for name, _ in ours.named_buffers()] == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    assert len(ours.parameters()) == 6  # buffers are not parameters
    x = np.random.default_rng(15).standard_normal((4, 1, 4, 4)).astype(np.float32)
    ours(Tensor(x))
    theirs.load_state_dict({name: torch.tensor(array) for name, array in ours.state_dict().items()})
    ours.eval()
    theirs.eval()
    np.testing.assert_allclose(ours(Tensor(x)).data, theirs(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    copy = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    copy.load_state_dict(ours.state_dict())
    assert all(np.array_equal(copy.state_dict()[name], array) for name, array in ours.state_dict().items())
    state = ours.state_dict()
    state["1.num_batches_tracked"] = np.array(1.0)
    with pytest.raises(TypeError, match="dtype"):
        copy.load_state_dict(state)
    with pytest.raises(TypeError, match="numpy array"):
        nn.Module().register_buffer("running_mean", [0.0])


def test_a_checkpoint_keeps_batch_norm_buffers(tmp_path):
    from tinygrad_mnist.lab.checkpoint import load_checkpoint, save_checkpoint

    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    model(Tensor(np.random.default_rng(16).standard_normal((5, 3))))
    save_checkpoint(tmp_path / "bn.npz", model.state_dict())
    loaded = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    loaded.load_state_dict(load_checkpoint(tmp_path / "bn.npz").model_state)
    assert int(loaded[1].num_batches_tracked) == 1
    np.testing.assert_array_equal(loaded[1].running_var, model[1].running_var)


# ----- optimizers and the schedule ---------------------------------------------------------------
def optimizer_trajectory(make, torch_make, steps=6):
    torch = torch_or_skip()
    rng = np.random.default_rng(17)
    starts = [rng.standard_normal((3, 4)), rng.standard_normal(4)]
    gradients = [[rng.standard_normal(start.shape) * scale for start in starts] for scale in (1.0, 0.01, 100.0, 1.0, 0.1, 3.0)[:steps]]
    ours = [Tensor(start.copy(), requires_grad=True) for start in starts]
    theirs = [torch.tensor(start.copy(), requires_grad=True) for start in starts]
    optimizer, torch_optimizer = make(ours), torch_make(theirs)
    for step in gradients:
        for tensor, torch_tensor, gradient in zip(ours, theirs, step):
            tensor.grad, torch_tensor.grad = gradient.copy(), torch.tensor(gradient)
        optimizer.step()
        torch_optimizer.step()
        for tensor, torch_tensor in zip(ours, theirs):
            np.testing.assert_allclose(tensor.data, torch_tensor.detach().numpy(), rtol=1e-12, atol=1e-14)
    return optimizer, torch_optimizer


@pytest.mark.parametrize("settings", [{}, {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6}, {"weight_decay": 0.1}, {"amsgrad": True, "lr": 0.1}])
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_adam_and_adamw_follow_pytorchs_trajectory_and_state(name, settings):
    torch = torch_or_skip()
    optimizer, torch_optimizer = optimizer_trajectory(lambda params: getattr(optim, name)(params, **settings),
                                                      lambda params: getattr(torch.optim, name)(params, **settings))
    state, torch_state = optimizer.state_dict(), torch_optimizer.state_dict()["state"]
    for index, entries in torch_state.items():
        assert {key for key in state if key.endswith(f".{index}")} == {f"{key}.{index}" for key in entries}
        for key, value in entries.items():
            np.testing.assert_allclose(state[f"{key}.{index}"], value.numpy(), rtol=1e-12, err_msg=key)
    assert state["step.0"].dtype == np.float32 and float(state["step.0"]) == 6


def test_adam_state_dict_round_trip_continues_the_same_trajectory():
    rng = np.random.default_rng(18)
    start, gradients = rng.standard_normal(5), [rng.standard_normal(5) for _ in range(4)]

    def run(steps, optimizer_state=None, parameter=None):
        parameter = parameter if parameter is not None else Tensor(start.copy(), requires_grad=True)
        optimizer = optim.Adam([parameter], lr=0.01)
        if optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
        for gradient in steps:
            parameter.grad = gradient.copy()
            optimizer.step()
        return parameter, optimizer

    straight, _ = run(gradients)
    halfway, optimizer = run(gradients[:2])
    resumed, _ = run(gradients[2:], optimizer.state_dict(), Tensor(halfway.data.copy(), requires_grad=True))
    np.testing.assert_array_equal(resumed.data, straight.data)
    with pytest.raises(ValueError, match="float32"):
        run([], {"step.0": np.array(2.0), "exp_avg.0": np.zeros(5), "exp_avg_sq.0": np.zeros(5)})


def test_adam_first_step_moves_every_weight_by_lr_and_leaves_parameters_without_gradients_alone():
    weight = Tensor(np.array([[1.0, -2.0], [3.0, 0.5]]), requires_grad=True)
    unused = Tensor(np.ones(2, dtype=np.float32), requires_grad=True)
    (weight * Tensor(np.array([[1e-3, 1.0], [1e3, 1.0]]))).sum().backward()
    optimizer = optim.Adam([weight, unused], lr=0.01)
    optimizer.step()
    np.testing.assert_allclose(weight.data, [[0.99, -2.01], [2.99, 0.49]], atol=1e-7)
    assert unused.data.tolist() == [1.0, 1.0] and "step.1" not in optimizer.state_dict()
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([weight], betas=(0.9, 1.0))


def test_step_lr_follows_pytorch_and_round_trips_its_state():
    torch = torch_or_skip()
    parameter = Tensor(np.zeros(1), requires_grad=True)
    optimizer = optim.SGD([parameter], lr=0.5)
    scheduler = optim.StepLR(optimizer, step_size=3, gamma=0.5)
    torch_optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    torch_scheduler = torch.optim.lr_scheduler.StepLR(torch_optimizer, step_size=3, gamma=0.5)
    for _ in range(8):
        assert scheduler.get_last_lr() == pytest.approx(torch_scheduler.get_last_lr())
        assert optimizer.lr == pytest.approx(torch_optimizer.param_groups[0]["lr"])
        torch_optimizer.step()
        scheduler.step()
        torch_scheduler.step()
    other = optim.StepLR(optim.SGD([parameter], lr=0.5), step_size=1)
    other.load_state_dict(scheduler.state_dict())
    assert other.optimizer.lr == optimizer.lr and other.state_dict() == scheduler.state_dict()
    assert scheduler.state_dict()["last_epoch"] == 8


def test_lenet_with_batch_norm_is_the_same_network_as_in_pytorch():
    torch = torch_or_skip()
    ours = nn.lenet(batch_norm=True, rng=np.random.default_rng(19))
    tnn = torch.nn
    theirs = tnn.Sequential(tnn.Conv2d(1, 16, 5, bias=False), tnn.MaxPool2d(2), tnn.BatchNorm2d(16), tnn.ReLU(),
                            tnn.Conv2d(16, 32, 5, bias=False), tnn.MaxPool2d(2), tnn.BatchNorm2d(32), tnn.ReLU(),
                            tnn.Flatten(), tnn.Linear(512, 10))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = np.random.default_rng(20).random((8, 1, 28, 28), dtype=np.float32)
    ours(Tensor(x))  # one training step's statistics, then the same weights and buffers in torch
    theirs.load_state_dict({name: torch.tensor(array) for name, array in ours.state_dict().items()})
    ours.eval()
    theirs.eval()
    np.testing.assert_allclose(ours(Tensor(x)).data, theirs(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-4)


def test_an_op_with_variadic_inputs_gets_its_keyword_defaults_in_ctx_options():
    a, b = Tensor(np.ones((1, 2)), requires_grad=True), Tensor(np.zeros((2, 2)), requires_grad=True)
    out = tg.ops.Cat.apply(a, b)  # axis left out: forward(ctx, *arrays, axis=0)
    assert out.grad_fn.options == {"axis": 0} and out.shape == (3, 2)
    out.backward(np.arange(6.0).reshape(3, 2))
    assert a.grad.tolist() == [[0.0, 1.0]] and b.grad.tolist() == [[2.0, 3.0], [4.0, 5.0]]
