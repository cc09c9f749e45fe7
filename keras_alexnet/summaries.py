"""Pictures for TensorBoard: the conv1 kernels as the paper's figure 3, and input images."""

import numpy as np


def conv1_grid(kernel, groups=2, columns=8, gap=1, tower_gap=4):
    """Tiles conv1's kernels into one RGB image, one block per tower (paper, figure 3).

    Each kernel is scaled to [0, 1] on its own, as the paper's figure shows them. With the
    paper's 96 kernels and groups=2, the 48 of the first tower stand on the left and the 48
    of the second on the right.

    Args:
        kernel: array [kh, kw, 3, filters].
        groups: towers to separate; must divide filters.
        columns: kernels per row inside a tower.
        gap: pixels between kernels.
        tower_gap: pixels between towers.

    Returns:
        float32 array [1, height, width, 3] in [0, 1], ready for `tf.summary.image`.
    """
    kernel = np.asarray(kernel, np.float32)
    kh, kw, channels, filters = kernel.shape
    if channels != 3:
        raise ValueError(f"conv1_grid needs RGB kernels. Received: kernel.shape={kernel.shape}")
    if filters % groups:
        raise ValueError(f"groups must divide filters ({filters}). Received: groups={groups}")
    low = kernel.min(axis=(0, 1, 2), keepdims=True)
    high = kernel.max(axis=(0, 1, 2), keepdims=True)
    kernel = (kernel - low) / np.maximum(high - low, 1e-12)
    per_tower = filters // groups
    rows = -(-per_tower // columns)
    tower_h = rows * (kh + gap) - gap
    tower_w = columns * (kw + gap) - gap
    grid = np.ones((tower_h, groups * (tower_w + tower_gap) - tower_gap, 3), np.float32)
    for f in range(filters):
        tower, index = divmod(f, per_tower)
        row, col = divmod(index, columns)
        top = row * (kh + gap)
        left = tower * (tower_w + tower_gap) + col * (kw + gap)
        grid[top : top + kh, left : left + kw] = kernel[:, :, :, f]
    return grid[None]


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
