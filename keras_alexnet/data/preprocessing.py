"""The paper's preprocessing (sections 2 and 4.1): small pure TensorFlow functions.

In the paper's order:

1. `decode_and_center_crop`: rescale so the shorter side is 256, keep the central 256x256
   patch (float32, 0-255).
2. `subtract_mean`: subtract the 256x256x3 training-set mean image.
3. Training: `crop_and_flip` (a random 227x227 patch and, half the time, its mirror
   image) and `pca_lighting` (the paper's PCA colour noise), their random choices drawn by
   `train_augmentation`. Evaluation: `center_crop` or
   `ten_crop` (four corners and the centre, and their mirror images).

The paper says 224x224 patches; 227 is the size its layer sizes fit (section 3.5 and figure 2:
55x55 conv1 maps from 11x11 kernels at stride 4), so 227 is the default everywhere.

Every function gives the same result eagerly and inside `tf.data`. The random choices are a
function of (seed, epoch, index of the example in the epoch) only (`random_draws`), so
augmentation does not depend on parallelism, batching or resuming.
"""

import tensorflow as tf

from keras_alexnet.data import image_headers
from keras_alexnet.paper import numbers as paper

IMAGE_SIZE = paper.RESIZE_SIZE  # 256: shorter side, then the central square
CROP_SIZE = paper.INPUT_SIZE  # 227: the patch the layer sizes fit
PCA_STDDEV = paper.PCA_STDDEV  # 0.1


def _central_square(height, width):
    side = tf.minimum(height, width)
    return (height - side) // 2, (width - side) // 2, side


def decode_other(encoded, max_pixels=None):
    """Decodes a PNG, BMP, GIF (its first frame) or WebP file to uint8 RGB [h, w, 3].

    Grey images are repeated over three channels and an alpha channel is dropped (what
    `PIL.Image.convert("RGB")` does), for every format: TensorFlow's WebP decoder, unlike
    the others, returns only the channels the file has. An animated GIF or WebP is cut to
    its first frame before decoding (`image_headers.first_frame`). Refused with an
    InvalidArgumentError that says why: an image whose header declares more than
    `max_pixels` pixels (default `image_headers.max_pixels()`), before it is decoded, and
    an 8-bit BMP with a colour palette (TensorFlow's decoder returns the palette indices as
    grey levels).
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    checks = [
        image_headers.size_check(encoded, max_pixels),
        tf.debugging.Assert(~image_headers.palette_bmp(encoded), [image_headers.PALETTE_BMP]),
    ]
    with tf.control_dependencies(checks):
        encoded = image_headers.first_frame(encoded)
        is_webp = tf.strings.substr(encoded, 0, 4) == b"RIFF"
        return tf.cond(
            is_webp,
            lambda: tf.io.decode_image(encoded, channels=0, expand_animations=False)[..., :3],
            lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False),
        )


def decode_and_center_crop(encoded, size=IMAGE_SIZE, max_pixels=None):
    """Decodes an image, keeps the central square of its shorter side, resizes it to size^2.

    This is the paper's "rescale so the shorter side is 256, then take the central 256x256
    patch", done in the cheaper order: a JPEG is decoded only inside the central square
    (`tf.io.decode_and_crop_jpeg`), then resized. PNG (and any other format `decode_image`
    reads) is decoded whole (`decode_other`) and cropped.

    Args:
        encoded: scalar string tensor, the bytes of a JPEG, PNG, BMP, GIF (its first frame)
            or WebP file.
        size: side of the output square.
        max_pixels: the largest image read (default `image_headers.max_pixels()`); a
            larger one is refused, before decoding, with an InvalidArgumentError.

    Returns:
        float32 tensor [size, size, 3] with values in 0-255.
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)

    def jpeg():
        shape = tf.image.extract_jpeg_shape(encoded)
        top, left, side = _central_square(shape[0], shape[1])
        with tf.control_dependencies([image_headers.pixels_check(shape[1], shape[0], max_pixels)]):
            window = tf.stack([top, left, side, side])
        return tf.io.decode_and_crop_jpeg(encoded, window, channels=3)

    def other():
        image = decode_other(encoded, max_pixels)
        shape = tf.shape(image)
        top, left, side = _central_square(shape[0], shape[1])
        return tf.slice(image, tf.stack([top, left, 0]), tf.stack([side, side, 3]))

    # The float kernels of resize are vectorised, the uint8 ones are not: casting first is
    # about twice as fast, and gives the same values.
    image = tf.cast(tf.cond(tf.io.is_jpeg(encoded), jpeg, other), tf.float32)
    return tf.ensure_shape(resize_square(image, size), [size, size, 3])


def central_square(image, size=IMAGE_SIZE):
    """`decode_and_center_crop` of decoded pixels, [H, W, C] or [B, H, W, C] (any dtype):
    the central square, resized to size^2, float32."""
    image = tf.cast(image, tf.float32)
    shape = tf.shape(image)
    top, left, side = _central_square(shape[-3], shape[-2])
    return resize_square(image[..., top : top + side, left : left + side, :], size)


def resize_square(image, size):
    """A square image (or batch of them) resized to size^2, float32, as the paper's
    preprocessing resizes: bilinear, with the antialiasing filter beyond a 2x shrink."""
    # Bilinear interpolation reads 2x2 source pixels, which covers a shrink of up to 2x (most
    # ImageNet photos); a larger shrink needs the antialiasing filter, three times slower.
    # A prepared image (`shards`) is already size x size: resizing it would return it.
    side = tf.shape(image)[-3]
    return tf.case(
        [
            (side == size, lambda: image),
            (
                side > 2 * size,
                lambda: tf.image.resize(image, [size, size], method="bilinear", antialias=True),
            ),
        ],
        default=lambda: tf.image.resize(image, [size, size], method="bilinear"),
        exclusive=True,
    )


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


def crop_and_flip(image, top, left, flip, crop=CROP_SIZE):
    """The crop x crop patch at (top, left), mirrored left-right if flip.

    Args:
        image: [H, W, C] tensor with H, W >= crop.
        top, left: int32 scalars, the patch's first row and column.
        flip: bool scalar.
        crop: side of the patch.

    Returns:
        [crop, crop, C] tensor of the image's dtype.
    """
    image = tf.convert_to_tensor(image)
    patch = tf.slice(image, tf.stack([top, left, 0]), tf.stack([crop, crop, tf.shape(image)[2]]))
    return _mirror_if(flip, patch)


def _mirror_if(flip, image):
    return tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)


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


def pca_offset(alpha, eigval, eigvec):
    """The RGB offset of the paper's PCA colour noise (section 4.1), in 0-255.

    offset = [p1 p2 p3] [a1*l1, a2*l2, a3*l3]^T, the p_i the eigenvectors and l_i the
    eigenvalues of the training set's RGB covariance (RGB scaled to [0, 1]).

    Args:
        alpha: float32 [..., 3], the a_i (drawn from N(0, 0.1) once per image, see
            `train_augmentation`).
        eigval: [3] eigenvalues.
        eigvec: [3, 3] eigenvectors as columns.

    Returns:
        float32 [..., 3].
    """
    alpha = tf.convert_to_tensor(alpha, tf.float32)
    weights = alpha * tf.constant(eigval, tf.float32)
    columns = tf.unstack(tf.constant(eigvec, tf.float32), axis=1)
    # The sum written out: the same rounding for one image and for a batch of them.
    offset = weights[..., 0:1] * columns[0]
    offset += weights[..., 1:2] * columns[1]
    offset += weights[..., 2:3] * columns[2]
    # eigval/eigvec describe RGB scaled to [0, 1]; the image is in 0-255, so the offset is too.
    return 255.0 * offset


def pca_lighting(image, eigval, eigvec, alpha):
    """Adds the PCA colour noise of one image (`pca_offset`) to every pixel.

    Args:
        image: float32 [..., W, 3] image in 0-255 (mean-subtracted or not).
        eigval, eigvec: as `pca_offset`'s.
        alpha: float32 [3].

    Returns:
        float32 tensor of the image's shape.
    """
    image = tf.convert_to_tensor(image, tf.float32)
    return image + _rows_of(pca_offset(alpha, eigval, eigvec), tf.shape(image)[-2])


def _rows_of(offset, width):
    """[width, 3]: an RGB offset repeated along a row, to add to an image [..., width, 3].

    Broadcasting a [3] vector over [..., W, 3] takes TensorFlow's slow generic path (6x the
    time of a same-shape add); a [W, 3] row of repeated offsets takes the fast one.
    """
    return tf.tile(offset[tf.newaxis, :], tf.stack([width, 1]))


# Uniform numbers drawn per example: row, column, flip, and the three PCA coefficients.
DRAWS = 6
_ROUNDS = 16  # of the keyed permutation below; 8 suffice for its authors, the cost is nil


def random_draws(seed, epoch, index):
    """DRAWS uniform numbers in (0, 1) for each example: a function of (seed, epoch, index).

    Counter-based: draw k of example `index` is the image of the counter index * DRAWS + k
    under a pseudorandom permutation of [0, 2^63) keyed by (seed, epoch)
    (`tf.random.experimental.index_shuffle`'s Simon block cipher). So the numbers do not
    depend on how examples are grouped, parallelised or resumed, and a whole batch of
    examples is drawn by a few vectorised ops.

    Args:
        seed: int >= 0, or int64 tensor broadcastable to index's shape.
        epoch: int >= 0, or int64 tensor broadcastable to index's shape.
        index: int64 [n], the examples' positions in their epochs' orders.

    Returns:
        float64 [n, DRAWS], each a multiple of 2^-53 plus 2^-54, so never 0 or 1.
    """
    index = tf.cast(index, tf.int64)
    seed = tf.broadcast_to(tf.cast(seed, tf.int64), tf.shape(index))
    epoch = tf.broadcast_to(tf.cast(epoch, tf.int64), tf.shape(index))
    # The key is three 32-bit words: the seed's two halves and the epoch.
    key = tf.stack([seed % 2**32, seed // 2**32, epoch], axis=-1)
    counters = tf.reshape(index[:, tf.newaxis] * DRAWS + tf.range(DRAWS, dtype=tf.int64), [-1])
    bits = tf.raw_ops.RandomIndexShuffle(
        index=counters,
        seed=tf.repeat(key, DRAWS, axis=0),
        # A vector like the others (a scalar would make n = 0 an error).
        max_index=tf.fill(tf.shape(counters), tf.constant(2**63 - 1, tf.int64)),
        rounds=_ROUNDS,
    )
    # The top 53 bits, exact in float64.
    top = tf.cast(tf.bitwise.right_shift(bits, 10), tf.float64)
    return tf.reshape((top + 0.5) * 2.0**-53, [-1, DRAWS])


def train_augmentation(seed, epoch, index, size=IMAGE_SIZE, crop=CROP_SIZE, stddev=PCA_STDDEV):
    """The random choices of training augmentation, for a batch of examples.

    Args:
        seed, epoch, index: as `random_draws`'s.
        size: side of the (256x256) images the patches are cut from.
        crop: side of the patch.
        stddev: standard deviation of the PCA coefficients.

    Returns:
        A dict of "top", "left" (int32 [n], every offset 0..size-crop equally likely),
        "flip" (bool [n], true with probability 1/2) and "alpha" (float32 [n, 3], the PCA
        coefficients, N(0, stddev)).
    """
    u = random_draws(seed, epoch, index)
    offsets = size - crop + 1
    top = tf.cast(tf.floor(u[:, 0] * offsets), tf.int32)
    left = tf.cast(tf.floor(u[:, 1] * offsets), tf.int32)
    return {
        "top": top,
        "left": left,
        "flip": u[:, 2] < 0.5,
        "alpha": tf.cast(stddev * tf.math.ndtri(u[:, 3:]), tf.float32),
    }


def step_augmentation(seed, epoch, index, stats, crop=CROP_SIZE):
    """`train_augmentation` for `stats`' mean image, with each example's PCA offset
    ("lighting", `pca_offset` of its "alpha") in place of the coefficients: the random
    choices `train_patch` and `finish_train_batch` take."""
    drawn = train_augmentation(seed, epoch, index, stats.mean_image.shape[0], crop)
    drawn["lighting"] = pca_offset(drawn.pop("alpha"), stats.eigval, stats.eigvec)
    return drawn


def train_patch(encoded, augmentation, size=IMAGE_SIZE, crop=CROP_SIZE, all_jpeg=False):
    """bytes -> one training patch before its float work: the image's random window.

    The half of training preprocessing that needs the image file; `finish_train_batch`
    does the rest (mirroring, the mean, PCA noise) by batch. Split so that a training
    pipeline can hand the accelerator small uint8 patches and leave it the float work: a
    quarter of the bytes to copy, and the least work for the CPU that decodes.

    Args:
        encoded: scalar string tensor, an image file's bytes (see `decode_and_center_crop`).
        augmentation: one example's `train_augmentation`.
        size: side of the square the image is brought to (the mean image's).
        crop: side of the patch.
        all_jpeg: every image is a size x size JPEG (`sources.Source.jpeg_size`, prepared
            images): decoded as it is, and the patch kept uint8. (Decoding the whole 256x256
            JPEG and slicing was measured faster than `tf.io.decode_and_crop_jpeg` of the
            window.)

    Returns:
        [crop, crop, 3] in 0-255, not mirrored: uint8 if all_jpeg, else float32.
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    if all_jpeg:
        with tf.control_dependencies([image_headers.size_check(encoded)]):
            image = tf.io.decode_jpeg(encoded, channels=3)
    else:
        image = decode_and_center_crop(encoded, size)
    corner = tf.stack([augmentation["top"], augmentation["left"], 0])
    return tf.slice(image, corner, [crop, crop, 3])


def finish_train_batch(batch, stats):
    """The float work of a batch of training patches: float32 [n, crop, crop, 3].

    In the paper's order: the patch less its window of the mean image, mirrored if drawn
    so, plus the PCA offset; `preprocess_for_train`'s values, bit for bit. Cheap where the
    model runs (a cast, a gather, a select, two adds): the training step calls it on each
    replica.

    Args:
        batch: a dict of "patches" ([n, crop, crop, 3] of `train_patch`), their
            `train_augmentation`'s "top", "left" and "flip", and "lighting", the `pca_offset`
            of its "alpha" (float32 [n, 3]; computed beforehand, so that no multiplication is
            left here for XLA to contract into other roundings).
        stats: `stats.Stats` of the training set.
    """
    patches = batch["patches"]
    size, crop = stats.mean_image.shape[0], patches.shape[1]
    span = tf.range(crop)
    # Row-major index of every pixel of every patch's window in the mean image.
    rows = batch["top"][:, tf.newaxis] + span
    cols = batch["left"][:, tf.newaxis] + span
    index = rows[:, :, tf.newaxis] * size + cols[:, tf.newaxis, :]
    mean = tf.gather(tf.reshape(tf.constant(stats.mean_image, tf.float32), [-1, 3]), index)
    images = tf.cast(patches, tf.float32) - mean
    flip = batch["flip"][:, tf.newaxis, tf.newaxis, tf.newaxis]
    images = tf.where(flip, tf.reverse(images, axis=[2]), images)
    return images + batch["lighting"][:, tf.newaxis, tf.newaxis, :]


def train_batch_finisher(stats):
    """`finish_train_batch` for `stats`, compiled with XLA: what the training step calls.

    One fused pass instead of five op by op (measured 6x faster on a CPU), with the same
    values: only casts, a gather, a select and additions, nothing XLA could round otherwise.
    """
    return tf.function(lambda batch: finish_train_batch(batch, stats), jit_compile=True)


def train_image(encoded, stats, augmentation, crop=CROP_SIZE, all_jpeg=False):
    """`train_patch` and its float work, for one image (`finish_train_batch`'s values).

    For pipelines that hand over finished float32 patches. `augmentation` holds one
    example's "top", "left", "flip" and "lighting" (see `finish_train_batch`).
    """
    size = stats.mean_image.shape[0]
    patch = train_patch(encoded, augmentation, size, crop, all_jpeg)
    corner = tf.stack([augmentation["top"], augmentation["left"], 0])
    mean = tf.slice(tf.constant(stats.mean_image, tf.float32), corner, [crop, crop, 3])
    image = _mirror_if(augmentation["flip"], subtract_mean(tf.cast(patch, tf.float32), mean))
    return image + _rows_of(augmentation["lighting"], crop)


def preprocess_for_train(encoded, stats, seed, epoch, index, crop=CROP_SIZE):
    """bytes -> one augmented training patch: decode, mean, random crop and flip, PCA noise.

    The result is that of, in the paper's order, `decode_and_center_crop`, `subtract_mean`,
    `crop_and_flip` and `pca_lighting`, with the random choices of
    `train_augmentation(seed, epoch, [index])`, in a cheaper order with the same values:
    the mean is subtracted from the patch alone, and the patch mirrored after it
    (`train_image`).

    Args:
        encoded: scalar string tensor, an image file's bytes (see `decode_and_center_crop`).
        stats: `stats.Stats` of the training set.
        seed: int >= 0, the run's seed.
        epoch: int >= 0 or scalar tensor, the epoch.
        index: int or scalar int64 tensor, the example's position in the epoch's order.
        crop: side of the patch.

    Returns:
        float32 [crop, crop, 3].
    """
    drawn = step_augmentation(seed, epoch, tf.reshape(index, [1]), stats, crop)
    return train_image(encoded, stats, {k: v[0] for k, v in drawn.items()}, crop)


def preprocess_for_eval(encoded, stats, crops="center", crop=CROP_SIZE):
    """bytes -> the evaluation patch(es); also usable inside a SavedModel serving function.

    Args:
        encoded: scalar string tensor, an image file's bytes (see `decode_and_center_crop`).
        stats: `stats.Stats` of the training set.
        crops: "center" for one central patch, "10" for the paper's ten patches.
        crop: side of the patch.

    Returns:
        float32 [crop, crop, 3] for "center", [10, crop, crop, 3] for "10".
    """
    image = decode_and_center_crop(encoded, stats.mean_image.shape[0])
    image = subtract_mean(image, stats.mean_image)
    if crops == "center":
        return center_crop(image, crop)
    if crops == "10":
        return ten_crop(image, crop)
    raise ValueError(f'crops must be "center" or "10". Received: crops={crops!r}')


def central_patch(encoded, size=IMAGE_SIZE, crop=CROP_SIZE):
    """bytes -> the central patch, raw RGB 0-255: what the exported files take.

    `preprocess_for_eval`'s central patch without the mean subtracted: the exports subtract
    the mean image's central window inside, which gives the same values.

    Args:
        encoded: scalar string tensor, an image file's bytes (see `decode_and_center_crop`).
        size: the side of the square the image is brought to (the mean image's, 256).
        crop: side of the patch.

    Returns:
        float32 [crop, crop, 3], 0-255.
    """
    return center_crop(decode_and_center_crop(encoded, size), crop)
