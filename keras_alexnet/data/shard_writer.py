"""The paper's 256x256 preparation, done once: a source's images written as prepared shards.

The work of `python -m keras_alexnet.prepare`. `prepare` reads any source (`sources.Source`)
the training tool reads, makes each image what training decodes first
(`preprocessing.decode_and_center_crop`: shorter side to 256, central 256x256), and writes
the images, encoded again, to sharded TFRecord files (`shards`). Training then decodes a
256x256 image instead of a full-size photo and resizes nothing. The images of each split
are written in one fixed shuffled order, so that every shard holds all classes.

Decoding and encoding run in parallel over the CPU's cores. An interrupted preparation
resumes: finished shards are kept (each is written aside and renamed when complete), and
prepared.json is written last.
"""

import json
import os
import time

import tensorflow as tf

from keras_alexnet.data import bad_images
from keras_alexnet.data import preprocessing
from keras_alexnet.data import shards
from keras_alexnet.data import sources

_PLAN = "prepare_plan.json"
# The fixed order of the written images (a seed of their own, not the training run's).
ORDER = (0, 0)


def prepare(source, output_dir, *, encoding="jpeg", quality=90, images_per_shard=1024):
    """Writes a source's images at 256x256 into sharded TFRecord files.

    Args:
        source: a `sources.Source`.
        output_dir: the prepared folder (made if needed; a finished one is left as it is).
        encoding: "jpeg" (4:2:0 chroma), "jpeg444" (full chroma) or "png" (lossless).
        quality: JPEG quality, 1-100.
        images_per_shard: images per TFRecord file.

    Returns:
        The prepared.json metadata, a dict.

    Raises:
        ValueError: a bad argument, or an output_dir that holds another preparation.
    """
    if encoding not in shards.ENCODINGS:
        raise ValueError(
            f"encoding must be one of {shards.ENCODINGS}. Received: encoding={encoding!r}"
        )
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in [1, 100]. Received: quality={quality}")
    if images_per_shard < 1:
        raise ValueError(f"images_per_shard must be >= 1. Received: {images_per_shard}")
    plan = dict(
        format=shards.FORMAT,
        source=source.name,
        class_names=list(source.class_names),
        image_size=preprocessing.IMAGE_SIZE,
        encoding=encoding,
        quality=None if encoding == "png" else quality,
        images_per_shard=images_per_shard,
        splits={},
    )
    for split in sources.SPLITS:
        count = source.num_examples(split)
        if count:
            num_shards = -(-count // images_per_shard)
            names = [shards.shard_name(split, i, num_shards) for i in range(num_shards)]
            plan["splits"][split] = dict(num_examples=count, shards=names)
    _claim(output_dir, plan)
    for split in plan["splits"]:
        _write_split(source, split, output_dir, plan)
    metadata = dict(plan, bad_files=[list(b) for b in source.bad_files])
    _write_json(os.path.join(output_dir, shards.METADATA), metadata)
    return metadata


def _claim(output_dir, plan):
    """Records the plan in output_dir, or checks that it is the plan recorded there."""
    tf.io.gfile.makedirs(output_dir)
    path = os.path.join(output_dir, _PLAN)
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            recorded = json.load(f)
        differ = [key for key in plan if recorded.get(key) != plan[key]]
        if differ:
            key = differ[0]
            raise ValueError(
                f"{output_dir} holds a preparation with {key}={recorded.get(key)!r}; this one "
                f"has {key}={plan[key]!r}. Use another --output_dir, or the same settings to "
                f"resume it. Received: output_dir={output_dir}"
            )
        return
    _write_json(path, plan)


def _write_json(path, value):
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
        json.dump(value, f, indent=1)
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def _write_split(source, split, output_dir, plan):
    """Writes the shards of one split that are not written yet, with progress lines."""
    total, names = plan["splits"][split]["num_examples"], plan["splits"][split]["shards"]
    per_shard = plan["images_per_shard"]
    encoding, quality = plan["encoding"], plan["quality"]

    def prepare_one(ref, label):
        image = preprocessing.decode_and_center_crop(source.load(ref))
        return shards.encode(image, encoding, quality), label

    start, done = time.perf_counter(), 0
    for index, name in enumerate(names):
        path = os.path.join(output_dir, name)
        count = min(per_shard, total - index * per_shard)
        if tf.io.gfile.exists(path):
            done += count
            continue
        ds = source.examples(split, order=ORDER).skip(index * per_shard).take(count)
        ds = ds.map(prepare_one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        try:
            with tf.io.TFRecordWriter(path + ".tmp") as writer:
                for encoded, label in ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator():
                    writer.write(shards.example_bytes(encoded, label))
        except tf.errors.InvalidArgumentError as error:  # on_bad_image=fail
            raise bad_images.undecodable_error(
                error,
                source,
                split,
                f"{split} image(s)",
                "preparing",
                ". Remove or replace them, or leave them out with --on_bad_image=skip; "
                f"the {index} shards written are kept.",
            ) from error
        tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
        done += count
        rate = done / (time.perf_counter() - start)
        print(
            f"  {split}: {done:,}/{total:,} images, shard {index + 1}/{len(names)}, "
            f"{rate:,.0f} images/s",
            flush=True,
        )
