"""Small settings that keep training tests to seconds (imported by the test modules).

Where the full size is not what a test is about, it trains `VARIANT`: the paper's layout
(towers, LRN, overlapping pools, dropout) with few channels and 64-unit fc6 and fc7, about
120k parameters instead of 61M. `register()` puts it in `variants.VARIANTS` under "tiny";
`fresh_process` registers it in the tools it starts.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from keras_alexnet.models import variants
from keras_alexnet.training import config

# 4 classes of 12 training and 4 validation images: 6 steps an epoch at batch 8.
SHAPES = dict(num_classes=4, train_per_class=12, val_per_class=4, image_size=(64, 80))

VARIANT = dataclasses.replace(
    variants.VARIANTS["paper"],
    name="tiny",
    source="tests/tiny.py: the paper's layout with few channels, for fast tests.",
    convs=tuple(
        dataclasses.replace(conv, filters=filters, groups=groups)
        for conv, filters, groups in zip(
            variants.VARIANTS["paper"].convs, (12, 32, 48, 48, 32), (1, 2, 1, 2, 2)
        )
    ),
    dense_units=(64, 64),
    departures=("layout",),
)


# Caffe's bvlc_alexnet (its LRN, its biases and init) with the tiny variant's channels and
# fc6, fc7: where a test is about a converted Caffe model's handling, not its size.
CAFFE_VARIANT = dataclasses.replace(
    variants.VARIANTS["caffe"],
    name="tiny_caffe",
    source="tests/tiny.py: Caffe's variant with the tiny variant's channels, for fast tests.",
    convs=tuple(
        dataclasses.replace(conv, filters=small.filters, groups=small.groups)
        for conv, small in zip(variants.VARIANTS["caffe"].convs, VARIANT.convs)
    ),
    dense_units=VARIANT.dense_units,
    departures=("layout", *variants.VARIANTS["caffe"].departures),
)


# The same two passes left out of a run started as a command (see train_config).
FAST_FLAGS = ("--on_bad_image=fail", "--projector_images=0")


def register():
    """Makes the tiny variant known to the package (as "tiny")."""
    variants.VARIANTS.setdefault(VARIANT.name, VARIANT)


def train_config(model_dir, root, **overrides):
    """A TrainConfig for a few steps of the tiny variant on an image folder at `root`."""
    register()
    base = config.TrainConfig(
        model_dir=str(model_dir),
        dataset="folder",
        data_dir=root,
        # The paper's recipe (SGD, the plateau rule) with the few settings below: what the
        # training tests were written for; a folder's own default is "scratch".
        recipe="paper",
        variant=VARIANT.name,
        batch_size=8,
        epochs=1,
        learning_rate=0.001,
        init="paper",
        stats_images=16,
        # Two passes a test is rarely about, each seconds of tracing per run: the decoding
        # of every image before training (a test with damaged images asks for "skip") and
        # the projector's fc7 vectors at the end (projector_test asks for them).
        on_bad_image="fail",
        projector_images=0,
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


def caffe_shapes(num_classes=1000):
    """The tiny variant's blob shapes in Caffe's layout, (out, in / groups, h, w) and (out, in):
    a .caffemodel of these converts with `--variant=tiny`, in a fraction of a second."""
    return {
        "conv1": (12, 3, 11, 11),
        "conv2": (32, 6, 5, 5),
        "conv3": (48, 32, 3, 3),
        "conv4": (48, 24, 3, 3),
        "conv5": (32, 24, 3, 3),
        "fc6": (64, 32 * 6 * 6),
        "fc7": (64, 64),
        "fc8": (num_classes, 64),
    }
