"""TFDS datasets as sources, read from their record files without decoding.

Nothing is downloaded: a dataset must be prepared in its data folder, except imagenet2012,
which is prepared here once from the ILSVRC2012 tar files (`manual_dir`).
"""

import os

import tensorflow as tf

from keras_alexnet.data import sources

IMAGENET_MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")


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
        A `sources.Source`.
    """
    if not name:
        raise ValueError(f"name must name a TFDS dataset. Received: name={name!r}")
    if is_imagenet2012(name):
        check_imagenet2012(name, data_dir, manual_dir)
    if not data_dir:
        raise ValueError(f"data_dir must be the TFDS data folder. Received: data_dir={data_dir!r}")
    data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    if manual_dir is not None:
        manual_dir = _check_manual_dir(name, manual_dir)
    elif not os.path.isdir(data_dir):
        raise ValueError(f"data_dir does not exist. Received: data_dir={data_dir}")

    builder = _prepared_builder(name, data_dir, manual_dir)
    info = builder.info
    image_key, label_key = _supervised_keys(name, info)
    if "train" not in info.splits:
        raise ValueError(f"{name} has no train split. Received: splits={list(info.splits)}")
    validation = next((s for s in ("validation", "test") if s in info.splits), None)
    test = "test" if "test" in info.splits and validation != "test" else None
    splits = {"train": "train", "validation": validation, "test": test}
    return sources.Source(
        name=name,
        kind="tfds",
        class_names=tuple(info.features[label_key].names),
        num_train=info.splits["train"].num_examples,
        num_validation=info.splits[validation].num_examples if validation else 0,
        num_test=info.splits[test].num_examples if test else 0,
        _reader=_TfdsReader(builder, image_key, label_key, splits),
    )


def _prepared_builder(name, data_dir, manual_dir):
    """The TFDS builder of a dataset prepared in data_dir (prepared now from manual_dir)."""
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
    return builder


def _supervised_keys(name, info):
    """(image key, label key) of a dataset, checked to be an image and a class label."""
    import tensorflow_datasets as tfds  # Imported here: the folder path does not need it.

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
    return image_key, label_key


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


def check_imagenet2012(name, data_dir, manual_dir):
    """Raises one ValueError naming everything imagenet2012 lacks to be read, else nothing.

    It is read from data_dir, where it is prepared once from the tar files in manual_dir:
    a data_dir, and then either the prepared dataset in it or manual_dir with both tar
    files. Each missing piece is named, all in one message.

    Args:
        name: "imagenet2012" or "imagenet2012:VERSION".
        data_dir: the TFDS data folder, or None.
        manual_dir: the folder of the tar files, or None.
    """
    problems = []
    if not data_dir:
        problems.append("no data_dir: the TFDS data folder it is read from (and prepared into)")
    data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir))) if data_dir else None
    if data_dir and _is_prepared(name, data_dir):
        return
    if manual_dir is None:
        if data_dir and not os.path.isdir(data_dir):
            problems.append(f"data_dir {data_dir} does not exist")
        elif data_dir:
            problems.append(f"it is not prepared in {data_dir}")
        problems.append(
            f"no manual_dir: the folder of {' and '.join(IMAGENET_MANUAL_FILES)}, to prepare "
            "it from once (hours, about 150 GB)"
        )
    else:
        manual = os.path.abspath(os.path.expanduser(os.fspath(manual_dir)))
        missing = [f for f in IMAGENET_MANUAL_FILES if not os.path.isfile(os.path.join(manual, f))]
        if not os.path.isdir(manual):
            problems.append(f"manual_dir {manual} does not exist")
        elif missing:
            problems.append(f"manual_dir {manual} lacks {' and '.join(missing)}")
    if problems:
        raise ValueError(
            f"{name} is read from data_dir, prepared there once from the ILSVRC2012 tar files "
            f"in manual_dir; missing: {'; '.join(problems)}. Received: data_dir={data_dir}, "
            f"manual_dir={manual_dir}"
        )


def _is_prepared(name, data_dir):
    """Whether TFDS dataset `name` is prepared in data_dir."""
    if not os.path.isdir(data_dir):
        return False
    import tensorflow_datasets as tfds  # Imported here: the folder path does not need it.

    try:
        return tfds.builder(name, data_dir=data_dir).is_prepared()
    except tfds.core.DatasetNotFoundError:
        return False


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
        return sources.shuffled_windows(self._records(split, order), sources.WINDOW, order)

    def _records(self, split, order):
        import tensorflow_datasets as tfds  # Imported here: only this path needs it.

        sort_fn = None
        if order is not None:
            sources.epoch_rng(*order)  # Checks the arguments now.

            def sort_fn(instructions):
                # The same permutation of the record files on every worker, on every call.
                permutation = sources.epoch_rng(*order).permutation(len(instructions))
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
