"""Small settings that keep training tests to seconds (imported by the test modules)."""

import dataclasses

from keras_alexnet import train

# 4 classes of 12 training and 4 validation images: 6 steps an epoch at batch 8.
SHAPES = dict(num_classes=4, train_per_class=12, val_per_class=4, image_size=(64, 80))


def train_config(model_dir, root, **overrides):
    """A TrainConfig for a few steps on an image folder at `root`."""
    base = train.TrainConfig(
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
