"""Sources: where the (encoded image, label) pairs come from, and the order they come in.

A `Source` is a labelled image set read through a reader of its kind: an image folder
(`folder_sources`), a TFDS dataset (`tfds_sources`) or a prepared folder (`shards`). The
input order is a pure function of (seed, epoch), the same on every worker, so exact resume
only has to skip the steps already taken.
"""

import dataclasses
import unicodedata
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging

SPLITS = ("train", "validation", "test")
ON_BAD_IMAGE = ("skip", "fail")
# Examples in one window of `Source.windows`; the shuffle window of record files (TFDS's and
# prepared ones): records held in memory to mix examples within and across the files read
# at once.
WINDOW = 1024


@dataclasses.dataclass(frozen=True)
class Source:
    """A labelled image set: an image folder or a prepared TFDS dataset.

    Attributes:
        name: "folder:<path>" or the TFDS name.
        kind: "folder" or "tfds".
        class_names: class names; a label is an index into this list.
        num_train: number of training examples used.
        num_validation: number of validation examples used (0 when there are none).
        bad_files: (path, reason) of every file or folder left out (folders only).
        num_test: number of test examples (0 when there are none).
        layout: how a folder's splits were found, e.g. "train/ and val/", or
            "validation_split=0.1 of DIR/ (seed 0)" (folders only).
        jpeg_size: when every image is a JPEG of jpeg_size x jpeg_size pixels (a prepared
            folder in a JPEG encoding), that size; else 0.
    """

    name: str
    kind: str
    class_names: tuple[str, ...]
    num_train: int
    num_validation: int
    bad_files: tuple[tuple[str, str], ...] = ()
    num_test: int = 0
    layout: str = ""
    jpeg_size: int = 0
    _reader: Any = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def num_classes(self):
        """Number of classes."""
        return len(self.class_names)

    @property
    def order_in_graph(self):
        """Whether `examples` takes (seed, epoch) as tensors, computing the order in the graph.

        True for folders: one dataset can then hold many epochs. False for TFDS, whose record
        files are permuted in Python when the dataset is built.
        """
        return self._reader.order_in_graph

    def num_examples(self, split):
        """Number of examples of `split` ("train", "validation" or "test")."""
        _check_split(split)
        return {"train": self.num_train, "validation": self.num_validation}.get(
            split, self.num_test
        )

    def files(self, split):
        """The (paths, labels) of a folder's split, in file order (np.ndarrays)."""
        if self.kind != "folder":
            raise ValueError(f"{self.name} is not an image folder. Received: kind={self.kind!r}")
        return self._reader.files[split]

    def record_files(self, split):
        """The record files of a prepared or TFDS split, in file order (a list of paths).

        With `parse_record`, what a reader of whole files needs (the tf.data service splits
        the training set by file, `pipelines.train_dataset_by_file`).
        """
        _check_split(split)
        if self.kind == "folder":
            raise ValueError(
                f"{self.name} is an image folder, not record files. Received: kind={self.kind!r}"
            )
        if self.num_examples(split) == 0:
            raise ValueError(f"{self.name} has no {split} examples. Received: split={split!r}")
        return self._reader.record_files(split)

    def parse_record(self, record):
        """(ref, label int32) of one serialised record of `record_files` (a scalar tensor)."""
        return self._reader.parse_record(record)

    def without(self, bad_files):
        """The same folder without some of its files.

        Args:
            bad_files: (path, reason) pairs; their paths are left out of every split and the
                pairs added to `bad_files`.

        Returns:
            A new `Source`.
        """
        if not bad_files:
            return self
        reader = self._reader.without({path for path, _ in bad_files})
        return dataclasses.replace(
            self,
            num_train=len(reader.files["train"][0]),
            num_validation=len(reader.files["validation"][0]),
            num_test=len(reader.files["test"][0]),
            bad_files=tuple(sorted(set(self.bad_files) | set(bad_files))),
            _reader=reader,
        )

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
        self._check_request(split, order)
        return self._reader.examples(split, order)

    def windows(self, split, order):
        """`examples(split, order)` in consecutive windows of `WINDOW` (the last may be
        shorter): a dataset of (refs [n], labels int32 [n]).

        For pipelines that work on many examples at once (`pipelines.train_dataset`
        draws a window's augmentation together); the examples and their order are those of
        `examples`.
        """
        self._check_request(split, order)
        return self._reader.windows(split, order)

    def _check_request(self, split, order):
        _check_split(split)
        if self.num_examples(split) == 0:
            raise ValueError(f"{self.name} has no {split} examples. Received: split={split!r}")
        if order is not None and not any(isinstance(v, tf.Tensor) for v in order):
            check_seed_and_epoch(*order)

    def load(self, ref):
        """Encoded image bytes of a ref from `examples` (reads the file for folders)."""
        return tf.io.read_file(ref) if self.kind == "folder" else ref


def _check_split(split):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}. Received: split={split!r}")


def check_seed_and_epoch(seed, epoch):
    """Raises a ValueError unless seed and epoch (Python numbers) are both >= 0."""
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be >= 0. Received: seed={seed}, epoch={epoch}")


def epoch_rng(seed, epoch):
    """The NumPy generator of an epoch's Python-side order (shards, record files)."""
    check_seed_and_epoch(seed, epoch)
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


def shuffled_windows(ds, window, order, prepare_window=None):
    """Shuffles within consecutive windows with stateless permutations of (seed, epoch, window).

    Unlike `Dataset.shuffle`, the result does not depend on TensorFlow's global seed.

    Args:
        ds: a dataset of (ref, label), or of anything `prepare_window` makes them from.
        window: elements per window.
        order: (seed, epoch).
        prepare_window: None, or a function from a window (a batch of ds's elements) to its
            (refs, labels), e.g. a batched parse.

    Returns:
        The dataset of the shuffled windows, (refs [n], labels [n]); all but the last hold
        `window` elements.
    """
    seed, epoch = order
    # A negative first word: never the base of an example's seed (seeds are >= 0).
    base = tf.constant([-1 - seed, epoch], tf.int64)

    def permute(index, batch):
        refs, labels = prepare_window(batch) if prepare_window else batch
        noise = tf.random.stateless_uniform(
            tf.shape(labels), tf.random.experimental.stateless_fold_in(base, index)
        )
        permutation = tf.argsort(noise)
        return tf.gather(refs, permutation), tf.gather(labels, permutation)

    return ds.batch(window).enumerate().map(permute)


def class_name_problem(name):
    """What makes a class name unusable, or None: a line break or another control
    character (each class name is one line of labels.txt, and one label printed)."""
    for char in name:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            return f"a line break or control character ({char!r})"
    return None


def check_on_bad_image(on_bad_image):
    """Raises a ValueError unless on_bad_image is one of `ON_BAD_IMAGE` ("skip", "fail")."""
    if on_bad_image not in ON_BAD_IMAGE:
        raise ValueError(
            f"on_bad_image must be one of {ON_BAD_IMAGE}. Received: on_bad_image={on_bad_image!r}"
        )


def check_bad_files(bad_files, on_bad_image):
    """Applies the bad-file policy.

    Args:
        bad_files: sequence of (path, reason).
        on_bad_image: "skip" logs how many were left out; "fail" raises on the first.

    Returns:
        The number of bad files.
    """
    check_on_bad_image(on_bad_image)
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


def check_validation_split(validation_split):
    """Raises a ValueError unless validation_split is None or a fraction in (0, 1)."""
    if validation_split is not None and not 0 < validation_split < 1:
        raise ValueError(
            "validation_split must be a fraction between 0 and 1 (exclusive). "
            f"Received: validation_split={validation_split!r}"
        )
