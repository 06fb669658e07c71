"""data: the generic helpers between a dataset's arrays and a training step.

    from tinygrad_mnist.lab.datasets import load_dataset
    from tinygrad_mnist.lab.data import batches, normalize, one_hot
    mnist = load_dataset("mnist")
    for images, labels in batches(mnist.train_images, mnist.train_labels, 64, rng=0):
        inputs = normalize(images, flatten=True)  # float32 (64, 784) in [0, 1]

Loading datasets (IDX files, checksums, downloads) lives in `tinygrad_mnist.lab.datasets`.
"""

from __future__ import annotations

import numbers

import numpy as np


def normalize(images, flatten=False) -> np.ndarray:
    """uint8 pixels 0..255 -> float32 in [0, 1], same shape; flatten=True gives (N, 28*28).

    Call it per batch: the whole training set as float32 takes four times the memory of uint8.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(
            f"normalize expects uint8 pixels 0..255, got {images.dtype}; if the images are already "
            "scaled to [0, 1], do not normalize them twice"
        )
    if flatten:
        if images.ndim < 2:
            raise ValueError(f"normalize(flatten=True) needs a batch of images (N, ...), got shape {images.shape}")
        images = images.reshape(len(images), -1)  # (N, 28, 28) -> (N, 784)
    return np.divide(images, 255, dtype=np.float32)


def one_hot(labels, num_classes=10) -> np.ndarray:
    """Class labels (N,) -> float32 (N, num_classes) with a single 1 per row, at the label."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"one_hot expects a 1-D array of integer labels, got {labels.dtype} of shape {labels.shape}")
    if num_classes < 1:
        raise ValueError(f"one_hot needs num_classes >= 1, got {num_classes}")
    outside = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if outside.size:
        first = outside[0]
        raise ValueError(
            f"one_hot: label {labels[first]} at index {first} is outside 0..{num_classes - 1} "
            f"({outside.size} labels are); pass num_classes= large enough, or fix the labels"
        )
    return np.eye(num_classes, dtype=np.float32)[labels]


def batches(images, labels, batch_size, shuffle=True, rng=None):
    """Iterate over (images_batch, labels_batch) pairs that cover every sample exactly once.

    The last batch holds the remainder when batch_size does not divide N. With shuffle=True the
    order comes from `rng`: a seed (the same seed gives the same order) or an np.random.Generator
    (reuse one across epochs to get a new order each epoch); None means unseeded. Batches are
    copies in the input dtype: convert them (normalize) per batch.
    """
    if len(images) != len(labels):
        raise ValueError(f"batches got {len(images)} images but {len(labels)} labels; they must pair up")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(f"batch_size must be an integer, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if shuffle:
        generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        order = generator.permutation(len(images))
    else:
        order = np.arange(len(images))
    # the checks above run at the call; only the slicing is lazy
    return ((images[indices], labels[indices]) for indices in _split(order, batch_size))


def random_flip(images, rng):
    """A copy of the batch `images` (N, H, W) with a random half mirrored left to right.

    Augmentation for pictures whose mirror image is the same class (a shoe, a shirt), not digits
    (a mirrored 2 is no 2). rng: an np.random.Generator.
    """
    flipped = rng.random(len(images)) < 0.5
    images = images.copy()
    images[flipped] = images[flipped][:, :, ::-1]
    return images


def random_shift(images, rng, max_shift=2):
    """A copy of the batch `images` (N, H, W), each image moved by its own random whole number of
    pixels, -max_shift..max_shift down and across, the uncovered border filled with zeros.

    Augmentation for digits: a 3 two pixels to the left is still a 3, and MNIST's digits are
    centred by their centre of mass only to a pixel or two. rng: an np.random.Generator, drawn
    from once, (N, 2) integers.
    """
    count, height, width = images.shape
    padded = np.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (height, width), axis=(1, 2))  # a view
    offsets = rng.integers(0, 2 * max_shift + 1, (count, 2))  # the top-left corner of each crop
    return windows[np.arange(count), offsets[:, 0], offsets[:, 1]]  # (N, H, W), a copy


def _split(order, batch_size):
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
