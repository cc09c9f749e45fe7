"""Small images, image folders and statistics that the data tests write (imported by them)."""

import glob
import io
import os

import numpy as np
import tensorflow as tf

from keras_alexnet.data import preprocessing
from keras_alexnet.data import stats as stats_lib

SIZE = preprocessing.IMAGE_SIZE


def smooth_image(seed, height, width):
    """A uint8 RGB image with structure everywhere (so every crop offset is distinguishable)."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, size=(height // 8 + 1, width // 8 + 1, 3)).astype(np.float32)
    image = tf.image.resize(small, [height, width]).numpy()
    image += rng.normal(0, 8, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_jpeg(path, seed, height=48, width=64):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(tf.io.encode_jpeg(smooth_image(seed, height, width), quality=90).numpy())


def write_png(path, seed, height=48, width=64):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(tf.io.encode_png(smooth_image(seed, height, width)).numpy())


def make_folder(root, classes=("cat", "dog", "fox"), train_per_class=8, val_per_class=3):
    seed = 0
    for split, per_class in (("train", train_per_class), ("validation", val_per_class)):
        for c in classes:
            for i in range(per_class):
                seed += 1
                # Landscape and portrait images, so both central-square offsets are used.
                h, w = (48, 64) if seed % 2 else (64, 40)
                write_jpeg(os.path.join(root, split, c, f"{i:03d}.jpg"), seed, h, w)
    write_png(os.path.join(root, "train", classes[0], "png_image.png"), 999)
    return str(root)


def random_stats():
    """`Stats` with a random mean image and the ImageNet PCA."""
    rng = np.random.default_rng(1)
    mean = rng.uniform(80, 160, size=(SIZE, SIZE, 3)).astype(np.float32)
    return stats_lib.Stats(mean, stats_lib.IMAGENET_PCA.eigval, stats_lib.IMAGENET_PCA.eigvec)


def all_batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


# Other formats users' folders hold, written by Pillow (an independent encoder and decoder).
OTHER_FORMATS = [
    ("BMP", "RGB", {}),
    ("BMP", "RGBA", {}),
    ("BMP", "L", {}),
    ("GIF", "P", {}),
    ("WEBP", "RGB", {"lossless": True}),
    ("PNG", "LA", {}),
]


def pillow_bytes(fmt, mode, seed=0, size=64, **kwargs):
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def raw_validation_pixels(root):
    """A run's validation images in `root` as the exported files take them (the central
    patch of the 256x256 image, raw RGB 0-255, no mean subtracted): (their paths, sorted,
    and float32 pixels)."""
    paths = sorted(glob.glob(os.path.join(root, "validation", "*", "*.jpg")))
    pixels = np.stack(
        [
            preprocessing.center_crop(
                preprocessing.decode_and_center_crop(tf.io.read_file(p)), preprocessing.CROP_SIZE
            ).numpy()
            for p in paths
        ]
    )
    return paths, pixels


def validation_pixels(model_dir, root):
    """A run's validation images in `root` as evaluation preprocesses them (the run's mean
    subtracted, central patch): (their paths, sorted, and float32 pixels)."""
    from keras_alexnet.runs import folder as run_dir

    stats = run_dir.read_stats(model_dir)
    paths = sorted(glob.glob(os.path.join(root, "validation", "*", "*.jpg")))
    pixels = np.stack(
        [preprocessing.preprocess_for_eval(tf.io.read_file(p), stats).numpy() for p in paths]
    )
    return paths, pixels
