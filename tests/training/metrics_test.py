"""Top-k hits and the ten-crop average against NumPy."""

import keras
import numpy as np
import tensorflow as tf

from keras_alexnet.data import preprocessing
from keras_alexnet.training import metrics


def test_top_k_correct_matches_numpy():
    rng = np.random.default_rng(0)
    probs = rng.random((64, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 64)
    ranks = (-probs).argsort(axis=1)
    for k in (1, 5):
        expected = sum(label in row[:k] for label, row in zip(labels, ranks))
        assert float(metrics.top_k_correct(tf.constant(labels), tf.constant(probs), k)) == expected
    # k beyond the class count counts every example.
    assert float(metrics.top_k_correct(labels[:4] % 3, probs[:4, :3], 5)) == 4


def test_ten_crop_average_equals_a_hand_computation():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(5, "softmax")]
    )
    # Whole images, not square, so every corner and the centre are other patches.
    images = np.random.default_rng(0).normal(size=(2, 7, 9, 3)).astype(np.float32)
    # The reference: the ten patches of each image one by one (preprocessing.ten_crop).
    patches = np.stack([preprocessing.ten_crop(image, crop=4).numpy() for image in images])
    for index in range(10):
        got = metrics.patch_of_batch(tf.constant(images), tf.constant(index), 4).numpy()
        np.testing.assert_array_equal(got, patches[:, index])
    kernel, bias = (w.numpy() for w in model.weights)
    logits = patches.reshape(2, 10, -1) @ kernel + bias
    softmax = np.exp(logits - logits.max(-1, keepdims=True))
    softmax /= softmax.sum(-1, keepdims=True)
    want = softmax.mean(axis=1)
    got = metrics.average_crops(model, tf.constant(images)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    in_graph = tf.function(lambda x: metrics.average_crops(model, x))(tf.constant(images))
    np.testing.assert_allclose(in_graph.numpy(), want, rtol=1e-5, atol=1e-6)


def test_ties_do_not_count_as_hits():
    classes = 10
    labels = np.arange(100) % classes  # spread evenly over the classes
    uniform = np.full((100, classes), 1.0 / classes, np.float32)
    top1 = float(metrics.top_k_correct(labels, uniform, 1))
    top5 = float(metrics.top_k_correct(labels, uniform, 5))
    # A constant output is right for the lowest class indices only (ties rank by index).
    assert 1 - top1 / 100 >= 1 - 1 / classes and top1 == 10
    assert top5 == 50
    # Probabilities that underflowed to 0: a label among them is not a top-5 hit.
    underflow = np.zeros((1, classes), np.float32)
    underflow[0, 3] = 1.0
    assert float(metrics.top_k_correct([9], underflow, 5)) == 0
    assert float(metrics.top_k_correct([3], underflow, 1)) == 1


def test_ten_patches_go_through_the_model_one_batch_at_a_time():
    """The model sees b patches per call, as for the central patch, never b * 10."""
    largest = tf.Variable(0)

    class Recording(keras.layers.Layer):
        def call(self, x):
            largest.assign(tf.maximum(largest, tf.shape(x)[0]))
            return x

    model = keras.Sequential(
        [keras.Input((4, 4, 3)), Recording(), keras.layers.Flatten(), keras.layers.Dense(5)]
    )
    images = tf.random.normal((3, 7, 9, 3))
    tf.function(lambda x: metrics.average_crops(model, x))(images)
    assert int(largest.numpy()) == 3
