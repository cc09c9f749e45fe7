"""Sources: where the (encoded image, label) pairs come from (an image folder or TFDS).

The input order is a pure function of (seed, epoch), the same on every worker, so exact
resume only has to skip the steps already taken.
"""

import concurrent.futures
import dataclasses
import hashlib
import os
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging

from keras_alexnet.data import image_files

SPLITS = ("train", "validation", "test")
# Folder names of the validation split, in the order they are looked for.
VALIDATION_FOLDERS = ("validation", "val", "valid")
ON_BAD_IMAGE = ("skip", "fail")
# Examples in one window of `Source.windows`; the shuffle window of record files (TFDS's and
# prepared ones): records held in memory to mix examples within and across the files read
# at once.
WINDOW = 1024
IMAGENET_MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")


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
        the training set by file, `input_pipeline.train_dataset_by_file`).
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
        drop = {path for path, _ in bad_files}
        files = {}
        for split, (paths, labels) in self._reader.files.items():
            keep = np.array([p not in drop for p in paths], bool)
            files[split] = (paths[keep], labels[keep])
        return dataclasses.replace(
            self,
            num_train=len(files["train"][0]),
            num_validation=len(files["validation"][0]),
            num_test=len(files["test"][0]),
            bad_files=tuple(sorted(set(self.bad_files) | set(bad_files))),
            _reader=_FolderReader(files),
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

        For pipelines that work on many examples at once (`input_pipeline.train_dataset`
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


class _FolderReader:
    # The epoch's order is computed by TensorFlow ops, so `epoch` may be a tensor and one
    # dataset can hold many epochs without a copy of the file list per epoch.
    order_in_graph = True

    def __init__(self, files):
        self.files = files  # split -> (paths np.ndarray[str], labels np.ndarray[int32])

    def examples(self, split, order):
        paths, labels = self.files[split]
        if order is None:
            return tf.data.Dataset.from_tensor_slices((paths, labels))
        permutation = epoch_permutation(len(paths), *order)
        return tf.data.Dataset.from_tensor_slices(
            (tf.gather(paths, permutation), tf.gather(labels, permutation))
        )

    def windows(self, split, order):
        return self.examples(split, order).batch(WINDOW)


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


def _class_folders(folder):
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _list_split(split_dir, class_names):
    """Lists candidate images and the entries that cannot be images of a class."""
    candidates, labels, bad = [], [], []
    label_of = {name: i for i, name in enumerate(class_names)}
    for entry in sorted(os.scandir(split_dir), key=lambda e: e.name):
        if entry.name.startswith(".") or (entry.is_dir() and entry.name not in label_of):
            continue  # hidden, or a split folder beside the classes (checked before)
        if not entry.is_dir():
            bad.append((entry.path, "file outside a class folder"))
            continue
        files = sorted(os.scandir(entry.path), key=lambda e: e.name)
        files = [f for f in files if not f.name.startswith(".")]
        if not files:
            bad.append((entry.path, "empty class folder"))
        for f in files:
            if f.is_dir():
                bad.append((f.path, "folder inside a class folder"))
            elif not f.name.lower().endswith(image_files.IMAGE_EXTENSIONS):
                bad.append((f.path, f"not a {'/'.join(image_files.IMAGE_EXTENSIONS)} file"))
            else:
                candidates.append(f.path)
                labels.append(label_of[entry.name])
    return candidates, labels, bad


def _find_splits(data_dir, validation_split):
    """The folder of each split (None where there is none), and the layout in words."""

    def sub(name):
        path = os.path.join(data_dir, name)
        return path if os.path.isdir(path) else None

    validation_dirs = [d for d in map(sub, VALIDATION_FOLDERS) if d]
    if len(validation_dirs) > 1:
        raise ValueError(
            f"data_dir holds {len(validation_dirs)} validation folders; keep one of "
            f"{', '.join(VALIDATION_FOLDERS)}. Received: {', '.join(validation_dirs)}"
        )
    validation_dir = validation_dirs[0] if validation_dirs else None
    train_dir, test_dir = sub("train"), sub("test")
    if validation_split is not None:
        if validation_dir:
            raise ValueError(
                f"validation_split holds out part of the training images, and {data_dir} has "
                f"a validation folder already ({validation_dir}): use one or the other. "
                f"Received: validation_split={validation_split}"
            )
        train_dir = train_dir or data_dir
        where = "train/" if train_dir != data_dir else f"{data_dir}/"
        layout = f"validation_split={validation_split:g} of {where}"
    elif train_dir is None:
        raise ValueError(
            "data_dir must hold train/ (one subfolder per class, with validation/, val/ or "
            "valid/ and test/ beside it), or be one folder of class folders split by "
            f"--validation_split. Received: data_dir={data_dir}"
        )
    else:
        layout = "train/" + (
            f" and {os.path.basename(validation_dir)}/" if validation_dir else ", no validation"
        )
    if test_dir and train_dir != data_dir:
        layout += " and test/"
    else:
        test_dir = None  # in one folder of classes, test/ would be a class
    return dict(train=train_dir, validation=validation_dir, test=test_dir), layout


def _check_class_folders(split_dirs, class_names):
    """Raises a ValueError naming the class folders that are in one split and not another."""
    train_dir = split_dirs["train"]
    for split in ("validation", "test"):
        if split_dirs[split] is None:
            continue
        names = _class_folders(split_dirs[split])
        only_train = sorted(set(class_names) - set(names))
        only_here = sorted(set(names) - set(class_names))
        if only_train or only_here:
            raise ValueError(
                f"The class folders of {split_dirs[split]} differ from those of {train_dir}: "
                f"only in the training folder: {only_train[:10] or 'none'}; only in the "
                f"{split} folder: {only_here[:10] or 'none'}. Every split needs the same class "
                f"folders (an empty one is allowed). Received: {len(names)} {split} and "
                f"{len(class_names)} training class folders"
            )


def _hold_out(listed, fraction, seed, root):
    """Splits the listed training files into (train, validation), class by class.

    Each class keeps round(fraction * n) of its n files for validation (at most n - 1): the
    files whose hash of (seed, path under root) is smallest. The same files and seed give
    the same split on every rerun and on every worker, wherever the folder is mounted.
    """
    candidates, labels, bad = listed
    by_class = {}
    for path, label in zip(candidates, labels):
        by_class.setdefault(label, []).append(path)
    held_out = set()
    for paths in by_class.values():
        count = min(round(fraction * len(paths)), len(paths) - 1)
        key = lambda p: hashlib.sha256(f"{seed}/{os.path.relpath(p, root)}".encode()).digest()  # noqa: E731
        held_out.update(sorted(paths, key=key)[:count])
    split = {False: ([], []), True: ([], [])}
    for path, label in zip(candidates, labels):
        split[path in held_out][0].append(path)
        split[path in held_out][1].append(label)
    return (*split[False], bad), (*split[True], [])


def check_validation_split(validation_split):
    """Raises a ValueError unless validation_split is None or a fraction in (0, 1)."""
    if validation_split is not None and not 0 < validation_split < 1:
        raise ValueError(
            "validation_split must be a fraction between 0 and 1 (exclusive). "
            f"Received: validation_split={validation_split!r}"
        )


def folder_source(data_dir, *, on_bad_image="skip", validation_split=None, seed=0, num_threads=32):
    """An image folder in one of the common layouts.

    - DIR/train/<class>/*.jpg with DIR/validation/, DIR/val/ or DIR/valid/ beside it (the
      validation split, optional) and DIR/test/ (the test split, optional): every split
      must have the same class folders.
    - With `validation_split`: DIR/<class>/*.jpg (or DIR/train/<class>/... without a
      validation folder), of which each class keeps that fraction of its files for
      validation, chosen by a hash of (seed, path): stable across reruns.

    Images may be JPEG, PNG, BMP, GIF (the first frame is used) or WebP, named .jpg, .jpeg,
    .png, .bmp, .gif or .webp in any case; the format is read from the bytes.

    Classes are the sorted class folder names. Every file is checked with
    `image_files.image_file_problem` (in a thread pool); bad files, empty class folders and
    stray entries are left out and listed in `Source.bad_files`, so the input order never
    depends on a decode error (`bad_images.check_decoding` then finds the files that pass
    this scan and still do not decode).

    Args:
        data_dir: the folder.
        on_bad_image: "skip" (log and leave them out) or "fail" (raise on the first).
        validation_split: None, or the fraction of the training images to validate on.
        seed: seed of the validation_split.
        num_threads: threads of the scan.

    Returns:
        A `Source`.
    """
    check_on_bad_image(on_bad_image)
    check_validation_split(validation_split)
    if not data_dir:
        raise ValueError(f"data_dir must name an image folder. Received: data_dir={data_dir!r}")
    data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    if not os.path.isdir(data_dir):
        raise ValueError(f"data_dir does not exist or is not a folder. Received: {data_dir}")
    if not os.listdir(data_dir):
        raise ValueError(f"data_dir is empty. Received: {data_dir}")
    split_dirs, layout = _find_splits(data_dir, validation_split)
    train_dir = split_dirs["train"]
    class_names = _class_folders(train_dir)
    if not class_names:
        raise ValueError(f"{train_dir} has no class folders. Received: data_dir={data_dir}")
    _check_class_folders(split_dirs, class_names)

    listed = {
        split: _list_split(folder, class_names) if folder else ([], [], [])
        for split, folder in split_dirs.items()
    }
    if validation_split is not None:
        listed["train"], listed["validation"] = _hold_out(
            listed["train"], validation_split, seed, train_dir
        )
        layout += f" (seed {seed})"
    elif split_dirs["validation"] is None:
        logging.warning("No validation folder in %s: there is no validation split.", data_dir)
    all_candidates = [path for split in SPLITS for path in listed[split][0]]
    if not all_candidates:
        extensions = "/".join(image_files.IMAGE_EXTENSIONS)
        raise ValueError(f"No {extensions} files under {data_dir}. Received: {data_dir}")

    files, bad_files = _check_files(listed, all_candidates, num_threads)
    if len(files["train"][0]) == 0:
        raise ValueError(f"No usable training images under {train_dir}. Received: {data_dir}")
    check_bad_files(bad_files, on_bad_image)
    return Source(
        name=f"folder:{data_dir}",
        kind="folder",
        class_names=tuple(class_names),
        num_train=len(files["train"][0]),
        num_validation=len(files["validation"][0]),
        num_test=len(files["test"][0]),
        bad_files=tuple(bad_files),
        layout=layout,
        _reader=_FolderReader(files),
    )


def _check_files(listed, all_candidates, num_threads):
    """Checks every candidate (in a thread pool): the usable files of each split, and the
    sorted (path, reason) of all that `_list_split` or the check left out."""
    with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
        problems = dict(
            zip(all_candidates, pool.map(image_files.image_file_problem, all_candidates))
        )
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
    return files, bad_files


class _TfdsReader:
    # The record files are permuted in Python, when the TFDS dataset is built.
    order_in_graph = False

    def __init__(self, builder, image_key, label_key, splits):
        self._builder = builder
        self._image_key = image_key
        self._label_key = label_key
        self._splits = splits  # our split name -> TFDS split name

    def record_files(self, split):
        import tensorflow_datasets as tfds  # Imported here: only this path needs it.

        info = self._builder.info
        if info.file_format != tfds.core.FileFormat.TFRECORD:
            raise ValueError(
                f"{info.name}'s records are read file by file with tf.data's TFRecord reader "
                f"(the tf.data service); prepare it in the tfrecord format. "
                f"Received: file_format={info.file_format.value!r}"
            )
        return [os.fspath(path) for path in info.splits[self._splits[split]].filepaths]

    def parse_record(self, record):
        import tensorflow_datasets as tfds  # Imported here: only this path needs it.

        example = self._builder.info.features.deserialize_example(
            record, decoders={self._image_key: tfds.decode.SkipDecoding()}
        )
        return example[self._image_key], tf.cast(example[self._label_key], tf.int32)

    def examples(self, split, order):
        if order is None:
            return self._records(split, order)
        return self.windows(split, order).unbatch()

    def windows(self, split, order):
        return shuffled_windows(self._records(split, order), WINDOW, order)

    def _records(self, split, order):
        import tensorflow_datasets as tfds  # Imported here: only this path needs it.

        sort_fn = None
        if order is not None:
            epoch_rng(*order)  # Checks the arguments now.

            def sort_fn(instructions):
                # The same permutation of the record files on every worker, on every call.
                permutation = epoch_rng(*order).permutation(len(instructions))
                return [instructions[i] for i in permutation]

        read_config = tfds.ReadConfig(try_autocache=False, experimental_interleave_sort_fn=sort_fn)
        ds = self._builder.as_dataset(
            split=self._splits[split],
            shuffle_files=False,
            decoders={self._image_key: tfds.decode.SkipDecoding()},
            read_config=read_config,
        )
        image_key, label_key = self._image_key, self._label_key
        return ds.map(lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int32)))


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


def is_imagenet2012(name):
    """Whether a dataset name is TFDS's imagenet2012 builder, in any version.

    "imagenet2012" and "imagenet2012:5.1.0" are; "imagenet2012_subset/10pct",
    "imagenet2012_real" and TFDS's other imagenet2012_* builders are not: they are other
    datasets. Only imagenet2012 is prepared from `manual_dir` here: _subset and _fewshot read
    the same tar files but also fetch their image lists from the web, and _real, _multilabel
    and _corrupted have no train split. The ImageNet PCA (`stats.IMAGENET_PCA`) is used for
    imagenet2012 only; any other dataset gets the PCA of its own sample.

    Args:
        name: a TFDS name, "NAME", "NAME:VERSION" or "NAME/CONFIG:VERSION".

    Returns:
        bool.
    """
    return name.split(":")[0].split("/")[0] == "imagenet2012"


def _check_manual_dir(name, manual_dir):
    if not is_imagenet2012(name):
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

    Images stay encoded (`tfds.decode.SkipDecoding`) until
    `preprocessing.decode_and_center_crop`. Nothing is downloaded: a dataset that is not
    prepared in data_dir is an error unless it is imagenet2012 (`is_imagenet2012`) and
    manual_dir holds ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar, which are then
    prepared into data_dir once (hours and ~150 GB for the real files).

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
        _prepare(builder, name, data_dir, manual_dir)

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
    test = "test" if "test" in info.splits and validation != "test" else None
    splits = {"train": "train", "validation": validation, "test": test}
    return Source(
        name=name,
        kind="tfds",
        class_names=tuple(info.features[label_key].names),
        num_train=info.splits["train"].num_examples,
        num_validation=info.splits[validation].num_examples if validation else 0,
        num_test=info.splits[test].num_examples if test else 0,
        _reader=_TfdsReader(builder, image_key, label_key, splits),
    )


def _prepare(builder, name, data_dir, manual_dir):
    """Prepares imagenet2012 into data_dir, once, from the tar files in manual_dir."""
    import tensorflow_datasets as tfds  # Imported here: the folder path does not need it.

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
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
    )
