"""Tests for data.py: normalize, one_hot and batches, the helpers between a dataset and a step."""

import numpy as np
import pytest

from tinygrad_mnist.lab.data import batches, normalize, one_hot, random_flip



def test_normalize_maps_uint8_to_float32_between_zero_and_one_keeping_the_shape():
    images = np.array([[[0, 51], [255, 102]]], dtype=np.uint8)  # (1, 2, 2)

    normalized = normalize(images)

    assert normalized.dtype == np.float32 and normalized.shape == (1, 2, 2)
    np.testing.assert_allclose(normalized, [[[0.0, 0.2], [1.0, 0.4]]], rtol=1e-6)


def test_normalize_flattens_a_batch_of_images_when_asked():
    images = np.arange(2 * 28 * 28, dtype=np.int64).reshape(2, 28, 28).astype(np.uint8)

    flat = normalize(images, flatten=True)

    assert flat.shape == (2, 784)
    np.testing.assert_array_equal(flat[1], normalize(images[1]).reshape(-1))


def test_normalize_refuses_images_that_are_already_floats():
    with pytest.raises(TypeError, match="uint8"):
        normalize(np.zeros((2, 2), dtype=np.float32))


def test_one_hot_puts_a_single_one_at_each_label():
    encoded = one_hot(np.array([3, 0, 9], dtype=np.uint8))

    assert encoded.dtype == np.float32 and encoded.shape == (3, 10)
    np.testing.assert_array_equal(encoded.argmax(axis=1), [3, 0, 9])
    np.testing.assert_array_equal(encoded.sum(axis=1), [1, 1, 1])


def test_one_hot_uses_num_classes_for_the_width():
    assert one_hot([0, 2], num_classes=3).tolist() == [[1, 0, 0], [0, 0, 1]]


@pytest.mark.parametrize("labels, message", [([0, 10], "label 10 at index 1"), ([-1, 2], "label -1 at index 0")])
def test_one_hot_names_the_out_of_range_label(labels, message):
    with pytest.raises(ValueError, match=message):
        one_hot(labels)


def test_one_hot_refuses_float_labels():
    with pytest.raises(ValueError, match="integer labels"):
        one_hot(np.array([1.0, 2.0]))


def test_batches_cover_every_sample_exactly_once_with_a_partial_last_batch():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1) * 10
    labels = np.arange(10)

    pairs = list(batches(images, labels, batch_size=4, rng=0))

    assert [len(batch_labels) for _, batch_labels in pairs] == [4, 4, 2]
    seen = np.concatenate([batch_labels for _, batch_labels in pairs])
    assert sorted(seen.tolist()) == list(range(10))
    for batch_images, batch_labels in pairs:  # images stay paired with their labels
        np.testing.assert_array_equal(batch_images[:, 0], batch_labels * 10)
        assert batch_images.dtype == np.uint8


def test_batches_with_the_same_seed_give_the_same_order():
    labels = np.arange(100)

    def order(seed):
        return np.concatenate([batch for _, batch in batches(labels, labels, 32, rng=seed)]).tolist()

    assert order(7) == order(7)
    assert order(7) != order(8)
    assert order(7) != list(range(100))


def test_batches_with_one_generator_reshuffle_every_epoch():
    labels = np.arange(50)
    generator = np.random.default_rng(0)

    first = np.concatenate([batch for _, batch in batches(labels, labels, 50, rng=generator)])
    second = np.concatenate([batch for _, batch in batches(labels, labels, 50, rng=generator)])

    assert first.tolist() != second.tolist()


def test_batches_without_shuffle_keep_the_original_order():
    labels = np.arange(5)

    assert [batch.tolist() for _, batch in batches(labels, labels, 2, shuffle=False)] == [[0, 1], [2, 3], [4]]


@pytest.mark.parametrize("batch_size", [0, -3])
def test_batches_refuse_a_batch_size_below_one_at_the_call(batch_size):
    with pytest.raises(ValueError, match="at least 1"):
        batches(np.zeros(4), np.zeros(4), batch_size)


def test_batches_refuse_images_and_labels_of_different_lengths_at_the_call():
    with pytest.raises(ValueError, match="5 images but 4 labels"):
        batches(np.zeros((5, 2)), np.zeros(4), 2)




def test_random_flip_mirrors_a_random_half_and_leaves_the_batch_it_was_given_alone():
    images = np.arange(200 * 2 * 3, dtype=np.uint8).reshape(200, 2, 3)
    before = images.copy()
    flipped = random_flip(images, np.random.default_rng(0))
    np.testing.assert_array_equal(images, before)
    mirrored = [np.array_equal(out, image[:, ::-1]) for out, image in zip(flipped, images)]
    kept = [np.array_equal(out, image) for out, image in zip(flipped, images)]
    assert all(m != k for m, k in zip(mirrored, kept))  # each image is either mirrored or kept
    assert 70 < sum(mirrored) < 130
    np.testing.assert_array_equal(flipped, random_flip(images, np.random.default_rng(0)))  # seeded


def test_random_shift_moves_each_image_by_at_most_max_shift_and_fills_with_zeros():
    from tinygrad_mnist.lab.data import random_shift

    images = np.zeros((200, 7, 7), dtype=np.uint8)
    images[:, 3, 3] = 255  # one lit pixel in the middle of each image
    shifted = random_shift(images, np.random.default_rng(0), max_shift=2)
    assert shifted.shape == images.shape and shifted.dtype == np.uint8
    rows, cols = np.nonzero(shifted.reshape(200, -1) == 255)[1] // 7, np.nonzero(shifted.reshape(200, -1) == 255)[1] % 7
    assert (shifted > 0).sum(axis=(1, 2)).tolist() == [1] * 200  # moved, not copied or lost
    assert set(rows.tolist()) == set(range(1, 6)) and set(cols.tolist()) == set(range(1, 6))  # every shift in -2..2
    assert images[:, 3, 3].tolist() == [255] * 200  # the input is left as it was
