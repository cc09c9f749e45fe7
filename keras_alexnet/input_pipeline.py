"""Datasets and preprocessing of the paper (sections 2 and 4.1). Never imports the model.

Preprocessing, in the paper's order:

1. `decode_and_center_crop`: rescale so the shorter side is 256, keep the central 256x256
   patch (float32, 0-255).
2. `subtract_mean`: subtract the 256x256x3 training-set mean image.
3. Training: `random_crop_and_flip` (a random 227x227 patch and, half the time, its mirror
   image) and `pca_lighting` (the paper's PCA colour noise). Evaluation: `center_crop` or
   `ten_crop` (four corners and the centre, and their mirror images).

The paper says 224x224 patches; 227 is the size its layer sizes fit (see PAPER.md), so 227 is
the default everywhere.

Every function is a small pure TensorFlow function that gives the same result eagerly and
inside `tf.data`. Randomness comes only from stateless ops seeded by (seed, epoch, index of the
example in the epoch), so augmentation does not depend on parallelism or on resuming, and the
input order is a pure function of (seed, epoch): exact resume only has to skip the steps
already taken.
"""

import concurrent.futures
import dataclasses
import io
import os
import re
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging

from keras_alexnet import paper

IMAGE_SIZE = paper.RESIZE_SIZE  # 256: shorter side, then the central square
CROP_SIZE = paper.INPUT_SIZE  # 227: the patch the layer sizes fit
PCA_STDDEV = paper.PCA_STDDEV  # 0.1


@dataclasses.dataclass(frozen=True, eq=False)
class PCA:
    """Eigen-decomposition of the 3x3 covariance of RGB pixel values scaled to [0, 1].

    Attributes:
      eigval: [3] eigenvalues, largest first.
      eigvec: [3, 3] eigenvectors as columns, in the order of `eigval`.
    """

    eigval: np.ndarray
    eigvec: np.ndarray


# The widely used ImageNet values (RGB scaled to [0, 1]), kept in paper.py.
IMAGENET_PCA = PCA(
    eigval=np.array(paper.IMAGENET_PCA_EIGVAL, np.float32),
    eigvec=np.array(paper.IMAGENET_PCA_EIGVEC, np.float32),
)

SPLITS = ("train", "validation")
ON_BAD_IMAGE = ("skip", "fail")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
IMAGENET_MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")


# ---------------------------------------------------------------------------------------------
# Preprocessing: small pure functions.
# ---------------------------------------------------------------------------------------------


def _central_square(height, width):
    side = tf.minimum(height, width)
    return (height - side) // 2, (width - side) // 2, side


def decode_and_center_crop(encoded, size=IMAGE_SIZE):
    """Decodes an image, keeps the central square of its shorter side, resizes it to size^2.

    This is the paper's "rescale so the shorter side is 256, then take the central 256x256
    patch", done in the cheaper order: a JPEG is decoded only inside the central square
    (`tf.io.decode_and_crop_jpeg`), then resized. PNG (and any other format `decode_image`
    reads) is decoded whole and cropped.

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
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        shape = tf.shape(image)
        top, left, side = _central_square(shape[0], shape[1])
        return tf.slice(image, tf.stack([top, left, 0]), tf.stack([side, side, 3]))

    # The float kernels of resize are vectorised, the uint8 ones are not: casting first is
    # about twice as fast, and gives the same values.
    image = tf.cast(tf.cond(tf.io.is_jpeg(encoded), jpeg, other), tf.float32)
    # Bilinear interpolation reads 2x2 source pixels, which covers a shrink of up to 2x (most
    # ImageNet photos); a larger shrink needs the antialiasing filter, three times slower.
    image = tf.cond(
        tf.shape(image)[0] > 2 * size,
        lambda: tf.image.resize(image, [size, size], method="bilinear", antialias=True),
        lambda: tf.image.resize(image, [size, size], method="bilinear"),
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


def random_crop_and_flip(image, seed, crop=CROP_SIZE):
    """A random crop x crop patch and, with probability 1/2, its horizontal mirror image.

    Every offset 0..H-crop (rows) and 0..W-crop (columns) is equally likely. The result is a
    function of (image, seed) only.

    Args:
      image: [H, W, C] tensor with H, W >= crop.
      seed: int32/int64 tensor of shape [2], a stateless seed.
      crop: side of the patch.

    Returns:
      [crop, crop, C] tensor of the image's dtype.
    """
    image = tf.convert_to_tensor(image)
    row_seed, col_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    shape = tf.shape(image)
    top = tf.random.stateless_uniform(
        [], row_seed, minval=0, maxval=shape[0] - crop + 1, dtype=tf.int32
    )
    left = tf.random.stateless_uniform(
        [], col_seed, minval=0, maxval=shape[1] - crop + 1, dtype=tf.int32
    )
    patch = tf.slice(image, tf.stack([top, left, 0]), tf.stack([crop, crop, shape[2]]))
    flip = tf.random.stateless_uniform([], flip_seed) < 0.5
    return tf.cond(flip, lambda: tf.reverse(patch, axis=[1]), lambda: patch)


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


def preprocess_for_train(encoded, stats, seed, crop=CROP_SIZE):
    """bytes -> one augmented training patch: decode, mean, random crop and flip, PCA noise.

    Args:
      encoded: scalar string tensor, an image file's bytes (see `decode_and_center_crop`).
      stats: `Stats` of the training set.
      seed: int tensor [2], e.g. from `example_seed`.
      crop: side of the patch.

    Returns:
      float32 [crop, crop, 3].
    """
    crop_seed, lighting_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    image = decode_and_center_crop(encoded, stats.mean_image.shape[0])
    image = subtract_mean(image, stats.mean_image)
    image = random_crop_and_flip(image, crop_seed, crop)
    return pca_lighting(image, stats.eigval, stats.eigvec, lighting_seed)


def preprocess_for_eval(encoded, stats, crops="center", crop=CROP_SIZE):
    """bytes -> the evaluation patch(es); also usable inside a SavedModel serving function.

    Args:
      encoded: scalar string tensor, an image file's bytes (see `decode_and_center_crop`).
      stats: `Stats` of the training set.
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


# ---------------------------------------------------------------------------------------------
# Sources: where the (encoded image, label) pairs come from.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Source:
    """A labelled image set: an image folder or a prepared TFDS dataset.

    Attributes:
      name: "folder:<path>" or the TFDS name.
      kind: "folder" or "tfds".
      class_names: class names; a label is an index into this list.
      num_train: number of training examples used.
      num_validation: number of validation examples used (0 when there are none).
      bad_files: (path, reason) of every file or folder left out by the scan (folders only).
    """

    name: str
    kind: str
    class_names: tuple[str, ...]
    num_train: int
    num_validation: int
    bad_files: tuple[tuple[str, str], ...] = ()
    _reader: Any = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def num_classes(self):
        """Number of classes."""
        return len(self.class_names)

    def num_examples(self, split):
        """Number of examples of `split` ("train" or "validation")."""
        _check_split(split)
        return self.num_train if split == "train" else self.num_validation

    def examples(self, split, order=None):
        """The (ref, label) pairs of a split, before any decoding.

        Args:
          split: "train" or "validation".
          order: None for the fixed file order, or (seed, epoch) for that epoch's shuffled
            order, the same on every worker.

        Returns:
          A `tf.data.Dataset` of (ref: string, label: int32). A ref is a file path for
          folders and the encoded image for TFDS; `load` turns it into encoded bytes.
        """
        _check_split(split)
        if self.num_examples(split) == 0:
            raise ValueError(f"{self.name} has no {split} examples. Received: split={split!r}")
        if order is not None and not any(isinstance(v, tf.Tensor) for v in order):
            _check_seed_and_epoch(*order)
        return self._reader.examples(split, order)

    def load(self, ref):
        """Encoded image bytes of a ref from `examples` (reads the file for folders)."""
        return tf.io.read_file(ref) if self.kind == "folder" else ref


def _check_split(split):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}. Received: split={split!r}")


def _check_seed_and_epoch(seed, epoch):
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be >= 0. Received: seed={seed}, epoch={epoch}")


def _epoch_rng(seed, epoch):
    _check_seed_and_epoch(seed, epoch)
    return np.random.default_rng([int(seed), int(epoch)])


def epoch_permutation(n, seed, epoch):
    """The order of an epoch: a permutation of range(n) that is a function of (seed, epoch).

    Args:
      n: number of examples.
      seed: int >= 0 or scalar tensor.
      epoch: int >= 0 or scalar tensor (so a `tf.data` function can compute it).

    Returns:
      int64 tensor [n].
    """
    # A negative second word: never the base of an example's seed (epochs are >= 0).
    key = tf.stack([tf.cast(seed, tf.int64), -1 - tf.cast(epoch, tf.int64)])
    return tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), key)


class _FolderReader:
    # The epoch's order is computed by TensorFlow ops, so `epoch` may be a tensor and one
    # dataset can hold many epochs without a copy of the file list per epoch.
    order_in_graph = True

    def __init__(self, files):
        self._files = files  # split -> (paths np.ndarray[str], labels np.ndarray[int32])

    def examples(self, split, order):
        paths, labels = self._files[split]
        if order is None:
            return tf.data.Dataset.from_tensor_slices((paths, labels))
        permutation = epoch_permutation(len(paths), *order)
        return tf.data.Dataset.from_tensor_slices(
            (tf.gather(paths, permutation), tf.gather(labels, permutation))
        )


# Segment markers that carry no length field.
_JPEG_STANDALONE = {0x01} | set(range(0xD0, 0xD8))
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_TAIL = 1024
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _jpeg_problem(f, size):
    """Walks the JPEG's marker segments up to the start of scan and looks for the end marker.

    Reads a few bytes per segment plus the last KB, not the whole file.
    """
    position, seen_frame = 2, False
    while True:
        f.seek(position)
        header = f.read(4)
        if len(header) < 2 or header[0] != 0xFF:
            return "corrupt JPEG (broken marker segments)"
        marker = header[1]
        if marker == 0xFF:  # Fill byte.
            position += 1
            continue
        if marker in _JPEG_STANDALONE:
            position += 2
            continue
        if marker == 0xD9 or len(header) < 4:
            return "corrupt JPEG (ends before the image data)"
        length = int.from_bytes(header[2:4], "big")
        if length < 2:
            return "corrupt JPEG (broken marker segments)"
        if marker in _JPEG_SOF:
            seen_frame = True
        if marker == 0xDA:
            if not seen_frame:
                return "corrupt JPEG (no frame header)"
            break
        position += 2 + length
    f.seek(max(size - _JPEG_TAIL, 0))
    if b"\xff\xd9" not in f.read():
        return "truncated JPEG (no end-of-image marker)"
    return None


def _bmp_problem(f, head, size):
    """TensorFlow reads uncompressed 8, 24 and 32-bit BMPs whose size is exactly header +
    rows (a single byte more or less is refused). It reads 8-bit values as grey levels,
    ignoring the palette: only a grey palette gives the right colours."""
    if len(head) < 34:
        return "truncated BMP (no header)"
    offset = int.from_bytes(head[10:14], "little")
    header_end = 14 + int.from_bytes(head[14:18], "little")
    width = int.from_bytes(head[18:22], "little", signed=True)
    height = int.from_bytes(head[22:26], "little", signed=True)
    bits = int.from_bytes(head[28:30], "little")
    if bits not in (8, 24, 32) or width <= 0 or height == 0:
        return f"BMP that TensorFlow cannot read ({bits}-bit, {width}x{height})"
    expected = offset + (bits * width + 31) // 32 * 4 * abs(height)
    if size != expected:
        return f"corrupt BMP ({size} bytes where its header implies {expected})"
    if bits == 8:
        f.seek(header_end)
        palette = np.frombuffer(f.read(max(offset - header_end, 0)), np.uint8)
        palette = palette[: palette.size // 4 * 4].reshape(-1, 4)[:, :3]
        grey = np.repeat(np.arange(len(palette), dtype=np.uint8)[:, None], 3, axis=1)
        if len(palette) > 256 or not np.array_equal(palette, grey):
            return "8-bit BMP with a colour palette (TensorFlow reads it as grey levels)"
    return None


def image_file_problem(path):
    """A cheap check of one image file: what is wrong with it, or None.

    The format is read from the file's first bytes, not its name. JPEG: start marker,
    well-formed segments up to the image data, end-of-image marker (FFD9) in the last KB.
    PNG: signature, IHDR first, IEND at the end. BMP: a bit depth TensorFlow reads, the
    size its header implies, no colour palette. GIF: the trailer byte at the end. WebP:
    the file at least as long as its RIFF size. Anything else is "not an image". Corrupt
    compressed data inside an otherwise well-formed file is not found.

    Args:
      path: file path.

    Returns:
      None for a usable file, else a short reason.
    """
    try:
        size = os.path.getsize(path)
        if size == 0:
            return "empty file"
        with open(path, "rb") as f:
            head = f.read(64)
            if head.startswith(b"\xff\xd8"):
                return _jpeg_problem(f, size)
            if head.startswith(_PNG_SIGNATURE):
                if head[12:16] != b"IHDR":
                    return "corrupt PNG (no IHDR chunk)"
                f.seek(max(size - 64, 0))
                return None if b"IEND" in f.read() else "truncated PNG (no IEND chunk)"
            if head.startswith(b"BM"):
                return _bmp_problem(f, head, size)
            if head.startswith((b"GIF87a", b"GIF89a")):
                f.seek(max(size - 16, 0))
                return None if b";" in f.read() else "truncated GIF (no trailer)"
            if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
                declared = int.from_bytes(head[4:8], "little") + 8
                return None if size >= declared else "truncated WebP (shorter than its header)"
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    return "not a JPEG, PNG, BMP, GIF or WebP image"


def check_bad_files(bad_files, on_bad_image):
    """Applies the bad-file policy.

    Args:
      bad_files: sequence of (path, reason).
      on_bad_image: "skip" logs how many were left out; "fail" raises on the first.

    Returns:
      The number of bad files.
    """
    if on_bad_image not in ON_BAD_IMAGE:
        raise ValueError(
            f"on_bad_image must be one of {ON_BAD_IMAGE}. Received: on_bad_image={on_bad_image!r}"
        )
    if bad_files and on_bad_image == "fail":
        path, reason = bad_files[0]
        raise ValueError(
            f"Bad image file ({len(bad_files)} in all; on_bad_image='skip' leaves them out): "
            f"{path}: {reason}"
        )
    if bad_files:
        logging.warning(
            "Left out %d bad files, e.g. %s",
            len(bad_files),
            "; ".join(f"{p}: {r}" for p, r in bad_files[:5]),
        )
    return len(bad_files)


def _list_split(split_dir, class_names, allow_unknown_classes):
    """Lists candidate images and the entries that cannot be images of a class."""
    candidates, labels, bad = [], [], []
    label_of = {name: i for i, name in enumerate(class_names)}
    for entry in sorted(os.scandir(split_dir), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            bad.append((entry.path, "file outside a class folder"))
            continue
        if entry.name not in label_of:
            if not allow_unknown_classes:
                bad.append((entry.path, "class folder not in train/"))
            continue
        files = sorted(os.scandir(entry.path), key=lambda e: e.name)
        files = [f for f in files if not f.name.startswith(".")]
        if not files:
            bad.append((entry.path, "empty class folder"))
        for f in files:
            if f.is_dir():
                bad.append((f.path, "folder inside a class folder"))
            elif not f.name.lower().endswith(IMAGE_EXTENSIONS):
                bad.append((f.path, f"not a {'/'.join(IMAGE_EXTENSIONS)} file"))
            else:
                candidates.append(f.path)
                labels.append(label_of[entry.name])
    return candidates, labels, bad


def folder_source(data_dir, *, on_bad_image="skip", num_threads=32):
    """An image folder: DIR/train/<class>/*.jpg and DIR/validation/<class>/...

    Images may be JPEG, PNG, BMP, GIF (the first frame is used) or WebP, named .jpg, .jpeg,
    .png, .bmp, .gif or .webp in any case; the format is read from the bytes.

    Classes are the sorted subfolder names of train/. Every file is checked with
    `image_file_problem` (in a thread pool); bad files, empty class folders and stray entries
    are left out and listed in `Source.bad_files`, so the input order never depends on a
    decode error. validation/ is optional.

    Args:
      data_dir: the folder.
      on_bad_image: "skip" (log and leave them out) or "fail" (raise on the first).
      num_threads: threads of the scan.

    Returns:
      A `Source`.
    """
    if on_bad_image not in ON_BAD_IMAGE:
        raise ValueError(
            f"on_bad_image must be one of {ON_BAD_IMAGE}. Received: on_bad_image={on_bad_image!r}"
        )
    if not data_dir:
        raise ValueError(f"data_dir must name an image folder. Received: data_dir={data_dir!r}")
    data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    if not os.path.isdir(data_dir):
        raise ValueError(f"data_dir does not exist or is not a folder. Received: {data_dir}")
    if not os.listdir(data_dir):
        raise ValueError(f"data_dir is empty. Received: {data_dir}")
    train_dir = os.path.join(data_dir, "train")
    if not os.path.isdir(train_dir):
        raise ValueError(
            f"data_dir must hold a train/ folder with one subfolder per class; "
            f"{train_dir} does not exist. Received: data_dir={data_dir}"
        )
    class_names = sorted(
        e.name for e in os.scandir(train_dir) if e.is_dir() and not e.name.startswith(".")
    )
    if not class_names:
        raise ValueError(f"{train_dir} has no class folders. Received: data_dir={data_dir}")

    listed = {"train": _list_split(train_dir, class_names, allow_unknown_classes=False)}
    validation_dir = os.path.join(data_dir, "validation")
    if os.path.isdir(validation_dir):
        listed["validation"] = _list_split(validation_dir, class_names, False)
    else:
        logging.warning("No validation/ folder in %s: there is no validation split.", data_dir)
        listed["validation"] = ([], [], [])
    all_candidates = listed["train"][0] + listed["validation"][0]
    if not all_candidates:
        raise ValueError(
            f"No {'/'.join(IMAGE_EXTENSIONS)} files under {data_dir}. Received: {data_dir}"
        )

    with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
        problems = dict(zip(all_candidates, pool.map(image_file_problem, all_candidates)))
    files, bad_files = {}, []
    for split in SPLITS:
        candidates, labels, bad = listed[split]
        bad_files += bad + [(p, problems[p]) for p in candidates if problems[p]]
        keep = [i for i, p in enumerate(candidates) if not problems[p]]
        files[split] = (
            np.array([candidates[i] for i in keep], dtype=object).astype(str),
            np.array([labels[i] for i in keep], np.int32),
        )
    bad_files.sort()
    if len(files["train"][0]) == 0:
        raise ValueError(f"No usable training images under {train_dir}. Received: {data_dir}")
    check_bad_files(bad_files, on_bad_image)
    return Source(
        name=f"folder:{data_dir}",
        kind="folder",
        class_names=tuple(class_names),
        num_train=len(files["train"][0]),
        num_validation=len(files["validation"][0]),
        bad_files=tuple(bad_files),
        _reader=_FolderReader(files),
    )


class _TfdsReader:
    # Shuffle window of the TFDS path: encoded records held in memory to mix examples within
    # and across the interleaved files.
    WINDOW = 1024
    # The record files are permuted in Python, when the TFDS dataset is built.
    order_in_graph = False

    def __init__(self, builder, image_key, label_key, splits):
        self._builder = builder
        self._image_key = image_key
        self._label_key = label_key
        self._splits = splits  # our split name -> TFDS split name

    def examples(self, split, order):
        import tensorflow_datasets as tfds  # Imported here: only this path needs it.

        sort_fn = None
        if order is not None:
            _epoch_rng(*order)  # Checks the arguments now.

            def sort_fn(instructions):
                # The same permutation of the record files on every worker, on every call.
                permutation = _epoch_rng(*order).permutation(len(instructions))
                return [instructions[i] for i in permutation]

        read_config = tfds.ReadConfig(try_autocache=False, experimental_interleave_sort_fn=sort_fn)
        ds = self._builder.as_dataset(
            split=self._splits[split],
            shuffle_files=False,
            decoders={self._image_key: tfds.decode.SkipDecoding()},
            read_config=read_config,
        )
        image_key, label_key = self._image_key, self._label_key
        ds = ds.map(lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int32)))
        if order is not None:
            ds = _window_shuffle(ds, self.WINDOW, order)
        return ds


def _window_shuffle(ds, window, order):
    """Shuffles within consecutive windows with stateless permutations of (seed, epoch, window).

    Unlike `Dataset.shuffle`, the result does not depend on TensorFlow's global seed.
    """
    seed, epoch = order
    # A negative first word: never the base of an example's seed (seeds are >= 0).
    base = tf.constant([-1 - seed, epoch], tf.int64)

    def permute(index, batch):
        refs, labels = batch
        noise = tf.random.stateless_uniform(
            tf.shape(labels), tf.random.experimental.stateless_fold_in(base, index)
        )
        permutation = tf.argsort(noise)
        return tf.data.Dataset.from_tensor_slices(
            (tf.gather(refs, permutation), tf.gather(labels, permutation))
        )

    return ds.batch(window).enumerate().flat_map(permute)


def _check_manual_dir(name, manual_dir):
    if name.split(":")[0].split("/")[0] != "imagenet2012":
        raise ValueError(
            "manual_dir is supported for imagenet2012 only; prepare other datasets with "
            f"`tfds build`. Received: name={name!r}, manual_dir={manual_dir!r}"
        )
    manual_dir = os.path.abspath(os.path.expanduser(os.fspath(manual_dir)))
    missing = [f for f in IMAGENET_MANUAL_FILES if not os.path.isfile(os.path.join(manual_dir, f))]
    if missing:
        raise ValueError(
            f"manual_dir must hold {' and '.join(IMAGENET_MANUAL_FILES)}; missing: "
            f"{', '.join(missing)}. Received: manual_dir={manual_dir}"
        )
    return manual_dir


def tfds_source(name, data_dir, manual_dir=None):
    """A TFDS dataset prepared in data_dir, or imagenet2012 prepared from manual_dir.

    Images stay encoded (`tfds.decode.SkipDecoding`) until `decode_and_center_crop`. Nothing
    is downloaded: a dataset that is not prepared in data_dir is an error unless it is
    imagenet2012 and manual_dir holds ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar,
    which are then prepared into data_dir once (hours and ~150 GB for the real files).

    Args:
      name: "NAME" or "NAME:VERSION", e.g. "imagenet2012" or "imagenet2012:5.1.0".
      data_dir: the TFDS data folder.
      manual_dir: folder of the ILSVRC2012 tar files (imagenet2012 only).

    Returns:
      A `Source`.
    """
    if not name:
        raise ValueError(f"name must name a TFDS dataset. Received: name={name!r}")
    if not data_dir:
        raise ValueError(f"data_dir must be the TFDS data folder. Received: data_dir={data_dir!r}")
    data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    if manual_dir is not None:
        manual_dir = _check_manual_dir(name, manual_dir)
    elif not os.path.isdir(data_dir):
        raise ValueError(f"data_dir does not exist. Received: data_dir={data_dir}")

    import tensorflow_datasets as tfds  # Imported here: the folder path does not need it.

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError as e:
        raise ValueError(
            f"No TFDS dataset {name!r}, neither in TFDS nor prepared in {data_dir}. "
            f"Received: name={name!r}, data_dir={data_dir}"
        ) from e
    if not builder.is_prepared():
        if manual_dir is None:
            raise ValueError(
                f"{name} is not prepared in {data_dir} (no {builder.data_dir}); prepare it "
                "first (`tfds build`), or for imagenet2012 pass manual_dir. "
                f"Received: name={name!r}, data_dir={data_dir}"
            )
        try:
            # TFDS 4.9 imports it when preparing but declares it only for Python < 3.9
            # (tensorflow/datasets#11212).
            import importlib_resources  # noqa: F401
        except ImportError as e:
            raise ImportError(
                "Preparing a TFDS dataset needs the package importlib_resources "
                "(pip install importlib_resources)."
            ) from e
        print(f"Preparing {name} from {manual_dir} into {data_dir}", flush=True)
        os.makedirs(data_dir, exist_ok=True)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                manual_dir=manual_dir, try_download_gcs=False
            )
        )

    info = builder.info
    if not info.supervised_keys or len(info.supervised_keys) != 2:
        raise ValueError(
            f"{name} has no (image, label) supervised keys. "
            f"Received: supervised_keys={info.supervised_keys}"
        )
    image_key, label_key = info.supervised_keys
    if not isinstance(info.features[image_key], tfds.features.Image):
        raise ValueError(
            f"{name}'s input {image_key!r} is not an image feature. "
            f"Received: {type(info.features[image_key]).__name__}"
        )
    if not isinstance(info.features[label_key], tfds.features.ClassLabel):
        raise ValueError(
            f"{name}'s label {label_key!r} is not a class label. "
            f"Received: {type(info.features[label_key]).__name__}"
        )
    if "train" not in info.splits:
        raise ValueError(f"{name} has no train split. Received: splits={list(info.splits)}")
    validation = next((s for s in ("validation", "test") if s in info.splits), None)
    splits = {"train": "train", "validation": validation}
    return Source(
        name=name,
        kind="tfds",
        class_names=tuple(info.features[label_key].names),
        num_train=info.splits["train"].num_examples,
        num_validation=info.splits[validation].num_examples if validation else 0,
        _reader=_TfdsReader(builder, image_key, label_key, splits),
    )


# ---------------------------------------------------------------------------------------------
# Dataset statistics.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Stats:
    """Training-set statistics the preprocessing needs.

    Attributes:
      mean_image: float32 [256, 256, 3], the mean of the 256x256 images, 0-255.
      eigval: float32 [3], eigenvalues of the RGB covariance (RGB in [0, 1]), largest first.
      eigvec: float32 [3, 3], the eigenvectors as columns.
      num_images: how many images the mean was computed over.
    """

    mean_image: np.ndarray
    eigval: np.ndarray
    eigvec: np.ndarray
    num_images: int = 0

    def __post_init__(self):
        for field, shape in (("eigval", (3,)), ("eigvec", (3, 3))):
            if np.shape(getattr(self, field)) != shape:
                raise ValueError(
                    f"{field} must have shape {shape}. "
                    f"Received: {field}.shape={np.shape(getattr(self, field))}"
                )
        shape = np.shape(self.mean_image)
        if len(shape) != 3 or shape[0] != shape[1] or shape[2] != 3:
            raise ValueError(f"mean_image must have shape [S, S, 3]. Received: {shape}")
        for field in ("mean_image", "eigval", "eigvec"):
            object.__setattr__(self, field, np.asarray(getattr(self, field), np.float32))

    @property
    def pca(self):
        """The eigen-decomposition as a `PCA`."""
        return PCA(self.eigval, self.eigvec)

    def save(self, path):
        """Writes the statistics to `path` (an .npz file; any tf.io.gfile path)."""
        buffer = io.BytesIO()
        np.savez(
            buffer,
            mean_image=self.mean_image,
            eigval=self.eigval,
            eigvec=self.eigvec,
            num_images=np.int64(self.num_images),
        )
        # Written aside and renamed: another worker may read the file at any moment.
        path = os.fspath(path)
        partial = f"{path}.partial-{os.getpid()}"
        with tf.io.gfile.GFile(partial, "wb") as f:
            f.write(buffer.getvalue())
        tf.io.gfile.rename(partial, path, overwrite=True)

    @classmethod
    def load(cls, path):
        """Reads statistics written by `save`."""
        path = os.fspath(path)
        if not tf.io.gfile.exists(path):
            raise ValueError(f"No statistics file. Received: path={path}")
        with tf.io.gfile.GFile(path, "rb") as f:
            data = np.load(io.BytesIO(f.read()))
            return cls(
                mean_image=data["mean_image"],
                eigval=data["eigval"],
                eigvec=data["eigvec"],
                num_images=int(data["num_images"]),
            )


def pca_from_moments(pixel_sum, pixel_outer_sum, count):
    """Eigen-decomposition of an RGB covariance given by its moments.

    Args:
      pixel_sum: [3] sum of the RGB values.
      pixel_outer_sum: [3, 3] sum of the outer products of the RGB values.
      count: number of pixels.

    Returns:
      `PCA`, eigenvalues largest first.
    """
    mean = np.asarray(pixel_sum, np.float64) / count
    covariance = np.asarray(pixel_outer_sum, np.float64) / count - np.outer(mean, mean)
    eigval, eigvec = np.linalg.eigh(covariance)
    order = np.argsort(eigval)[::-1]
    return PCA(eigval[order].astype(np.float32), eigvec[:, order].astype(np.float32))


def compute_stats(source, *, max_images=10000, seed=0, batch_size=64, pca=None):
    """Mean image and RGB PCA over the training set or a random sample of it.

    Args:
      source: a `Source`.
      max_images: at most this many training images, a uniform sample (the first
        `max_images` of epoch 0's order under `seed`).
      seed: seed of the sample.
      batch_size: images decoded per step.
      pca: a `PCA` to use instead of the sample's; None uses `IMAGENET_PCA` for imagenet2012
        and the sample's PCA otherwise.

    Returns:
      `Stats`.
    """
    if max_images < 1:
        raise ValueError(f"max_images must be >= 1. Received: max_images={max_images}")
    if pca is None and source.kind == "tfds" and source.name.split(":")[0] == "imagenet2012":
        pca = IMAGENET_PCA
    count = min(max_images, source.num_train)

    def moments(ref, label):
        del label
        image = decode_and_center_crop(source.load(ref))
        pixels = tf.reshape(tf.cast(image, tf.float64) / 255.0, [-1, 3])
        return image, tf.reduce_sum(pixels, 0), tf.matmul(pixels, pixels, transpose_a=True)

    ds = source.examples("train", order=(seed, 0)).take(count)
    ds = ds.map(moments, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
    image_sum = np.zeros([IMAGE_SIZE, IMAGE_SIZE, 3], np.float64)
    pixel_sum, outer_sum = np.zeros([3]), np.zeros([3, 3])
    for images, sums, outers in ds.prefetch(1).as_numpy_iterator():
        image_sum += images.astype(np.float64).sum(0)
        pixel_sum += sums.sum(0)
        outer_sum += outers.sum(0)
    if pca is None:
        pca = pca_from_moments(pixel_sum, outer_sum, count * IMAGE_SIZE * IMAGE_SIZE)
    return Stats(image_sum / count, pca.eigval, pca.eigvec, num_images=count)


# ---------------------------------------------------------------------------------------------
# Datasets.
# ---------------------------------------------------------------------------------------------


def steps_per_epoch(source, global_batch_size):
    """Training steps in one epoch: full global batches only.

    Args:
      source: a `Source`.
      global_batch_size: examples per step over all replicas.

    Returns:
      int, `source.num_train // global_batch_size`.
    """
    if global_batch_size < 1 or global_batch_size > source.num_train:
        raise ValueError(
            f"global_batch_size must be between 1 and the training set's size "
            f"({source.num_train}). Received: global_batch_size={global_batch_size}"
        )
    return source.num_train // global_batch_size


def _layout(input_context, global_batch_size):
    """(number of input pipelines, this pipeline's id, per-replica batch size)."""
    if input_context is None:
        return 1, 0, global_batch_size
    pipelines = input_context.num_input_pipelines
    replicas = input_context.num_replicas_in_sync
    if replicas % pipelines:
        raise ValueError(
            "The replicas must be spread evenly over the input pipelines. Received: "
            f"num_replicas_in_sync={replicas}, num_input_pipelines={pipelines}"
        )
    per_replica = input_context.get_per_replica_batch_size(global_batch_size)
    return pipelines, input_context.input_pipeline_id, per_replica


def dataset_options():
    """The `tf.data.Options` of `train_dataset` and `eval_dataset`: deterministic order."""
    options = tf.data.Options()
    options.deterministic = True
    # Parallelism comes from the parallel map; letting each op also split its work over the
    # intra-op pool only adds synchronisation (and spinning threads) per image.
    options.threading.max_intra_op_parallelism = 1
    return options


def train_dataset(
    source,
    *,
    global_batch_size,
    stats,
    seed,
    epoch,
    start_step=0,
    input_context=None,
    num_epochs=1,
):
    """Augmented training batches of epochs epoch .. epoch + num_epochs - 1.

    The order of an epoch is a pure function of (seed, epoch): the same permutation on every
    worker (for folders a full permutation, `epoch_permutation`; for TFDS a permutation of the
    record files, then stateless shuffles of 1024-record windows), then sharded element-wise
    over the input pipelines (with TFDS every pipeline reads all records and keeps its share).
    Each pipeline yields per-replica batches; one step takes global_batch_size /
    num_input_pipelines of its examples, so every pipeline yields the same number of batches
    and the last partial step of an epoch is dropped. The `start_step` steps already taken
    are skipped before decoding. Augmentation is seeded by (seed, epoch, position in the
    epoch), so a resumed run sees exactly the batches the uninterrupted run would have.

    Args:
      source: a `Source`.
      global_batch_size: examples per step over all replicas.
      stats: `Stats` of the training set.
      seed: int >= 0, the run's seed.
      epoch: int >= 0, the first epoch.
      start_step: steps already taken, counted from the start of `epoch` (may span epochs).
      input_context: a `tf.distribute.InputContext`, or None for one pipeline and replica.
      num_epochs: number of epochs in the dataset.

    Returns:
      A `tf.data.Dataset` of (images float32 [per_replica_batch, 227, 227, 3],
      labels int32 [per_replica_batch]).
    """
    steps = steps_per_epoch(source, global_batch_size)
    pipelines, pipeline_id, per_replica = _layout(input_context, global_batch_size)
    if num_epochs < 1:
        raise ValueError(f"num_epochs must be >= 1. Received: num_epochs={num_epochs}")
    if not 0 <= start_step < steps * num_epochs:
        raise ValueError(
            f"start_step must be in [0, {steps * num_epochs}) ({num_epochs} epochs of {steps} "
            f"steps). Received: start_step={start_step}"
        )
    per_step = global_batch_size // pipelines  # This pipeline's examples in one step.

    def epoch_refs(e, skip_steps):
        """(ref, label, epoch, index in the epoch) of this pipeline's share of epoch e."""
        ds = source.examples("train", order=(seed, e)).enumerate()
        if pipelines > 1:
            ds = ds.shard(pipelines, pipeline_id)
        ds = ds.take(steps * per_step).skip(skip_steps * per_step)
        e = tf.cast(e, tf.int64)
        return ds.map(lambda index, example: (*example, e, index))

    def preprocess(ref, label, e, index):
        image = preprocess_for_train(source.load(ref), stats, example_seed(seed, e, index))
        return image, label

    # Epochs are joined before decoding, so one parallel map serves them all; every epoch
    # holds whole steps, so no batch straddles two epochs.
    _check_seed_and_epoch(seed, epoch)
    first, skip = epoch + start_step // steps, start_step % steps
    if source._reader.order_in_graph:
        refs = tf.data.Dataset.range(first, epoch + num_epochs).flat_map(
            lambda e: epoch_refs(e, tf.where(e == first, tf.constant(skip, tf.int64), 0))
        )
    else:
        refs = epoch_refs(first, skip)
        for e in range(first + 1, epoch + num_epochs):
            refs = refs.concatenate(epoch_refs(e, 0))
    ds = refs.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(per_replica, drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(dataset_options())


def undecodable_in_step(source, *, seed, epoch, step, global_batch_size):
    """The examples of one training step that do not decode, and why.

    The scan before training (`image_file_problem`) reads only a file's structure; damage
    inside the compressed data shows only when TensorFlow decodes it, as an error that does
    not say which file it was. The order of an epoch is a function of (seed, epoch), so the
    step that failed names its examples: positions step * global_batch_size onwards of the
    epoch's order, whatever the number of input pipelines (each takes every n-th of them).
    They are decoded one by one, eagerly: call this only after a step failed.

    Args:
      source: the `Source` of `train_dataset`.
      seed, epoch: as given to `train_dataset`.
      step: the failed step, counted from the start of `epoch`.
      global_batch_size: as given to `train_dataset`.

    Returns:
      A list of (name, reason): name is the file path for folders, and "example N of epoch
      E's order" for TFDS datasets.
    """
    first = step * global_batch_size
    refs = source.examples("train", order=(seed, epoch)).skip(first).take(global_batch_size)
    return _decode_failures(
        source,
        enumerate(refs.as_numpy_iterator(), start=first),
        f"epoch {epoch}'s order",
    )


def undecodable(source, split):
    """Every example of a split that does not decode, and why (after a failed evaluation).

    Args:
      source: a `Source`.
      split: "train" or "validation".

    Returns:
      A list of (name, reason), as `undecodable_in_step`.
    """
    examples = source.examples(split).enumerate()

    def decode(index, example):
        # A value of the pixels (not of the static shape), so the decode is not optimised away.
        return index, tf.reduce_max(decode_and_center_crop(source.load(example[0])))

    # Decoded in parallel, the failures dropped; only those are decoded again, for a reason.
    decoded = examples.map(
        decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False
    ).ignore_errors()
    good = {int(index) for index, _ in decoded.as_numpy_iterator()}
    failed = (
        (int(index), example)
        for index, example in examples.as_numpy_iterator()
        if int(index) not in good
    )
    return _decode_failures(source, failed, f"the {split} split")


def describe_failures(bad, what, before, limit=5):
    """The message for images that do not decode: how many, and the first `limit`.

    Args:
      bad: a list of (name, reason), from `undecodable` or `undecodable_in_step`.
      what: what they are, e.g. "validation image(s)".
      before: the work the scan ran before, e.g. "training".
      limit: how many to name.
    """
    text = "; ".join(f"{name}: {reason}" for name, reason in bad[:limit])
    if len(bad) > limit:
        text += f"; and {len(bad) - limit} more"
    return (
        f"{len(bad)} {what} do not decode (the scan before {before} reads only the files' "
        f"structure): {text}"
    )


def _decode_failures(source, positioned_examples, order_name):
    bad = []
    for position, (ref, _) in positioned_examples:
        try:
            decode_and_center_crop(source.load(ref))
        except tf.errors.InvalidArgumentError as error:
            if source.kind == "folder":
                name = ref.decode()
            else:
                name = f"example {position} of {order_name}"
            bad.append((name, error_summary(error.message)))
    return bad


def error_summary(message):
    """The informative line of a TensorFlow op error, without its graph and op decorations.

    Eager errors read "{{function_node ...}} Invalid PNG data [Op:DecodeImage]"; errors of a
    graph function (a SavedModel signature) put "Graph execution error", the node and stack
    lines first. Either way the reason is returned, e.g. "Invalid PNG data".
    """
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", message)
    for line in message.splitlines():
        line = re.sub(r"\s*\[Op:.*", "", line).strip()
        if line and not line.startswith(("Graph execution error", "Detected at", "<stack", "[[")):
            return line
    return message.strip()


def eval_dataset(
    source, *, batch_size, stats, split="validation", crops="center", input_context=None
):
    """Evaluation batches of every example of a split, in file order.

    Args:
      source: a `Source`.
      batch_size: global batch size (per replica: `input_context`'s share of it).
      stats: `Stats` of the training set.
      split: "validation" or "train".
      crops: "center" (one central 227 patch) or "ten" (the paper's ten patches).
      input_context: a `tf.distribute.InputContext`, or None.

    Returns:
      A `tf.data.Dataset` of (images, labels int32); images are float32 [b, 227, 227, 3] for
      "center" and [b, 10, 227, 227, 3] for "ten". The last batch may be smaller.
    """
    if crops not in ("center", "ten"):
        raise ValueError(f'crops must be "center" or "ten". Received: crops={crops!r}')
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1. Received: batch_size={batch_size}")
    pipelines, pipeline_id, per_replica = _layout(input_context, batch_size)

    def preprocess(ref, label):
        return preprocess_for_eval(source.load(ref), stats, crops), label

    ds = source.examples(split)
    if pipelines > 1:
        ds = ds.shard(pipelines, pipeline_id)
    ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(per_replica).prefetch(tf.data.AUTOTUNE).with_options(dataset_options())


__all__ = [
    "CROP_SIZE",
    "IMAGENET_PCA",
    "IMAGE_SIZE",
    "PCA",
    "Source",
    "Stats",
    "center_crop",
    "check_bad_files",
    "compute_stats",
    "dataset_options",
    "decode_and_center_crop",
    "describe_failures",
    "epoch_permutation",
    "error_summary",
    "eval_dataset",
    "example_seed",
    "folder_source",
    "image_file_problem",
    "pca_from_moments",
    "pca_lighting",
    "preprocess_for_eval",
    "preprocess_for_train",
    "random_crop_and_flip",
    "subtract_mean",
    "steps_per_epoch",
    "ten_crop",
    "tfds_source",
    "train_dataset",
    "undecodable",
    "undecodable_in_step",
]
