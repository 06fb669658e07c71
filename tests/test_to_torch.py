"""The way out to PyTorch: to_torch / from_torch keep every weight bit for bit and the logits the
same, and examples/to_torch.py moves a saved model over and back. Skips without torch."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinygrad_mnist as tg
from tinygrad_mnist import Tensor, nn
from tinygrad_mnist.lab import models
from tinygrad_mnist.lab.data import normalize
from tinygrad_mnist.lab.datasets import load_mnist
from tinygrad_mnist.lab.interop import INSTALL_HINT, MissingTorchError, UnsupportedLayerError, from_torch, to_torch

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "examples" / "to_torch.py"
TRAIN = REPO / "examples" / "mnist.py"


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch)")


def our_model(dtype=np.float32):
    rng = np.random.default_rng(0)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 32, rng=rng, dtype=dtype),
        nn.LeakyReLU(0.2),
        nn.Linear(32, 16, bias=False, rng=rng, dtype=dtype),
        nn.ReLU(),
        nn.Linear(16, 10, rng=rng, dtype=dtype),
    )


def logits_of(model, inputs):
    with tg.no_grad():
        return model(Tensor(inputs)).data


def torch_logits(torch, model, inputs):
    with torch.no_grad():
        return model(torch.from_numpy(inputs)).numpy()


def images(dtype=np.float32, count=64):
    return np.random.default_rng(1).normal(size=(count, 28, 28)).astype(dtype)  # negatives exercise the slopes


# ----- the conversions -----------------------------------------------------------------------------
def test_to_torch_copies_every_layer_and_weight_and_keeps_the_names(torch):
    model = our_model()
    converted = to_torch(model)
    assert [type(layer).__name__ for layer in converted] == ["Flatten", "Linear", "LeakyReLU", "Linear", "ReLU", "Linear"]
    assert converted[2].negative_slope == 0.2
    theirs = converted.state_dict()
    ours = model.state_dict()
    assert list(theirs) == list(ours) == ["1.weight", "1.bias", "3.weight", "5.weight", "5.bias"]
    for name, array in ours.items():
        assert theirs[name].dtype == torch.float32
        np.testing.assert_array_equal(theirs[name].numpy(), array)  # (out, in) in both: not transposed
    model[1].weight.data[0, 0] = 123.0  # copies, not views: the torch model does not change
    assert converted[1].weight[0, 0].item() != 123.0


def test_to_torch_gives_the_same_logits_in_float64_and_float32(torch):
    model64 = our_model(np.float64)
    inputs = images(np.float64)
    difference = np.abs(logits_of(model64, inputs) - torch_logits(torch, to_torch(model64), inputs)).max()
    assert difference <= 1e-10  # the same weights and maths: only the order of additions differs
    model32 = our_model(np.float32)
    inputs = images(np.float32)
    np.testing.assert_allclose(torch_logits(torch, to_torch(model32), inputs), logits_of(model32, inputs), rtol=1e-5, atol=1e-5)


def test_from_torch_rebuilds_the_layers_and_keeps_the_dtype(torch):
    torch.manual_seed(0)
    torch_model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 20), torch.nn.LeakyReLU(0.3),
                                      torch.nn.Linear(20, 10)).double()
    model = from_torch(torch_model)
    assert [type(layer).__name__ for layer in model] == ["Flatten", "Linear", "LeakyReLU", "Linear"]
    assert model[2].negative_slope == 0.3 and model[1].weight.dtype == np.float64
    assert all(parameter.requires_grad for parameter in model.parameters())  # it can be trained on
    inputs = images(np.float64)
    assert np.abs(logits_of(model, inputs) - torch_logits(torch, torch_model, inputs)).max() <= 1e-10


def test_to_torch_and_back_is_bit_for_bit(torch):
    model = our_model()
    back = from_torch(to_torch(model))
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[name], array)
    np.testing.assert_array_equal(logits_of(back, images()), logits_of(model, images()))


def test_flatten_keeps_its_axes_both_ways(torch):
    there = to_torch(nn.Sequential(nn.Flatten(start_dim=2)))
    assert (there[0].start_dim, there[0].end_dim) == (2, -1)
    back = from_torch(torch.nn.Sequential(torch.nn.Flatten(0, 2)))
    assert (back[0].start_dim, back[0].end_dim) == (0, 2)


# ----- the CNN ---------------------------------------------------------------------------------------
def cnn(dtype=np.float32):
    """nn.lenet with LeNet-5's padding, a stride and dropout: every setting the rows carry."""
    rng = np.random.default_rng(2)
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2, rng=rng, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, stride=2, padding=(1, 0), rng=rng, dtype=dtype), nn.LeakyReLU(0.1), nn.MaxPool2d(3, stride=2),
        nn.Conv2d(8, 4, 1, bias=False, rng=rng, dtype=dtype),
        nn.Flatten(), nn.Dropout(0.25), nn.Linear(4 * 2 * 3, 10, rng=rng, dtype=dtype),
    )


def test_a_cnn_goes_to_torch_with_every_layer_and_setting(torch):
    model = cnn()
    converted = to_torch(model)
    assert [type(layer).__name__ for layer in converted] == [
        "Conv2d", "ReLU", "MaxPool2d", "Conv2d", "LeakyReLU", "MaxPool2d", "Conv2d", "Flatten", "Dropout", "Linear"]
    assert (converted[0].padding, converted[3].stride, converted[3].padding) == ((2, 2), (2, 2), (1, 0))
    assert (converted[5].kernel_size, converted[5].stride, converted[8].p) == (3, 2, 0.25)
    assert converted[6].bias is None
    assert list(converted.state_dict()) == list(model.state_dict())
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(converted.state_dict()[name].numpy(), array)  # (out, in, kh, kw) in both


def test_a_cnn_s_logits_agree_with_pytorch_in_float64_and_float32_and_come_back_bit_for_bit(torch):
    inputs = np.random.default_rng(3).normal(size=(16, 1, 28, 28))
    model64 = cnn(np.float64).eval()
    assert np.abs(logits_of(model64, inputs) - torch_logits(torch, to_torch(model64).eval(), inputs)).max() <= 1e-10
    model = cnn().eval()  # no dropout: both libraries compute the same function
    torch_model = to_torch(model).eval()
    inputs = inputs.astype(np.float32)
    np.testing.assert_allclose(torch_logits(torch, torch_model, inputs), logits_of(model, inputs), rtol=1e-5, atol=1e-5)
    back = from_torch(torch_model).eval()
    assert [type(layer) for layer in back] == [type(layer) for layer in model]
    np.testing.assert_array_equal(logits_of(back, inputs), logits_of(model, inputs))


@pytest.mark.mnist
def test_lenet_on_1000_test_images_matches_pytorch_within_float32_rounding_and_back_bit_for_bit(torch, mnist_dir):
    model = nn.lenet(dropout=0.25, rng=np.random.default_rng(0)).eval()
    inputs = normalize(load_mnist(data_dir=mnist_dir, download=False).test_images[:1000]).reshape(-1, 1, 28, 28)
    ours = logits_of(model, inputs)
    torch_model = to_torch(model).eval()
    np.testing.assert_allclose(torch_logits(torch, torch_model, inputs), ours, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(logits_of(from_torch(torch_model).eval(), inputs), ours)


class Softplus(nn.Module):
    """log(1 + e^x): a layer of a learner's own, with no PyTorch counterpart in to_torch."""

    def forward(self, x):
        return (x.exp() + 1).log()


def test_an_unsupported_layer_gets_one_line_naming_it(torch):
    with pytest.raises(UnsupportedLayerError, match=r"^to_torch: layer 1 is Softplus, which the converter does not know; "
                       r"it converts Linear, Conv2d, ReLU, LeakyReLU, MaxPool2d, Dropout, Flatten \(a new layer is one row of LAYERS\)$"):
        to_torch(nn.Sequential(nn.Linear(4, 4), Softplus()))
    with pytest.raises(UnsupportedLayerError, match=r"from_torch: layer 1 is Tanh\(\)"):
        from_torch(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh()))
    with pytest.raises(UnsupportedLayerError, match=r"from_torch: layer 0 is Conv2d\(.*\), whose groups=2 this package's Conv2d does not have"):
        from_torch(torch.nn.Sequential(torch.nn.Conv2d(2, 2, 3, groups=2)))
    with pytest.raises(UnsupportedLayerError, match=r"layer 1 is MaxPool2d\(.*\), whose ceil_mode=True"):
        from_torch(torch.nn.Sequential(torch.nn.ReLU(), torch.nn.MaxPool2d(2, ceil_mode=True)))
    with pytest.raises(UnsupportedLayerError, match=r"whose padding='same'"):
        from_torch(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding="same")))
    with pytest.raises(TypeError, match="to_torch converts an nn.Sequential, got Linear"):
        to_torch(nn.Linear(4, 4))
    with pytest.raises(TypeError, match="convert the model with .float"):
        from_torch(torch.nn.Sequential(torch.nn.Linear(4, 4).half()))


def test_without_torch_the_conversion_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(MissingTorchError) as error:
        to_torch(our_model())
    assert str(error.value) == INSTALL_HINT and isinstance(error.value, ImportError)


# ----- a trained model and the script ----------------------------------------------------------------
@pytest.mark.mnist
def test_the_script_moves_a_saved_model_to_torch_and_back_with_the_same_logits(torch, mnist_dir, tmp_path):
    checkpoint = tmp_path / "run.npz"
    trained = subprocess.run(
        [sys.executable, str(TRAIN), "--train-subset", "3000", "--test-subset", "500", "--epochs", "1",
         "--hidden", "64", "--quiet", "--save", str(checkpoint), "--data-dir", str(mnist_dir)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert trained.returncode == 0, trained.stderr
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(checkpoint), "--out", str(tmp_path / "model.pt"),
         "--back", str(tmp_path / "back.npz"), "--data-dir", str(mnist_dir)],
        capture_output=True, text=True, timeout=300, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "float64, tinygrad_mnist vs PyTorch: max |logit difference|" in result.stdout
    assert "same predicted class for 10000/10000" in result.stdout

    # what a PyTorch user does with the file: a plain nn.Sequential and load_state_dict
    torch_model = torch.nn.Sequential(torch.nn.Linear(784, 64), torch.nn.LeakyReLU(0.01), torch.nn.Linear(64, 10))
    torch_model.load_state_dict(torch.load(tmp_path / "model.pt"))
    original, back = models.load_model(checkpoint), models.load_model(tmp_path / "back.npz")
    inputs = normalize(load_mnist(data_dir=mnist_dir, download=False).test_images[:2000], flatten=True)
    ours = logits_of(original, inputs)
    np.testing.assert_array_equal(logits_of(back, inputs), ours)  # there and back: the same weights exactly
    np.testing.assert_allclose(torch_logits(torch, torch_model, inputs), ours, rtol=1e-5, atol=1e-5)
    ours64 = logits_of(from_torch(torch_model.double()), inputs.astype(np.float64))
    theirs64 = torch_logits(torch, torch_model, inputs.astype(np.float64))
    assert np.abs(ours64 - theirs64).max() <= 1e-5


@pytest.mark.mnist
def test_the_script_moves_a_cnn_checkpoint_to_torch_and_back(torch, mnist_dir, tmp_path):
    checkpoint = tmp_path / "cnn.npz"
    spec = {"kind": "lenet", "dropout": 0.25, "padding": 2, "channels": [4, 8]}
    models.save_model(checkpoint, models.build_model(spec, rng=np.random.default_rng(0)), spec)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(checkpoint), "--out", str(tmp_path / "model.pt"),
         "--back", str(tmp_path / "back.npz"), "--data-dir", str(mnist_dir), "--images", "1000"],
        capture_output=True, text=True, timeout=300, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "same predicted class for 1000/1000 test images" in result.stdout
    assert "(0): Conv2d(1, 4, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))" in result.stdout
    assert "back from PyTorch vs the original: max |logit difference| 0.00e+00" in result.stdout
    original, back = models.load_model(checkpoint), models.load_model(tmp_path / "back.npz")
    for name, array in original.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[name], array)
    torch_model = to_torch(original)
    torch_model.load_state_dict(torch.load(tmp_path / "model.pt"))  # the file holds the same weights


def test_the_script_names_a_layer_it_cannot_convert_in_one_line(torch, tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(REPO / "examples"))
    try:
        import to_torch as script
    finally:
        sys.path.remove(str(REPO / "examples"))
    monkeypatch.setattr(script.models, "load_model", lambda path: nn.Sequential(nn.Flatten(), nn.Linear(784, 10), Softplus()))
    monkeypatch.setattr(script, "load_checkpoint", lambda path: type("Checkpoint", (), {"meta": {"model": {}}}))
    monkeypatch.setattr(script, "load_mnist", lambda data_dir: type("Data", (), {"test_images": np.zeros((3, 28, 28), np.uint8)}))
    with pytest.raises(SystemExit) as stopped:
        script.main([str(tmp_path / "run.npz")])
    assert str(stopped.value) == (f"error: {tmp_path / 'run.npz'}: to_torch: layer 2 is Softplus, which the converter does not know; "
                                  "it converts Linear, Conv2d, ReLU, LeakyReLU, MaxPool2d, Dropout, Flatten (a new layer is one row of LAYERS)")


def test_the_pytorch_page_s_torch_blocks_run(torch, tmp_path, monkeypatch):
    # docs/pytorch.md marks the blocks that need torch `python no-run needs-torch`: tests/test_docs.py
    # skips them (it runs without torch), and they run here, where torch is installed
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from test_docs import python_blocks
    finally:
        sys.path.remove(str(REPO / "tests"))
    text = (REPO / "docs" / "pytorch.md").read_text(encoding="utf-8")
    marked = [line for line in text.splitlines() if line.strip().startswith("```python") and "needs-torch" in line]
    blocks = [code for _, code in python_blocks(text.replace(" no-run needs-torch", ""))]
    runnable = [code for code in blocks if "import torch" in code and "torch.load" not in code]
    assert len(marked) == len(runnable) == 1
    monkeypatch.chdir(tmp_path)
    exec(compile(runnable[0], str(REPO / "docs" / "pytorch.md"), "exec"), {})
