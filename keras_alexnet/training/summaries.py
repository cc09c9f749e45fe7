"""What a training run shows in TensorBoard.

Scalars (error rates in percent, `in_percent`), the conv1 kernels as the paper's figure 3,
weight histograms and input images.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_alexnet.runs import write_errors

# The error rates as TensorBoard shows them: in percent, as the console prints them, under
# tags that say so (top1_error -> top1_error_pct).
PERCENT_SUFFIX = "_pct"


def in_percent(scalars):
    """The scalars for TensorBoard: each error rate (a name ending in "_error") in percent.

    Args:
        scalars: dict of name -> value; error rates as fractions.

    Returns:
        A new dict: "top1_error": 0.25 becomes "top1_error_pct": 25.0; the rest as given.
    """
    return {
        (name + PERCENT_SUFFIX if name.endswith("_error") else name): (
            100.0 * value if name.endswith("_error") else value
        )
        for name, value in scalars.items()
    }


def conv1_grid(kernel, groups=2, columns=16, gap=1, tower_gap=4, scale=4):
    """Tiles conv1's kernels into one RGB image, one block per tower (paper, figure 3).

    Each kernel is scaled to [0, 1] on its own, as the paper's figure shows them. With the
    paper's 96 kernels and groups=2, the figure's layout: the 48 kernels of the first
    tower in 3 rows of 16 on top, the 48 of the second below. Each pixel is then repeated
    `scale` times in each direction (nearest neighbour), so that the 11x11 kernels can be
    seen in a browser: 764x296 pixels for the paper's conv1.

    Args:
        kernel: array [kh, kw, 3, filters].
        groups: towers to separate; must divide filters.
        columns: kernels per row inside a tower.
        gap: pixels between kernels (before scaling).
        tower_gap: pixels between towers (before scaling).
        scale: how many image pixels each kernel pixel takes in each direction.

    Returns:
        float32 array [1, height, width, 3] in [0, 1], ready for `tf.summary.image`.
    """
    kernel = np.asarray(kernel, np.float32)
    kh, kw, channels, filters = kernel.shape
    if channels != 3:
        raise ValueError(f"conv1_grid needs RGB kernels. Received: kernel.shape={kernel.shape}")
    if filters % groups:
        raise ValueError(f"groups must divide filters ({filters}). Received: groups={groups}")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be an integer >= 1. Received: scale={scale!r}")
    low = kernel.min(axis=(0, 1, 2), keepdims=True)
    high = kernel.max(axis=(0, 1, 2), keepdims=True)
    kernel = (kernel - low) / np.maximum(high - low, 1e-12)
    per_tower = filters // groups
    columns = min(columns, per_tower)
    rows = -(-per_tower // columns)
    tower_h = rows * (kh + gap) - gap
    tower_w = columns * (kw + gap) - gap
    grid = np.ones((groups * (tower_h + tower_gap) - tower_gap, tower_w, 3), np.float32)
    for f in range(filters):
        tower, index = divmod(f, per_tower)
        row, col = divmod(index, columns)
        top = tower * (tower_h + tower_gap) + row * (kh + gap)
        left = col * (kw + gap)
        grid[top : top + kh, left : left + kw] = kernel[:, :, :, f]
    return np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)[None]


def displayable(images, mean_rgb=None):
    """Mean-subtracted float images back into [0, 1] for `tf.summary.image`.

    Args:
        images: array [n, h, w, 3], 0-255 pixels minus a mean.
        mean_rgb: the per-channel mean to add back, or None to rescale each image.

    Returns:
        float32 array [n, h, w, 3] in [0, 1].
    """
    images = np.asarray(images, np.float32)
    if mean_rgb is not None:
        return np.clip((images + np.asarray(mean_rgb, np.float32)) / 255.0, 0.0, 1.0)
    low = images.min(axis=(1, 2, 3), keepdims=True)
    high = images.max(axis=(1, 2, 3), keepdims=True)
    return (images - low) / np.maximum(high - low, 1e-12)


class Writer:
    """A run's TensorBoard summaries, in model_dir/train and model_dir/validation.

    Args:
        model_dir: the run's folder.
        enabled: False on every worker but the chief: it alone writes.
    """

    def __init__(self, model_dir, enabled):
        self.enabled = enabled
        self.model_dir = model_dir
        if enabled:
            try:
                self.train = tf.summary.create_file_writer(os.path.join(model_dir, "train"))
                self.validation = tf.summary.create_file_writer(
                    os.path.join(model_dir, "validation")
                )
            except write_errors.WRITE_ERRORS as error:
                raise write_errors.failed("TensorBoard summaries to", model_dir, error) from error

    def scalars(self, which, step, values):
        """Writes a dict of scalars to "train" or "validation" at `step`."""
        if not self.enabled:
            return
        with getattr(self, which).as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)

    def check(self):
        """Flushes the summaries and checks that they could be written.

        TensorFlow's summary writer drops a failed write silently; a probe file written
        after the flush finds a full or read-only log folder.

        Raises:
            write_errors.WriteFailed: naming the folder and the cause.
        """
        if not self.enabled:
            return
        self.train.flush()
        self.validation.flush()
        write_errors.check_writable(
            os.path.join(self.model_dir, "train"), "TensorBoard summaries to"
        )

    def epoch_pictures(self, model, step):
        """The conv1 kernels as the paper's figure 3, and a histogram of every weight."""
        if not self.enabled:
            return
        with self.train.as_default(step=step):
            kernel = keras.ops.convert_to_numpy(model.get_layer("conv1").kernel)
            groups = 2 if kernel.shape[-1] % 2 == 0 else 1
            tf.summary.image(
                "conv1_kernels",
                conv1_grid(kernel, groups=groups),
                description="The conv1 kernels as in the paper's figure 3: the first tower's "
                "on top, the second's below; each kernel pixel shown 4x4.",
            )
            for weight in model.trainable_weights:
                # TensorBoard's histogram op is slow on millions of values (fc6 has 37M):
                # an evenly strided sample of at most 100k shows the same distribution.
                values = keras.ops.convert_to_numpy(weight).ravel()
                tf.summary.histogram(weight.path, values[:: max(1, values.size // 100_000)])

    def inputs(self, images, step, mean_rgb):
        """Four augmented training inputs, the mean added back."""
        if not self.enabled:
            return
        with self.train.as_default(step=step):
            tf.summary.image("augmented_inputs", displayable(images[:4], mean_rgb), max_outputs=4)


class Profiler:
    """Profiles the steps first..last (1-based, inclusive) into model_dir/profile."""

    def __init__(self, profile_steps, model_dir):
        self.first, self.last = profile_steps or (None, None)
        self.logdir = os.path.join(model_dir, "profile")
        self.running = False

    def before_step(self, step):
        """Starts the profiler before step `first`."""
        if step == self.first:
            tf.profiler.experimental.start(self.logdir)
            self.running = True

    def after_step(self, step):
        """Stops the profiler after step `last`."""
        if self.running and step == self.last:
            self.stop()

    def stop(self):
        """Stops the profiler if it runs (a run that ends before step `last`)."""
        if self.running:
            tf.profiler.experimental.stop()
            self.running = False
