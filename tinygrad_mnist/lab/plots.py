"""Pictures of learning: one figure that shows how a training run went and where the model errs.

    from tinygrad_mnist.lab.plots import plot_training
    plot_training("run.png", step_losses=losses, epoch_accuracies=accuracies,
                  images=test_images, labels=test_labels, logits=test_logits)

The figure has four panels: the training loss at every step (faint) with its smoothed curve, the
test accuracy after each epoch, the confusion matrix (how often class i was predicted as j), and
the test images the model gets most wrong, each with what the model said (and how sure it was)
and the true class (with the probability the model gave it, often a small fraction of a percent).

The numbers behind the panels (`confusion_matrix`, `most_wrong`, `smooth`) are plain numpy and
need nothing else. Drawing needs matplotlib, an optional extra (`pip install -e ".[plots]"`),
imported only when a figure is drawn. The figure is drawn on a bare `matplotlib.figure.Figure`,
never through pyplot, so no window opens and the process's matplotlib backend is left alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .extras import require

FORMATS = (".png", ".svg")
INSTALL_HINT = 'plots need matplotlib: pip install -e ".[plots]"'
SMOOTHING = 0.98  # the loss curve's moving average forgets a step's weight over ~50 steps
WORST_COUNT = 16  # images in the "most wrong" grid
DIGIT_NAMES = [str(digit) for digit in range(10)]  # class names that mean the images are handwritten digits


class MissingMatplotlibError(ImportError):
    """Drawing was asked for, but matplotlib is not installed; str(error) says how to install it."""


def _log_softmax(logits):
    """log p(class) of each row of `logits`, with the max subtracted: no overflow however large."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def confusion_matrix(labels, predictions, num_classes):
    """counts[i, j] = how many examples of true class i were predicted as class j (int64).

    The diagonal holds the correct predictions; each row sums to the number of examples of that
    class, as in sklearn.metrics.confusion_matrix.
    """
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape or labels.ndim != 1:
        raise ValueError(
            f"confusion_matrix needs two 1-D arrays of the same length, got labels {labels.shape} "
            f"and predictions {predictions.shape}"
        )
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.size and (not np.issubdtype(values.dtype, np.integer) or values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"confusion_matrix: {name} must be integers in 0..{num_classes - 1}")
    # each (true, predicted) pair becomes one index into the flattened matrix; bincount counts them
    flat = labels.astype(np.int64) * num_classes + predictions
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def most_wrong(logits, labels, count=WORST_COUNT):
    """Indices of the misclassified examples with the highest loss, worst first (at most `count`).

    The loss of an example is its cross-entropy, -log p(true class): the most wrong image is the
    one that gives its true class the least probability, however the rest is spread.
    """
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (len(logits),):
        raise ValueError(f"most_wrong needs logits (N, classes) and labels (N,), got {logits.shape} and {labels.shape}")
    losses = -_log_softmax(logits)[np.arange(len(labels)), labels]
    wrong = np.flatnonzero(logits.argmax(axis=1) != labels)
    # stable sort on the negated loss: equal losses keep their dataset order
    return wrong[np.argsort(-losses[wrong], kind="stable")][:count]


def smooth(values, decay=SMOOTHING):
    """Exponential moving average with bias correction (as in Adam and TensorBoard).

    out[t] = m[t] / (1 - decay^(t+1)),  m[t] = decay * m[t-1] + (1 - decay) * values[t],  m[-1] = 0.
    The correction removes the pull towards 0 at the start, so a constant stays that constant.
    """
    if not 0 <= decay < 1:
        raise ValueError(f"smooth: decay must be in [0, 1), got {decay}")
    values = np.asarray(values, dtype=np.float64)
    averages, average = np.empty_like(values), 0.0
    for step, value in enumerate(values):
        average = decay * average + (1 - decay) * value
        averages[step] = average / (1 - decay ** (step + 1))
    return averages


def check_plot_path(path):
    """The Path to draw to, after checking that it ends in .png or .svg (ValueError) and that
    matplotlib is installed (MissingMatplotlibError). Call it before a long run, so a figure that
    cannot be drawn is known at the start, not after training."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"plot_training writes .png or .svg, not {path.name!r}; end the path with .png or .svg")
    require("matplotlib.figure", MissingMatplotlibError(INSTALL_HINT))
    return path


def plot_training(path, *, step_losses, epoch_accuracies, images, labels, logits, class_names=None):
    """Draw one figure of a training run to `path` (.png or .svg); returns the Path written.

    step_losses: the training loss of every step, in order. epoch_accuracies: the test accuracy
    (a fraction in [0, 1]) after each epoch. images (N, 28, 28), labels (N,) and logits
    (N, classes): the test set and the trained model's outputs on it. class_names: one name per
    class (default "0", "1", ...).
    """
    path = check_plot_path(path)
    logits, labels, images = np.asarray(logits), np.asarray(labels), np.asarray(images)
    epoch_accuracies = np.asarray(epoch_accuracies, dtype=np.float64)
    num_classes = logits.shape[-1]
    class_names = [str(index) for index in range(num_classes)] if class_names is None else list(class_names)
    if len(class_names) != num_classes:
        raise ValueError(f"plot_training got {len(class_names)} class names for {num_classes} classes")
    if len(images) != len(labels) or len(logits) != len(labels):
        raise ValueError(f"plot_training got {len(images)} images, {len(labels)} labels and {len(logits)} logits; they must pair up")
    if epoch_accuracies.size and not (0 <= epoch_accuracies.min() and epoch_accuracies.max() <= 1):
        raise ValueError("plot_training: epoch_accuracies are fractions in [0, 1]; divide percentages by 100")
    Figure = require("matplotlib.figure", MissingMatplotlibError(INSTALL_HINT)).Figure
    predictions = logits.argmax(axis=1)
    figure = Figure(figsize=(15, 9), layout="constrained")
    top, bottom = figure.subfigures(2, 1, height_ratios=(1.15, 1))
    loss_axes, accuracy_axes, confusion_axes = top.subplots(1, 3, gridspec_kw={"width_ratios": (1.2, 1, 1.1)})
    _draw_losses(loss_axes, step_losses)
    _draw_accuracies(accuracy_axes, epoch_accuracies)
    _draw_confusion(confusion_axes, confusion_matrix(labels, predictions, num_classes), class_names)
    _draw_most_wrong(bottom, images, labels, logits, class_names)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def _draw_losses(axes, step_losses):
    losses = np.asarray(step_losses, dtype=np.float64)
    steps = np.arange(1, len(losses) + 1)
    axes.plot(steps, losses, color="#1565c0", alpha=0.2, linewidth=0.6, label="each step")
    # SMOOTHING 0.98: each step's weight halves every ~35 steps, so the curve is a mean of about the last 50
    axes.plot(steps, smooth(losses), color="#0d47a1", linewidth=1.6,
              label=f"moving average of ~{round(1 / (1 - SMOOTHING))} steps (decay {SMOOTHING})")
    if len(losses) and losses.min() > 0:
        axes.set_yscale("log")  # the loss falls by orders of magnitude; a log axis shows all of it
    axes.set(title="training loss", xlabel="step", ylabel="cross-entropy")
    axes.legend(loc="upper right")
    axes.grid(alpha=0.3)


def _draw_accuracies(axes, epoch_accuracies):
    epochs = np.arange(1, len(epoch_accuracies) + 1)
    axes.plot(epochs, 100 * epoch_accuracies, marker="o", color="#2e7d32")
    for epoch, accuracy in zip(epochs, epoch_accuracies):
        axes.annotate(f"{100 * accuracy:.2f}", (epoch, 100 * accuracy), textcoords="offset points",
                      xytext=(0, 6), ha="center", fontsize=7)
    axes.set(title="test accuracy after each epoch", xlabel="epoch", ylabel="accuracy (%)")
    if len(epochs):
        axes.set_xticks(epochs)
    axes.grid(alpha=0.3)


def _draw_confusion(axes, counts, class_names):
    # a log colour scale: the diagonal holds ~1000 per class, the mistakes a handful
    shown = np.log1p(counts)
    axes.imshow(shown, cmap="Blues")
    threshold = shown.max() / 2
    for true in range(len(counts)):
        for predicted in range(len(counts)):
            if counts[true, predicted]:
                axes.text(predicted, true, str(counts[true, predicted]), ha="center", va="center", fontsize=7,
                          color="white" if shown[true, predicted] > threshold else "black")
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, class_names, rotation=45 if max(map(len, class_names)) > 2 else 0, ha="right" if max(map(len, class_names)) > 2 else "center")
    axes.set_yticks(ticks, class_names)
    axes.set(title="confusion matrix (counts)", xlabel="predicted", ylabel="true")


def _percent(probability):
    """A probability as a percentage that tells small ones apart: 97%, 4.2%, 0.031%, 2e-05%."""
    percent = 100 * probability
    return f"{percent:.0f}%" if percent >= 10 else f"{percent:.2g}%"


def _draw_most_wrong(subfigure, images, labels, logits, class_names):
    worst = most_wrong(logits, labels)
    subfigure.suptitle(f"the {len(worst)} test images with the highest loss among the misclassified")
    columns = WORST_COUNT // 2
    grid = subfigure.subplots(2, columns)
    probabilities = np.exp(_log_softmax(logits))
    for axes, index in zip(grid.flat, list(worst) + [None] * (grid.size - len(worst))):
        axes.set_axis_off()
        if index is None:
            continue
        image = images[index]
        if image.ndim == 1:  # a flattened square image, e.g. (784,)
            side = int(round(np.sqrt(image.size)))
            image = image.reshape(side, side)
        # digits as ink on paper (dark on light); other images (Fashion-MNIST's clothes) as photographed, light on dark
        axes.imshow(image, cmap="gray_r" if class_names == DIGIT_NAMES else "gray")
        predicted, true = int(logits[index].argmax()), int(labels[index])
        axes.set_title(
            f"said {class_names[predicted]} ({_percent(probabilities[index, predicted])})\n"
            f"true {class_names[true]} ({_percent(probabilities[index, true])})",
            fontsize=8, color="#b71c1c",
        )
