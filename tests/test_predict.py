"""Your own digit: MNIST's preprocessing of a photo or drawing (tinygrad_mnist/lab/digits.py), and
examples/predict.py as a user runs it.

The main test renders 200 MNIST test digits as a phone photo of paper would show them (280x280,
dark ink, off-centre, on light grey paper with a lighting gradient and noise, half of them saved
as JPEG) and checks that a model trained on MNIST still reads at least 95% of them right.
"""

import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from tinygrad_mnist.lab import models
from tinygrad_mnist.lab.datasets import load_mnist
from tinygrad_mnist.lab.digits import DigitImageError, MissingPillowError, load_digit, preprocess, read_image

Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed (pip install -e \".[images]\")")

REPO = Path(__file__).resolve().parent.parent
PREDICT = REPO / "examples" / "predict.py"
TRAIN = REPO / "examples" / "mnist.py"
CANVAS = 280  # the rendered photo's side
SCALE = 8  # the 28x28 digit is drawn 224x224


def paper(rng, size=CANVAS, noise=4.0):
    """Light grey paper, brighter on one side (a gradient of 30 grey levels in a random direction)."""
    rows, columns = np.mgrid[0:size, 0:size] / size
    angle = rng.uniform(0, 2 * np.pi)
    level = rng.uniform(185, 235) + 30 * (np.cos(angle) * columns + np.sin(angle) * rows - 0.5)
    return level + rng.normal(0, noise, (size, size))


def render(digit, rng, path):
    """Draw a uint8 (28, 28) MNIST digit as dark ink on paper, 8x larger, at a random place."""
    big = np.asarray(Image.fromarray(digit).resize((28 * SCALE, 28 * SCALE), Image.BICUBIC), dtype=np.float64)
    coverage = np.zeros((CANVAS, CANVAS))
    top, left = rng.integers(0, CANVAS - 28 * SCALE + 1, size=2)
    coverage[top : top + 28 * SCALE, left : left + 28 * SCALE] = np.clip(big / 255, 0, 1)
    ink = rng.uniform(20, 70)
    photo = paper(rng) * (1 - coverage) + ink * coverage
    options = {"quality": 85} if path.suffix == ".jpg" else {}
    Image.fromarray(np.clip(photo, 0, 255).round().astype(np.uint8)).save(path, **options)
    return path


def centre_of_mass(image):
    image = image.astype(np.float64)
    indices = np.arange(image.shape[0])
    return (image.sum(axis=1) @ indices / image.sum(), image.sum(axis=0) @ indices / image.sum())


def save(array, path):
    Image.fromarray(np.clip(array, 0, 255).round().astype(np.uint8)).save(path)
    return path


# ----- the preprocessing on drawings with known answers ---------------------------------------------
def test_a_dark_bar_on_light_paper_becomes_a_white_20_pixel_bar_centred_at_pixel_14():
    photo = paper(np.random.default_rng(0), size=200)
    photo[30:150, 120:150] = 40  # a bar 120 tall, 30 wide, far from the centre
    digit = preprocess(photo)
    assert digit.dtype == np.uint8 and digit.shape == (28, 28)
    rows, columns = np.nonzero(digit > 128)
    assert rows.max() - rows.min() + 1 == 20  # the long side fills the 20x20 box
    assert 4 <= columns.max() - columns.min() + 1 <= 6  # 30 / 120 * 20 = 5: the aspect ratio is kept
    np.testing.assert_allclose(centre_of_mass(digit), (14, 14), atol=0.5)
    assert digit.max() == 255 and digit[0].max() == digit[:, 0].max() == 0  # white ink, black field


def test_a_hairline_drawing_is_thickened_to_an_mnist_stroke():
    drawing = np.full((300, 200), 235.0)
    drawing[40:260, 98:101] = 30  # a "1" drawn 3 pixels wide, 220 tall: 0.27 pixel once in 20x20
    digit = preprocess(drawing)
    widths = (digit[8:20] > 128).sum(axis=1)  # the width of the stroke on the rows in the middle
    assert 2 <= widths.min() and widths.max() <= 4  # MNIST's strokes: 3.3 pixels wide (median)
    rows, _ = np.nonzero(digit > 128)
    assert rows.max() - rows.min() + 1 >= 19


def test_light_ink_on_dark_paper_gives_the_same_digit_as_dark_ink_on_light_paper():
    shape = np.zeros((120, 100))
    shape[20:100, 30:45] = 1
    shape[20:35, 30:80] = 1  # an L on its head: a 7-ish shape
    dark_on_light = preprocess(220 - 180 * shape)
    light_on_dark = preprocess(40 + 180 * shape)
    np.testing.assert_array_equal(dark_on_light, light_on_dark)


def test_a_lighting_gradient_alone_is_paper_not_a_digit():
    rows, columns = np.mgrid[0:240, 0:240] / 240
    shaded = 140 + 90 * columns + 30 * rows**2 + np.random.default_rng(1).normal(0, 3, (240, 240))
    with pytest.raises(DigitImageError, match="no digit found"):
        preprocess(shaded)


@pytest.mark.parametrize("level", [255, 0, 128])
def test_a_blank_image_has_no_digit(level):
    with pytest.raises(DigitImageError, match="no digit found: the image is one flat colour"):
        preprocess(np.full((50, 60), level))


def test_an_mnist_digit_passes_through_nearly_unchanged(tmp_path):
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[4:24, 12:16] = 255  # a "1", 20 tall, centred at (13.5, 13.5)
    result = load_digit(save(digit, tmp_path / "one.png"))
    rows, columns = np.nonzero(result)
    assert rows.max() - rows.min() + 1 == 20
    np.testing.assert_allclose(centre_of_mass(result), (14, 14), atol=0.5)


def test_a_transparent_drawing_is_laid_on_white_paper(tmp_path):
    rgba = np.zeros((100, 100, 4), dtype=np.uint8)  # transparent black everywhere ...
    rgba[20:80, 45:55, 3] = 255  # ... but an opaque black stroke
    Image.fromarray(rgba, "RGBA").save(tmp_path / "drawn.png")
    digit = load_digit(tmp_path / "drawn.png")
    rows, _ = np.nonzero(digit > 128)
    assert rows.max() - rows.min() + 1 == 20


def test_files_that_are_not_images_get_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("a seven\n")
    (tmp_path / "empty.png").write_bytes(b"")
    cases = {
        tmp_path / "notes.txt": "notes.txt: not an image Pillow can read; give a PNG or JPEG",
        tmp_path / "empty.png": "empty.png: the file is empty",
        tmp_path / "missing.png": "missing.png: no such file",
    }
    for path, message in cases.items():
        with pytest.raises(DigitImageError, match=message) as error:
            read_image(path)
        assert "\n" not in str(error.value)


def test_without_pillow_reading_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(MissingPillowError, match=r'reading images needs Pillow: pip install -e "\.\[images\]"'):
        read_image(tmp_path / "any.png")


# ----- 200 rendered MNIST test digits, and the script ----------------------------------------------
@pytest.fixture(scope="module")
def trained(mnist_dir, tmp_path_factory):
    """A small model trained by examples/mnist.py (784-128-10, 30000 images, 2 epochs, seed 0), saved."""
    folder = tmp_path_factory.mktemp("predict")
    checkpoint = folder / "run.npz"
    result = subprocess.run(
        [sys.executable, str(TRAIN), "--train-subset", "30000", "--test-subset", "1000", "--epochs", "2",
         "--hidden", "128", "--seed", "0", "--quiet", "--save", str(checkpoint), "--data-dir", str(mnist_dir)],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    sys.path.insert(0, str(REPO / "examples"))
    try:
        import predict
    finally:
        sys.path.remove(str(REPO / "examples"))
    mnist = load_mnist(data_dir=mnist_dir, download=False)
    return predict, models.load_model(checkpoint).eval(), checkpoint, mnist, folder


@pytest.fixture(scope="module")
def rendered(trained):
    """200 test digits (a seeded choice) rendered as photos: (paths, the chosen indices)."""
    _, _, _, mnist, folder = trained
    chosen = np.random.default_rng(12).choice(len(mnist.test_labels), 200, replace=False)
    rng = np.random.default_rng(1)
    paths = [
        render(mnist.test_images[index], rng, folder / f"{number:03d}_{mnist.test_labels[index]}.{'png' if number % 2 else 'jpg'}")
        for number, index in enumerate(chosen)
    ]
    return paths, chosen


@pytest.mark.mnist
def test_rendered_photos_of_200_test_digits_are_read_right_95_percent_of_the_time(trained, rendered):
    predict, model, _, mnist, _ = trained
    paths, chosen = rendered
    labels = mnist.test_labels[chosen]
    seen = np.stack([load_digit(path) for path in paths])
    rendered_accuracy = (predict.classify(model, seen).argmax(axis=1) == labels).mean()
    original_accuracy = (predict.classify(model, mnist.test_images[chosen]).argmax(axis=1) == labels).mean()
    print(f"the same 200 test digits: original 28x28 {original_accuracy:.1%}, rendered photos {rendered_accuracy:.1%}")
    assert rendered_accuracy >= 0.95, f"rendered {rendered_accuracy:.1%}, original 28x28 {original_accuracy:.1%}"
    # the preprocessing undoes the rendering: on average a pixel differs by a few grey levels of 255
    assert np.abs(seen.astype(int) - mnist.test_images[chosen]).mean() < 12


def run_predict(*args):
    return subprocess.run([sys.executable, str(PREDICT), *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.mnist
def test_predict_prints_the_top_3_classes_and_shows_what_the_model_saw(trained, rendered, tmp_path):
    _, _, checkpoint, mnist, _ = trained
    paths, _ = rendered
    result = run_predict(*paths[:3], "--model", checkpoint, "--show", tmp_path / "seen.png")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for path, line in zip(paths[:3], lines):
        assert line.startswith(str(path)) and line.count("%") == 3
        label = path.stem.split("_")[1]
        assert line.split()[1] == f"{label}:"  # the likeliest class comes first, and it is right
    shown = np.asarray(Image.open(tmp_path / "seen.png"))
    side, gap, caption = 28 * SCALE, 12, 40  # examples/predict.py: SHOW_SCALE, SHOW_GAP, SHOW_CAPTION
    assert shown.shape == (side + caption, 3 * side + 2 * gap)
    for index, path in enumerate(paths[:3]):  # each digit 8 times larger, as the model saw it
        tile = shown[:side, index * (side + gap):index * (side + gap) + side]
        np.testing.assert_array_equal(tile, np.kron(load_digit(path), np.ones((SCALE, SCALE), dtype=np.uint8)))
        assert (shown[side:, index * (side + gap):index * (side + gap) + side] < 128).any()  # its caption is written


@pytest.mark.mnist
def test_predict_reports_each_bad_image_in_one_line_and_exits_2(trained, rendered, tmp_path):
    _, _, checkpoint, _, _ = trained
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "empty.jpg").write_bytes(b"")
    white = save(np.full((64, 64), 255), tmp_path / "white.png")
    black = save(np.zeros((64, 64)), tmp_path / "black.png")
    good = rendered[0][0]
    result = run_predict(tmp_path / "notes.txt", tmp_path / "empty.jpg", white, black, good, "--model", checkpoint)
    assert result.returncode == 2
    errors = result.stderr.splitlines()
    assert len(errors) == 4 and all(line.startswith("error: ") for line in errors)
    assert "not an image" in errors[0] and "empty" in errors[1]
    assert "no digit found" in errors[2] and "no digit found" in errors[3]
    assert result.stdout.startswith(str(good))  # the good image is still classified


def test_predict_with_a_bad_model_file_exits_1_with_one_line(tmp_path):
    (tmp_path / "run.npz").write_bytes(b"not a checkpoint")
    save(np.zeros((8, 8)), tmp_path / "digit.png")
    result = run_predict(tmp_path / "digit.png", "--model", tmp_path / "run.npz")
    assert result.returncode == 1
    assert result.stderr.startswith("error: --model") and len(result.stderr.splitlines()) == 1
    result = run_predict(tmp_path / "digit.png", "--model", tmp_path / "run.npz", "--show", tmp_path / "seen.jpg")
    assert result.returncode == 2 and "--show writes a .png file" in result.stderr


def test_predict_feeds_a_cnn_checkpoint_its_images_as_one_channel(tmp_path):
    from tinygrad_mnist import nn

    spec = {"kind": "lenet", "dropout": 0.0, "padding": 0}
    checkpoint = models.save_model(tmp_path / "cnn.npz", nn.lenet(rng=np.random.default_rng(0)), spec)
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[6:22, 12:16] = 255  # a "1"
    save(255 - np.kron(digit, np.ones((10, 10), dtype=np.uint8)), tmp_path / "one.png")
    result = run_predict(tmp_path / "one.png", "--model", checkpoint)
    assert result.returncode == 0, result.stderr
    assert len(re.findall(r"\d: +\d+\.\d%", result.stdout)) == 3


# ----- issue 18, items 6, 12, 14, 15: bounded, finite, every image read on its own -------------------
def png_declaring(width, height, color_type=0):
    """A PNG whose header declares width x height pixels (grey, or RGB for color_type 2), followed by a
    few bytes of pixels: a file of 69 bytes that a reader trusting the header decodes into gigabytes."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")


def gif_declaring(width, height):
    return (b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + b"," + struct.pack("<HHHHB", 0, 0, width, height, 0)
            + b"\x02\x02\x44\x01\x00;")


def jpeg_declaring(width, height):
    return b"\xff\xd8\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00\xff\xd9"


BOMBS = {  # file name -> (bytes, what the one line says)
    "rgb_9400x9400.png": (png_declaring(9400, 9400, color_type=2), "9400x9400 pixels (88.4 million), more than the 50 million"),
    "thin_1x80000000.png": (png_declaring(1, 80_000_000), "1x80000000 pixels (80.0 million)"),
    "thin_1000000x80.png": (png_declaring(1_000_000, 80), "1000000x80 pixels (80.0 million)"),
    "big_14200x14200.png": (png_declaring(14200, 14200), "declares 201,640,000 pixels, more than the 50,000,000"),
    "huge.gif": (gif_declaring(65535, 65535), "declares 4,294,836,225 pixels"),
    "huge.jpg": (jpeg_declaring(65500, 65500), "declares 4,290,250,000 pixels"),
    "largest.png": (png_declaring(2**31 - 1, 2**31 - 1), "declares 4,611,686,014,132,420,609 pixels"),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_an_image_declaring_too_many_pixels_is_refused_from_its_header_in_one_line(name, tmp_path):
    content, phrase = BOMBS[name]
    (tmp_path / name).write_bytes(content)
    # in a child process, to measure its peak memory: the header is read, no pixel is decoded.
    # VmHWM is the peak of this program's own memory (getrusage's maxrss would count the parent's
    # at the fork, pytest's hundreds of MB)
    code = ("import re, sys\nfrom tinygrad_mnist.lab.digits import DigitImageError, read_image\n"
            "try:\n    read_image(sys.argv[1])\nexcept DigitImageError as error:\n    print(error)\n"
            "print(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1))\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / name)], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    message, peak_kb = result.stdout.splitlines()
    assert phrase in message and "shrink or crop the picture first" in message, message
    assert int(peak_kb) < 150_000, f"peak {int(peak_kb) // 1024} MB for a {len(content)}-byte file"


@pytest.mark.parametrize("width, height, phrase", [
    (1, 1, "1x1 pixels, too small to show a digit"),
    (1, 2, "1x2 pixels, too small"),
    (2, 2, "2x2 pixels, too small"),
    (1, 500, "1x500 pixels, too small"),
    (1000, 30, "1000x30 pixels, too thin for a digit"),
])
def test_tiny_and_thin_pictures_get_one_clear_line(width, height, phrase, tmp_path):
    # before: LinAlgError: Singular matrix, from the paper's fit
    path = save(np.full((height, width), 200), tmp_path / "small.png")
    with pytest.raises(DigitImageError, match=phrase) as raised:
        load_digit(path)
    assert "\n" not in str(raised.value)


def test_preprocess_fits_the_paper_of_a_short_wide_picture_without_a_singular_matrix():
    drawing = np.full((8, 160), 220.0)
    drawing[1:7, 70:74] = 30  # a short stroke on a strip 8 pixels tall
    assert preprocess(drawing).max() == 255


def blob(size=300):
    """A dark disk on paper: ink enough for a digit, but no digit."""
    rows, columns = np.mgrid[0:size, 0:size]
    picture = paper(np.random.default_rng(3), size)
    picture[(rows - size / 2) ** 2 + (columns - size / 2) ** 2 < (size / 5) ** 2] = 30
    return picture


def dots(size=300):
    """Four dark dots in the corners: four pieces of ink."""
    rows, columns = np.mgrid[0:size, 0:size]
    picture = paper(np.random.default_rng(4), size)
    for row, column in ((60, 60), (60, 240), (240, 60), (240, 240)):
        picture[np.hypot(rows - row, columns - column) < 22] = 30
    return picture


def word():
    """A word written across the picture: squeezed into the 20x20 box, it is a few pixels tall."""
    from PIL import ImageDraw, ImageFont

    image = Image.new("L", (400, 120), 220)
    ImageDraw.Draw(image).text((10, 30), "hello world", fill=20, font=ImageFont.load_default(size=40))
    return np.asarray(image, dtype=np.float64)


def test_a_blob_dots_and_a_word_are_probably_not_digits():
    from tinygrad_mnist.lab.digits import not_a_digit

    assert "covers 40% of the 28x28 field" in not_a_digit(preprocess(blob()))
    assert "falls into 4 separate pieces" in not_a_digit(preprocess(dots()))
    assert "pixels tall in the 28x28 field" in not_a_digit(preprocess(word()))


@pytest.mark.mnist
def test_the_not_a_digit_rule_lets_through_99_7_percent_of_mnist_test_digits(mnist_dir):
    from tinygrad_mnist.lab.digits import not_a_digit

    test_images = load_mnist(data_dir=mnist_dir, download=False).test_images
    refused = sum(not_a_digit(image) is not None for image in test_images)
    assert refused == 25  # of 10,000 (docs/your-digit.md)


def small_model(path, layer_sizes=(784, 16, 10), scale=1.0):
    from tinygrad_mnist import nn

    model = nn.mlp(list(layer_sizes), rng=np.random.default_rng(0))
    for parameter in model.parameters():
        parameter.data *= np.float32(scale)
    return models.save_model(path, model, {"kind": "mlp", "layer_sizes": list(layer_sizes)})


def a_one(path):
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[6:22, 12:16] = 255
    return save(255 - np.kron(digit, np.ones((10, 10), dtype=np.uint8)), path)


def test_predict_reads_every_image_it_can_and_exits_2_when_any_failed(tmp_path):
    # before: the first bomb's DecompressionBombError aborted the whole batch with a traceback
    checkpoint = small_model(tmp_path / "m.npz")
    (tmp_path / "huge.gif").write_bytes(gif_declaring(65535, 65535))
    save(np.full((2, 2), 200), tmp_path / "tiny.png")
    save(blob(), tmp_path / "blob.png")
    save(dots(), tmp_path / "dots.png")
    images = [tmp_path / "huge.gif", a_one(tmp_path / "one.png"), tmp_path / "tiny.png", tmp_path / "blob.png",
              tmp_path / "dots.png", a_one(tmp_path / "another.png")]
    result = run_predict(*images, "--model", checkpoint)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = result.stderr.splitlines()
    assert len(errors) == 4 and all(line.startswith("error: ") for line in errors), result.stderr
    assert "huge.gif: the image declares" in errors[0] and "tiny.png: 2x2 pixels" in errors[1]
    assert "blob.png: probably not a digit" in errors[2] and "dots.png: probably not a digit" in errors[3]
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [str(tmp_path / "one.png"), str(tmp_path / "another.png")]
    assert all(line.count("%") == 3 and "nan" not in line for line in lines)


@pytest.mark.parametrize("script", ["predict", "to_torch"])
@pytest.mark.parametrize("case, phrase", [
    ("scaled by 1e30", "holds a model whose outputs are not finite (NaN or inf) though its weights are"),
    ("100 inputs", "holds a model for 100 inputs, not the 784 pixels of a 28x28 image"),
    ("rng 5", "its record's model is unusable"),
])
def test_a_model_that_cannot_classify_28x28_images_is_one_line_in_predict_and_to_torch(script, case, phrase, tmp_path):
    # before: "0: nan%", or a traceback from Linear's shape check
    path = tmp_path / "m.npz"
    if case == "scaled by 1e30":
        small_model(path, scale=1e30)
    elif case == "100 inputs":
        small_model(path, layer_sizes=(100, 16, 10))
    else:
        from tinygrad_mnist import nn
        from tinygrad_mnist.lab.checkpoint import save_checkpoint

        save_checkpoint(path, nn.mlp([784, 16, 10]).state_dict(), model={"kind": "mlp", "layer_sizes": [784, 16, 10], "rng": 5})
    if script == "predict":
        result = run_predict(a_one(tmp_path / "one.png"), "--model", path)
    else:
        pytest.importorskip("torch")
        result = subprocess.run([sys.executable, str(REPO / "examples" / "to_torch.py"), str(path)], capture_output=True,
                                text=True, timeout=300, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 1 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and phrase in result.stderr, result.stderr
