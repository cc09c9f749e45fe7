"""The training and evaluation steps, on one device and on several replicas."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_alexnet import steps


def test_evaluate_dataset_matches_numpy():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(7, activation="softmax")])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(23, 6)).astype(np.float32)
    y = rng.integers(0, 7, 23).astype(np.int32)
    got = steps.evaluate_dataset(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(5))
    probs = model.predict(x, verbose=0).astype(np.float64)
    ranks = (-probs).argsort(axis=1)
    assert got["count"] == 23
    assert got["loss"] == pytest.approx(-np.log(probs[np.arange(23), y]).mean(), rel=1e-5)
    assert got["top1_error"] == pytest.approx(np.mean(ranks[:, 0] != y))
    assert got["top5_error"] == pytest.approx(np.mean([t not in r[:5] for t, r in zip(y, ranks)]))
