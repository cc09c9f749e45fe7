"""Prepared data: the paper's 256x256 images, made once, in sharded TFRecord files.

The paper "down-sampled the images to a fixed resolution of 256x256" before training (as
Caffe's `convert_imageset --resize_height=256 --resize_width=256` did). `write_split`
applies `preprocessing.decode_and_center_crop` (shorter side to 256, central 256x256) once
and stores each image encoded again, in TFRecord shards of tf.train.Example
{"image": bytes, "label": int64}; `prepared_source` reads them back as a `sources.Source`
that trains with the same augmentation, exact resume and per-epoch order rules as a TFDS
dataset (a permutation of the shards per (seed, epoch), then shuffled windows).

Layout of a prepared folder:
    DIR/prepared.json                       what was prepared, from what, and how
    DIR/<split>-00000-of-00042.tfrecord     the shards of each split
"""

import json
import os

import tensorflow as tf

from keras_alexnet.data import sources

METADATA = "prepared.json"
FORMAT = "keras_alexnet prepared images 1"
# "jpeg": 4:2:0 chroma, as most photos (and ImageNet's) are stored; "jpeg444": full chroma;
# "png": lossless.
ENCODINGS = ("jpeg", "jpeg444", "png")
_FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
}


def shard_name(split, index, count):
    """The file name of shard `index` of `count` of a split."""
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def encode(image, encoding, quality):
    """uint8-rounded, encoded bytes of a float32 [256, 256, 3] image in 0-255."""
    pixels = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    if encoding == "png":
        return tf.io.encode_png(pixels)
    return tf.io.encode_jpeg(pixels, quality=quality, chroma_downsampling=encoding == "jpeg")


def example_bytes(encoded, label):
    """A serialised tf.train.Example of one prepared image."""
    features = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
    }
    example = tf.train.Example(features=tf.train.Features(feature=features))
    return example.SerializeToString()


def read_metadata(path):
    """The prepared.json of a prepared folder, checked.

    Raises:
        ValueError: the folder is not (or not completely) prepared.
    """
    file = os.path.join(path, METADATA)
    if not tf.io.gfile.exists(file):
        raise ValueError(
            f"{path} is not a prepared folder (no {METADATA}; python -m keras_alexnet.prepare "
            f"makes one, and writes it last). Received: {path}"
        )
    with tf.io.gfile.GFile(file) as f:
        metadata = json.load(f)
    if metadata.get("format") != FORMAT:
        raise ValueError(
            f"{file} is not of the format this version reads ({FORMAT!r}). "
            f"Received: format={metadata.get('format')!r}"
        )
    for split, info in metadata["splits"].items():
        missing = [s for s in info["shards"] if not tf.io.gfile.exists(os.path.join(path, s))]
        if missing:
            raise ValueError(
                f"{path} lacks {len(missing)} of its {split} shards, e.g. {missing[0]}. "
                f"Received: {path}"
            )
    return metadata


class _PreparedReader:
    order_in_graph = False  # the shards are permuted in Python, like TFDS's record files

    def __init__(self, path, metadata):
        self._path = path
        self._shards = {s: info["shards"] for s, info in metadata["splits"].items()}

    def record_files(self, split):
        return [os.path.join(self._path, name) for name in self._shards[split]]

    def parse_record(self, record):
        return _parse(record)

    def examples(self, split, order):
        if order is None:
            # Parsed a window at a time: one vectorised parse instead of one per record.
            records = self._records(split, order).batch(sources.WINDOW)
            return records.map(_parse, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
        return self.windows(split, order).unbatch()

    def windows(self, split, order):
        # Parsed a window at a time, in the shuffle that needs the window anyway: one
        # vectorised parse instead of one per record.
        records = self._records(split, order)
        return sources.shuffled_windows(records, sources.WINDOW, order, prepare_window=_parse)

    def _records(self, split, order):
        shards = self.record_files(split)
        if order is not None:
            permutation = sources.epoch_rng(*order).permutation(len(shards))
            shards = [shards[i] for i in permutation]
        files = tf.data.Dataset.from_tensor_slices(shards)
        return files.interleave(
            tf.data.TFRecordDataset,
            cycle_length=min(16, len(shards)),
            block_length=16,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )


def _parse(records):
    """(images, labels int32) of one serialised tf.train.Example, or of a batch of them."""
    example = tf.io.parse_example(records, _FEATURES)
    return example["image"], tf.cast(example["label"], tf.int32)


def prepared_source(path):
    """A prepared folder (`python -m keras_alexnet.prepare`) as a `sources.Source`.

    Args:
        path: the folder, with or without the "prepared:" of the --dataset flag.

    Returns:
        A `sources.Source` of kind "prepared"; its refs are the encoded 256x256 images.
    """
    path = os.path.abspath(os.path.expanduser(os.fspath(path).removeprefix("prepared:")))
    metadata = read_metadata(path)
    splits = metadata["splits"]
    counts = {s: splits[s]["num_examples"] if s in splits else 0 for s in sources.SPLITS}
    return sources.Source(
        name=f"prepared:{path}",
        kind="prepared",
        class_names=tuple(metadata["class_names"]),
        num_train=counts["train"],
        num_validation=counts["validation"],
        num_test=counts["test"],
        bad_files=tuple(tuple(b) for b in metadata.get("bad_files", ())),
        layout=f"prepared from {metadata['source']}",
        jpeg_size=metadata["image_size"] if metadata["encoding"].startswith("jpeg") else 0,
        _reader=_PreparedReader(path, metadata),
    )
