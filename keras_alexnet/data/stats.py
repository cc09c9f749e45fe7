"""Training-set statistics: the mean image and the RGB colour PCA the preprocessing needs."""

import dataclasses
import io
import os
import zipfile

import numpy as np
import tensorflow as tf

from keras_alexnet import errors
from keras_alexnet.data import preprocessing
from keras_alexnet.data import tfds_sources
from keras_alexnet.paper import numbers as paper


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
            buffer = io.BytesIO(f.read())
            check_npz(path, buffer)
            buffer.seek(0)
            data = np.load(buffer)
            return cls(
                mean_image=data["mean_image"],
                eigval=data["eigval"],
                eigvec=data["eigvec"],
                num_images=int(data["num_images"]),
            )


# The largest mean image read: 16 times the paper's 256x256, as `SubtractMean`'s.
MAX_MEAN_SIZE = 4096
_ARRAYS = {"mean_image": None, "eigval": (3,), "eigvec": (3, 3), "num_images": ()}


def check_npz(path, buffer):
    """Reads the .npy headers of a statistics file's arrays, not their data, and refuses
    shapes and types other than `Stats`' (a mean image [S, S, 3], S up to MAX_MEAN_SIZE):
    a few bytes of header may declare an array of gigabytes.

    Raises:
        errors.InputError: naming the file, the array and what is wrong with it.
    """
    try:
        archive = zipfile.ZipFile(buffer)
    except zipfile.BadZipFile:
        raise errors.InputError(f"{path}: not an .npz file (not a zip archive)") from None
    with archive:
        for name, shape in _ARRAYS.items():
            try:
                with archive.open(f"{name}.npy") as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        found, _, dtype = np.lib.format.read_array_header_1_0(f)
                    elif version == (2, 0):
                        found, _, dtype = np.lib.format.read_array_header_2_0(f)
                    else:
                        raise ValueError(f"an .npy format version {version} it does not read")
            except KeyError:
                raise errors.InputError(f"{path}: no {name} array") from None
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
                raise errors.InputError(
                    f"{path}: {name} is not a readable array ({error})"
                ) from None
            if shape is None:
                side = found[0] if len(found) == 3 else 0
                ok = found == (side, side, 3) and 1 <= side <= MAX_MEAN_SIZE
                shape = f"[S, S, 3] with S at most {MAX_MEAN_SIZE}"
            else:
                ok = found == shape
            if not ok or dtype.kind not in "fiu":
                raise errors.InputError(
                    f"{path}: {name} is {dtype} of shape {list(found)}, where the statistics "
                    f"hold numbers of shape {list(shape) if isinstance(shape, tuple) else shape}"
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
        source: a `sources.Source`.
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
    if pca is None and source.kind == "tfds" and tfds_sources.is_imagenet2012(source.name):
        pca = IMAGENET_PCA
    count = min(max_images, source.num_train)

    def moments(ref, label):
        del label
        image = preprocessing.decode_and_center_crop(source.load(ref))
        pixels = tf.reshape(tf.cast(image, tf.float64) / 255.0, [-1, 3])
        return image, tf.reduce_sum(pixels, 0), tf.matmul(pixels, pixels, transpose_a=True)

    ds = source.examples("train", order=(seed, 0)).take(count)
    ds = ds.map(moments, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
    image_sum = np.zeros([preprocessing.IMAGE_SIZE, preprocessing.IMAGE_SIZE, 3], np.float64)
    pixel_sum, outer_sum = np.zeros([3]), np.zeros([3, 3])
    for images, sums, outers in ds.prefetch(1).as_numpy_iterator():
        image_sum += images.astype(np.float64).sum(0)
        pixel_sum += sums.sum(0)
        outer_sum += outers.sum(0)
    if pca is None:
        pca = pca_from_moments(
            pixel_sum, outer_sum, count * preprocessing.IMAGE_SIZE * preprocessing.IMAGE_SIZE
        )
    return Stats(image_sum / count, pca.eigval, pca.eigvec, num_images=count)
