"""The paper's preprocessing (sections 2 and 4.1): small pure TensorFlow functions.

In the paper's order:

1. `decode_and_center_crop`: rescale so the shorter side is 256, keep the central 256x256
   patch (float32, 0-255).
2. `subtract_mean`: subtract the 256x256x3 training-set mean image.
3. Training: `random_crop_and_flip` (a random 227x227 patch and, half the time, its mirror
   image) and `pca_lighting` (the paper's PCA colour noise). Evaluation: `center_crop` or
   `ten_crop` (four corners and the centre, and their mirror images).

The paper says 224x224 patches; 227 is the size its layer sizes fit (see PAPER.md), so 227 is
the default everywhere.

Every function gives the same result eagerly and inside `tf.data`. Randomness comes only from
stateless ops seeded by (seed, epoch, index of the example in the epoch), so augmentation does
not depend on parallelism or on resuming.
"""

import numpy as np
import tensorflow as tf

from keras_alexnet import image_files
from keras_alexnet import paper

IMAGE_SIZE = paper.RESIZE_SIZE  # 256: shorter side, then the central square
CROP_SIZE = paper.INPUT_SIZE  # 227: the patch the layer sizes fit
PCA_STDDEV = paper.PCA_STDDEV  # 0.1


def _central_square(height, width):
    side = tf.minimum(height, width)
    return (height - side) // 2, (width - side) // 2, side


def _header(encoded, length):
    """The first `length` bytes of a string as int32 [length], zero-padded."""
    head = tf.strings.substr(encoded, 0, length)
    head = tf.strings.substr(tf.strings.join([head, tf.constant(bytes(length))]), 0, length)
    return tf.ensure_shape(tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int32), [length])


def _little_endian(values):
    """The unsigned integer of 2 or 4 little-endian bytes (values above 2^31 wrap)."""
    return tf.reduce_sum(values * tf.constant([1, 1 << 8, 1 << 16, 1 << 24][: values.shape[0]]))


def _misread_problems(encoded):
    """(animated WebP, 8-bit BMP with a colour palette): formats TensorFlow misreads."""
    head = _header(encoded, 2048)

    def starts(offset, text):
        return tf.reduce_all(head[offset : offset + len(text)] == list(text))

    animated_webp = starts(0, b"RIFF") & starts(8, b"WEBP") & starts(12, b"VP8X")
    animated_webp &= tf.bitwise.bitwise_and(head[20], 2) > 0
    # An 8-bit BMP's pixels index a palette of up to 256 BGR0 entries between its headers
    # and its pixels; TensorFlow's decoder returns the indices as grey levels.
    palette_start = 14 + _little_endian(head[14:18])
    entries = tf.clip_by_value((_little_endian(head[10:14]) - palette_start) // 4, 0, 256)
    index = tf.range(256)
    positions = tf.minimum(palette_start + 4 * index[:, None] + tf.range(3), 2047)
    unused = index[:, None] >= entries
    grey = tf.reduce_all((tf.gather(head, positions) == index[:, None]) | unused)
    palette_bmp = starts(0, b"BM") & (_little_endian(head[28:30]) == 8) & ~grey
    return animated_webp, palette_bmp


def decode_other(encoded):
    """Decodes a PNG, BMP, GIF (its first frame) or WebP file to uint8 RGB [h, w, 3].

    Grey images are repeated over three channels and an alpha channel is dropped (what
    `PIL.Image.convert("RGB")` does), for every format: TensorFlow's WebP decoder, unlike
    the others, returns only the channels the file has. Two files that TensorFlow would
    misread are refused with an InvalidArgumentError that says why: an animated WebP (its
    decoder cannot read one) and an 8-bit BMP with a colour palette (its decoder returns the
    palette indices as grey levels).
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    animated_webp, palette_bmp = _misread_problems(encoded)
    checks = [
        tf.debugging.Assert(~animated_webp, [image_files.ANIMATED_WEBP]),
        tf.debugging.Assert(~palette_bmp, [image_files.PALETTE_BMP]),
    ]
    with tf.control_dependencies(checks):
        is_webp = tf.strings.substr(encoded, 0, 4) == b"RIFF"
        return tf.cond(
            is_webp,
            lambda: tf.io.decode_image(encoded, channels=0, expand_animations=False)[..., :3],
            lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False),
        )


def decode_and_center_crop(encoded, size=IMAGE_SIZE):
    """Decodes an image, keeps the central square of its shorter side, resizes it to size^2.

    This is the paper's "rescale so the shorter side is 256, then take the central 256x256
    patch", done in the cheaper order: a JPEG is decoded only inside the central square
    (`tf.io.decode_and_crop_jpeg`), then resized. PNG (and any other format `decode_image`
    reads) is decoded whole (`decode_other`) and cropped.

    Args:
      encoded: scalar string tensor, the bytes of a JPEG, PNG, BMP, GIF (its first frame)
        or WebP file.
      size: side of the output square.

    Returns:
      float32 tensor [size, size, 3] with values in 0-255.
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)

    def jpeg():
        shape = tf.image.extract_jpeg_shape(encoded)
        top, left, side = _central_square(shape[0], shape[1])
        return tf.io.decode_and_crop_jpeg(encoded, tf.stack([top, left, side, side]), channels=3)

    def other():
        image = decode_other(encoded)
        shape = tf.shape(image)
        top, left, side = _central_square(shape[0], shape[1])
        return tf.slice(image, tf.stack([top, left, 0]), tf.stack([side, side, 3]))

    # The float kernels of resize are vectorised, the uint8 ones are not: casting first is
    # about twice as fast, and gives the same values.
    image = tf.cast(tf.cond(tf.io.is_jpeg(encoded), jpeg, other), tf.float32)
    # Bilinear interpolation reads 2x2 source pixels, which covers a shrink of up to 2x (most
    # ImageNet photos); a larger shrink needs the antialiasing filter, three times slower.
    # A prepared image (`prepared`) is already size x size: resizing it would return it.
    image = tf.case(
        [
            (tf.shape(image)[0] == size, lambda: image),
            (
                tf.shape(image)[0] > 2 * size,
                lambda: tf.image.resize(image, [size, size], method="bilinear", antialias=True),
            ),
        ],
        default=lambda: tf.image.resize(image, [size, size], method="bilinear"),
        exclusive=True,
    )
    return tf.ensure_shape(image, [size, size, 3])


def subtract_mean(image, mean_image):
    """Subtracts the training-set mean image, pixel by pixel (section 2).

    The paper subtracts the mean from the 256x256 image, before any crop; the pipelines here
    do the same, so `image` and `mean_image` have the same shape.

    Args:
      image: float32 [H, W, 3] (or a batch [..., H, W, 3]).
      mean_image: float32 [H, W, 3].

    Returns:
      `image - mean_image`, float32.
    """
    image = tf.convert_to_tensor(image, tf.float32)
    mean_image = tf.convert_to_tensor(mean_image, tf.float32)
    if image.shape[-3:].is_fully_defined() and image.shape[-3:] != mean_image.shape:
        raise ValueError(
            f"mean_image must have the image's shape {image.shape[-3:]}. "
            f"Received: mean_image.shape={mean_image.shape}"
        )
    return image - mean_image


def random_window(seed, height, width, crop=CROP_SIZE):
    """The random crop x crop window of `random_crop_and_flip`: (top, left, flip).

    Every offset 0..height-crop (rows) and 0..width-crop (columns) is equally likely, and
    flip (mirror the patch left-right) is true with probability 1/2.

    Args:
      seed: int32/int64 tensor of shape [2], a stateless seed.
      height, width: int32 scalars, the image's size (>= crop).
      crop: side of the patch.

    Returns:
      (top int32, left int32, flip bool) scalar tensors.
    """
    row_seed, col_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    top = tf.random.stateless_uniform(
        [], row_seed, minval=0, maxval=height - crop + 1, dtype=tf.int32
    )
    left = tf.random.stateless_uniform(
        [], col_seed, minval=0, maxval=width - crop + 1, dtype=tf.int32
    )
    return top, left, tf.random.stateless_uniform([], flip_seed) < 0.5


def _mirror_if(flip, image):
    return tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)


def random_crop_and_flip(image, seed, crop=CROP_SIZE):
    """A random crop x crop patch and, with probability 1/2, its horizontal mirror image.

    The window is `random_window`'s. The result is a function of (image, seed) only.

    Args:
      image: [H, W, C] tensor with H, W >= crop.
      seed: int32/int64 tensor of shape [2], a stateless seed.
      crop: side of the patch.

    Returns:
      [crop, crop, C] tensor of the image's dtype.
    """
    image = tf.convert_to_tensor(image)
    shape = tf.shape(image)
    top, left, flip = random_window(seed, shape[0], shape[1], crop)
    patch = tf.slice(image, tf.stack([top, left, 0]), tf.stack([crop, crop, shape[2]]))
    return _mirror_if(flip, patch)


def center_crop(image, crop=CROP_SIZE):
    """The central crop x crop patch (offset (H - crop) // 2, (W - crop) // 2).

    Args:
      image: [H, W, C] tensor with H, W >= crop.
      crop: side of the patch.

    Returns:
      [crop, crop, C] tensor.
    """
    image = tf.convert_to_tensor(image)
    shape = tf.shape(image)
    top, left = (shape[0] - crop) // 2, (shape[1] - crop) // 2
    return tf.slice(image, tf.stack([top, left, 0]), tf.stack([crop, crop, shape[2]]))


def ten_crop(image, crop=CROP_SIZE):
    """The paper's ten test patches: centre, four corners, and their mirror images.

    Args:
      image: [H, W, C] tensor with H, W >= crop.
      crop: side of the patches.

    Returns:
      [10, crop, crop, C] tensor: centre, top-left, top-right, bottom-left, bottom-right,
      then the same five mirrored left-right.
    """
    image = tf.convert_to_tensor(image)
    shape = tf.shape(image)
    bottom, right = shape[0] - crop, shape[1] - crop
    offsets = [
        ((shape[0] - crop) // 2, (shape[1] - crop) // 2),
        (0, 0),
        (0, right),
        (bottom, 0),
        (bottom, right),
    ]
    patches = tf.stack(
        [tf.slice(image, tf.stack([t, x, 0]), tf.stack([crop, crop, shape[2]])) for t, x in offsets]
    )
    return tf.concat([patches, tf.reverse(patches, axis=[2])], axis=0)


def pca_lighting(image, eigval, eigvec, seed, stddev=PCA_STDDEV):
    """The paper's PCA colour noise (section 4.1): adds one RGB offset to every pixel.

    offset = [p1 p2 p3] [a1*l1, a2*l2, a3*l3]^T with a_i ~ N(0, stddev) drawn once per image.

    Args:
      image: float32 [..., 3] image in 0-255 (mean-subtracted or not: the offset is constant).
      eigval: [3] eigenvalues of the RGB covariance, RGB scaled to [0, 1].
      eigvec: [3, 3] eigenvectors as columns.
      seed: int32/int64 tensor of shape [2], a stateless seed.
      stddev: standard deviation of the a_i.

    Returns:
      float32 tensor of the image's shape.
    """
    eigval = tf.convert_to_tensor(eigval, tf.float32)
    eigvec = tf.convert_to_tensor(eigvec, tf.float32)
    alpha = tf.random.stateless_normal([3], seed, stddev=stddev)
    # eigval/eigvec describe RGB scaled to [0, 1]; the image is in 0-255, so the offset is too.
    offset = 255.0 * tf.linalg.matvec(eigvec, alpha * eigval)
    image = tf.convert_to_tensor(image, tf.float32)
    # Broadcasting a [3] vector over [..., W, 3] takes TensorFlow's slow generic path (6x the
    # time of a same-shape add); a [W, 3] row of repeated offsets takes the fast one.
    row = tf.tile(offset[tf.newaxis, :], tf.stack([tf.shape(image)[-2], 1]))
    return image + row


def example_seed(seed, epoch, index):
    """The stateless seed of one example: a function of (seed, epoch, index) only.

    Args:
      seed: int, the run's seed.
      epoch: int or scalar tensor, the epoch.
      index: int or scalar int64 tensor, position of the example in the epoch's order.

    Returns:
      int64 tensor [2].
    """
    base = tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.experimental.stateless_fold_in(base, tf.cast(index, tf.int64))


def _decode_window(encoded, top, left, crop):
    """uint8 [crop, crop, 3]: a window of a JPEG, decoded alone; equal to decode-then-slice.

    With 4:2:0 chroma, libjpeg interpolates the colour at a window's edge from the pixels
    beyond it, which a window decoded alone lacks; decoding one more pixel on each side
    where the image has it, then slicing, gives exactly the full decode's pixels (checked at
    all 900 offsets of a 227 window in 256x256; tested at offsets of every parity).
    """
    shape = tf.image.extract_jpeg_shape(encoded)
    y0, x0 = tf.maximum(top - 1, 0), tf.maximum(left - 1, 0)
    y1 = tf.minimum(top + crop + 1, shape[0])
    x1 = tf.minimum(left + crop + 1, shape[1])
    window = tf.io.decode_and_crop_jpeg(encoded, tf.stack([y0, x0, y1 - y0, x1 - x0]), channels=3)
    window = tf.slice(window, tf.stack([top - y0, left - x0, 0]), [crop, crop, 3])
    return tf.ensure_shape(window, [crop, crop, 3])


def preprocess_for_train(encoded, stats, seed, crop=CROP_SIZE):
    """bytes -> one augmented training patch: decode, mean, random crop and flip, PCA noise.

    The result is that of, in the paper's order, `decode_and_center_crop`, `subtract_mean`,
    `random_crop_and_flip` and `pca_lighting`. A JPEG that is already the mean image's size
    (a prepared image, `prepared`) takes a shorter road to the same values: only its random
    window is decoded, and the mean is subtracted from that window alone.

    Args:
      encoded: scalar string tensor, an image file's bytes (see `decode_and_center_crop`).
      stats: `stats.Stats` of the training set.
      seed: int tensor [2], e.g. from `example_seed`.
      crop: side of the patch.

    Returns:
      float32 [crop, crop, 3].
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    crop_seed, lighting_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    size = stats.mean_image.shape[0]
    top, left, flip = random_window(crop_seed, size, size, crop)
    is_jpeg = tf.io.is_jpeg(encoded)
    # extract_jpeg_shape reads only the header; the cond keeps it away from other formats.
    prepared_size = tf.cond(
        is_jpeg,
        lambda: tf.reduce_all(tf.image.extract_jpeg_shape(encoded)[:2] == size),
        lambda: tf.constant(False),
    )
    # Mirrored before the mean is subtracted (uint8 is cheaper to mirror than float32), and
    # the mean's window taken from the mirrored mean image: the same values as mirroring
    # after the subtraction.
    patch = tf.cond(
        prepared_size,
        lambda: tf.cast(_mirror_if(flip, _decode_window(encoded, top, left, crop)), tf.float32),
        lambda: _mirror_if(
            flip,
            tf.slice(decode_and_center_crop(encoded, size), [top, left, 0], [crop, crop, 3]),
        ),
    )
    means = tf.constant(np.stack([stats.mean_image, stats.mean_image[:, ::-1]]), tf.float32)
    mean_left = tf.where(flip, size - crop - left, left)
    mean = tf.slice(
        means, tf.stack([tf.cast(flip, tf.int32), top, mean_left, 0]), [1, crop, crop, 3]
    )
    image = subtract_mean(patch, mean[0])
    return pca_lighting(image, stats.eigval, stats.eigvec, lighting_seed)


def preprocess_for_eval(encoded, stats, crops="center", crop=CROP_SIZE):
    """bytes -> the evaluation patch(es); also usable inside a SavedModel serving function.

    Args:
      encoded: scalar string tensor, an image file's bytes (see `decode_and_center_crop`).
      stats: `stats.Stats` of the training set.
      crops: "center" for one central patch, "ten" for the paper's ten patches.
      crop: side of the patch.

    Returns:
      float32 [crop, crop, 3] for "center", [10, crop, crop, 3] for "ten".
    """
    image = decode_and_center_crop(encoded, stats.mean_image.shape[0])
    image = subtract_mean(image, stats.mean_image)
    if crops == "center":
        return center_crop(image, crop)
    if crops == "ten":
        return ten_crop(image, crop)
    raise ValueError(f'crops must be "center" or "ten". Received: crops={crops!r}')


__all__ = [
    "CROP_SIZE",
    "IMAGE_SIZE",
    "PCA_STDDEV",
    "center_crop",
    "decode_and_center_crop",
    "decode_other",
    "example_seed",
    "pca_lighting",
    "preprocess_for_eval",
    "preprocess_for_train",
    "random_crop_and_flip",
    "random_window",
    "subtract_mean",
    "ten_crop",
]
