"""Small settings that keep training tests to seconds (imported by the test modules)."""

import dataclasses

import numpy as np
import tensorflow as tf

from keras_alexnet import config

# 4 classes of 12 training and 4 validation images: 6 steps an epoch at batch 8.
SHAPES = dict(num_classes=4, train_per_class=12, val_per_class=4, image_size=(64, 80))


def train_config(model_dir, root, **overrides):
    """A TrainConfig for a few steps on an image folder at `root`."""
    base = config.TrainConfig(
        model_dir=str(model_dir),
        dataset="folder",
        data_dir=root,
        batch_size=8,
        epochs=1,
        learning_rate=0.001,
        init="paper",
        stats_images=16,
        verbose=False,
    )
    return dataclasses.replace(base, **overrides)


def damaged_png():
    """A PNG whose structure is whole (IHDR first, IEND last) but whose pixel data is
    damaged: the scan before training passes it, TensorFlow's decoder does not."""
    png = bytearray(tf.io.encode_png(np.full((48, 64, 3), 128, np.uint8)).numpy())
    start = png.index(b"IDAT") + 8
    png[start : start + 40] = bytes(range(40))
    return bytes(png)
