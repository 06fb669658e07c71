"""Pictures of learning: the numbers behind the figure against known values; the figure is a real
PNG or SVG when matplotlib is installed, and a one-line install hint when it is not."""

import sys
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest

from tinygrad_mnist.lab import plots
from tinygrad_mnist.lab.plots import (
    INSTALL_HINT, MissingMatplotlibError, check_plot_path, confusion_matrix, most_wrong, plot_training, smooth,
)


# ----- the numbers ---------------------------------------------------------------------------------
def test_confusion_matrix_counts_true_rows_against_predicted_columns():
    labels = [0, 0, 1, 2, 2, 2]
    predictions = [0, 1, 1, 2, 0, 2]
    expected = np.array([
        [1, 1, 0],  # two 0s: one right, one called 1
        [0, 1, 0],
        [1, 0, 2],  # three 2s: two right, one called 0
    ])
    np.testing.assert_array_equal(confusion_matrix(labels, predictions, 3), expected)


def test_confusion_matrix_keeps_empty_classes_and_sums_to_the_number_of_examples():
    counts = confusion_matrix(np.array([1, 1, 1], dtype=np.uint8), np.array([1, 3, 1], dtype=np.uint8), 5)
    assert counts.shape == (5, 5) and counts.sum() == 3
    assert counts[1, 1] == 2 and counts[1, 3] == 1


def test_confusion_matrix_refuses_labels_outside_the_classes():
    with pytest.raises(ValueError, match=r"labels must be integers in 0..2"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="same length"):
        confusion_matrix([0, 1], [0], 3)


def test_most_wrong_orders_misclassified_examples_by_their_loss():
    logits = np.array([
        [5.0, 0.0, 0.0],  # label 0, right: never chosen
        [0.0, 2.0, 0.0],  # label 0, wrong: p(true) = 1 / (2 + e^2)
        [0.0, 9.0, 0.0],  # label 2, wrong: p(true) = 1 / (2 + e^9), the worst
        [0.0, 0.0, 1.0],  # label 1, wrong: p(true) = 1 / (2 + e), the mildest
    ])
    labels = np.array([0, 0, 2, 1])
    np.testing.assert_array_equal(most_wrong(logits, labels), [2, 1, 3])
    np.testing.assert_array_equal(most_wrong(logits, labels, count=2), [2, 1])


def test_most_wrong_handles_huge_logits_without_overflow():
    logits = np.array([[1000.0, 0.0], [0.0, 1000.0]])
    np.testing.assert_array_equal(most_wrong(logits, np.array([1, 1])), [0])


def test_smooth_is_a_debiased_moving_average():
    # m1 = 0.5*0 + 0.5*0 = 0 -> 0 / (1 - 0.5);  m2 = 0.5*0 + 0.5*1 = 0.5 -> 0.5 / (1 - 0.25) = 2/3
    np.testing.assert_allclose(smooth([0.0, 1.0], decay=0.5), [0.0, 2 / 3])
    np.testing.assert_allclose(smooth(np.full(50, 3.0)), np.full(50, 3.0))  # a constant stays constant
    np.testing.assert_allclose(smooth([4.0, 2.0], decay=0.0), [4.0, 2.0])  # decay 0: no smoothing


# ----- the figure ----------------------------------------------------------------------------------
def run_outputs(seed=0):
    """A fake run: 300 decreasing step losses, 3 epochs, 200 test images of 3 classes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, 200)
    logits = rng.normal(size=(200, 3)) + 3 * np.eye(3)[labels]  # mostly right, some wrong
    images = rng.integers(0, 256, (200, 28, 28), dtype=np.uint8)
    losses = np.exp(-np.arange(300) / 100) + 0.05 * rng.random(300)
    return dict(step_losses=losses, epoch_accuracies=[0.8, 0.9, 0.93], images=images, labels=labels,
                logits=logits, class_names=["zero", "one", "two"])


def test_plot_training_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    written = plot_training(tmp_path / "run.png", **run_outputs())
    data = written.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000  # four panels of lines, text and images, not an empty canvas


def test_plot_training_writes_an_svg_that_parses_and_names_the_classes(tmp_path):
    pytest.importorskip("matplotlib")
    written = plot_training(tmp_path / "sub" / "run.svg", **run_outputs())
    root = ElementTree.parse(written).getroot()
    assert root.tag.endswith("svg")
    text = written.read_text(encoding="utf-8")
    assert "confusion matrix" in text and "two" in text  # titles and class names are kept as text


def test_plot_training_refuses_other_formats_in_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"writes \.png or \.svg, not 'run\.pdf'") as error:
        plot_training(tmp_path / "run.pdf", **run_outputs())
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run.pdf").exists()


def test_plot_training_refuses_percentages_for_accuracies(tmp_path):
    outputs = run_outputs() | {"epoch_accuracies": [80.0, 90.0]}
    with pytest.raises(ValueError, match="divide percentages by 100"):
        plot_training(tmp_path / "run.png", **outputs)


def test_without_matplotlib_plot_training_says_how_to_install_it(tmp_path, monkeypatch):
    # a None entry in sys.modules makes `import matplotlib...` raise ImportError, as if not installed
    for name in [name for name in sys.modules if name == "matplotlib" or name.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(MissingMatplotlibError) as error:
        plot_training(tmp_path / "run.png", **run_outputs())
    assert str(error.value) == INSTALL_HINT == 'plots need matplotlib: pip install -e ".[plots]"'
    assert isinstance(error.value, ImportError)
    assert not (tmp_path / "run.png").exists()
    with pytest.raises(MissingMatplotlibError):
        check_plot_path(tmp_path / "run.svg")  # known before a long run, not after it


def test_check_plot_path_refuses_a_bad_suffix_before_anything_is_drawn(tmp_path):
    with pytest.raises(ValueError, match=r"not 'run\.jpg'; end the path with \.png or \.svg"):
        check_plot_path(tmp_path / "run.jpg")


def test_the_numbers_need_no_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert confusion_matrix([0, 1], [1, 1], 2).tolist() == [[0, 1], [0, 1]]
    assert plots.most_wrong(np.array([[0.0, 1.0]]), np.array([0])).tolist() == [0]


def test_most_wrong_captions_say_what_the_model_said_and_how_small_the_true_class_s_share_was(tmp_path):
    pytest.importorskip("matplotlib")
    logits = np.array([[0.0, 12.0, 0.0], [0.0, 7.0, 3.0], [5.0, 0.0, 0.0]])  # labels 0, 2, 1: all wrong
    written = plot_training(tmp_path / "run.svg", step_losses=[1.0, 0.5], epoch_accuracies=[0.0],
                            images=np.zeros((3, 28, 28)), labels=np.array([0, 2, 1]), logits=logits,
                            class_names=["zero", "one", "two"])
    text = written.read_text(encoding="utf-8")
    # p(true) = 1 / (1 + e^12 + 1) = 6.1e-6 = 0.00061%: not "0%", which every one of the worst would read
    assert "said one (100%)" in text and "true zero (0.00061%)" in text
    assert "true two (1.8%)" in text  # e^3 / (1 + e^7 + e^3)
    assert "moving average of ~50 steps" in text  # the smoothing explained, not "EMA 0.98"


@pytest.mark.parametrize(("class_names", "background"), [(None, 255), (["a", "b", "c"], 0)])
def test_digits_are_drawn_as_ink_on_paper_and_other_images_as_they_are(tmp_path, class_names, background):
    pytest.importorskip("matplotlib")
    import base64
    import io
    import re

    from PIL import Image

    names = [str(index) for index in range(10)] if class_names is None else class_names
    logits = np.zeros((2, len(names)))
    logits[:, 1] = 5.0  # both predicted as class 1, labelled 0: wrong, so both are drawn
    written = plot_training(tmp_path / "run.svg", step_losses=[1.0], epoch_accuracies=[0.5],
                            images=np.zeros((2, 28, 28), dtype=np.uint8), labels=np.array([0, 0]), logits=logits,
                            class_names=class_names)
    embedded = re.findall(r'data:image/png;base64,([A-Za-z0-9+/=\s]+)"', written.read_text(encoding="utf-8"))
    pictures = [np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("L")) for data in embedded]
    digits = [picture for picture in pictures if picture.std() == 0]  # the blank images, not the confusion matrix
    assert digits and all(picture.flat[0] == background for picture in digits)  # a 0 pixel: paper, or the dark
