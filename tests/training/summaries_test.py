"""TensorBoard pictures and scalars."""

import glob

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_alexnet.training import summaries


def test_conv1_grid_puts_each_tower_in_its_own_block():
    kernel = np.zeros((11, 11, 3, 96), np.float32)
    kernel[0, 0, 0, :] = 1.0  # every kernel: one bright red corner pixel, the rest 0
    grid = summaries.conv1_grid(kernel, groups=2, columns=16, gap=1, tower_gap=4, scale=1)[0]
    tower_h = 3 * 12 - 1  # the paper's figure 3: 48 kernels in 3 rows of 16 per tower
    assert grid.shape == (2 * tower_h + 4, 16 * 12 - 1, 3)
    # Kernel 48 (the second tower's first) starts below the first tower and the gap.
    assert grid[tower_h + 4, 0, 0] == 1.0 and grid[tower_h + 4, 0, 1] == 0.0
    assert (grid[tower_h : tower_h + 4] == 1.0).all()  # the gap is white
    # Kernel 17 (the first tower's second row, second column).
    assert grid[12, 12, 0] == 1.0 and grid[12, 11, 0] == 1.0 and grid[12, 13, 0] == 0.0
    with pytest.raises(ValueError, match="groups must divide filters"):
        summaries.conv1_grid(kernel, groups=5)


def test_conv1_grid_is_upscaled_to_be_seen():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(11, 11, 3, 96)).astype(np.float32)
    small = summaries.conv1_grid(kernel, scale=1)[0]
    big = summaries.conv1_grid(kernel)[0]  # the default, as the run writes it
    assert big.shape == (4 * small.shape[0], 4 * small.shape[1], 3) == (296, 764, 3)
    # Nearest neighbour: each pixel a 4x4 block of the same colour.
    np.testing.assert_array_equal(big[::4, ::4], small)
    np.testing.assert_array_equal(big[3::4, 1::4], small)
    with pytest.raises(ValueError, match="scale must be an integer >= 1. Received: scale=0"):
        summaries.conv1_grid(kernel, scale=0)


def test_error_rates_go_to_tensorboard_in_percent():
    got = summaries.in_percent(dict(top1_error=0.25, top5_error=0.0625, cross_entropy=0.7))
    assert got == dict(top1_error_pct=25.0, top5_error_pct=6.25, cross_entropy=0.7)


def test_displayable_adds_the_mean_back_and_clips():
    images = np.array([[[[-200.0, 0.0, 100.0]]]], np.float32)
    got = summaries.displayable(images, mean_rgb=[100.0, 100.0, 100.0])
    np.testing.assert_allclose(got[0, 0, 0], [0.0, 100 / 255, 200 / 255])


def test_writer_writes_scalars_and_pictures_only_when_enabled(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv1")(inputs))
    writer = summaries.Writer(str(tmp_path / "chief"), enabled=True)
    writer.scalars("validation", 3, {"top1_error": 0.25})
    writer.epoch_pictures(model, 3)
    writer.train.flush()
    writer.validation.flush()
    tags = {}
    for path in glob.glob(str(tmp_path / "chief" / "*" / "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags[value.tag] = event.step
    assert tags["top1_error"] == 3 and tags["conv1_kernels"] == 3
    assert "conv1/kernel" in tags
    summaries.Writer(str(tmp_path / "worker"), enabled=False).scalars("train", 1, {"x": 1.0})
    assert not (tmp_path / "worker").exists()
