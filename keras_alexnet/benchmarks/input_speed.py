"""How fast is the training input pipeline, on image files and on prepared shards?

`run_benchmark` (`python -m keras_alexnet.input_benchmark`) measures, in one run, for the
same images as files and prepared (`prepare`: 256x256 JPEG shards), the images/s and CPU
ms per image of each stage:

- read: the training order (per-epoch permutation, shuffled windows for shards) and the
  bytes of each image, nothing decoded;
- plain decode: reading and `tf.io.decode_jpeg` of each image, in file order, batched (the
  least any pipeline must do);
- full: the training pipeline as training runs it (`input_pipeline.train_dataset` with
  raw=True: decode (on files, also the resize to 256), the random 227 window, batch; uint8
  patches from prepared shards). The float work (mirroring, the mean, PCA noise:
  `preprocessing.finish_train_batch`) runs in the training step, where the model runs; its
  cost per image on this CPU is printed too.

and the ratios the project aims at: full on shards / full on files >= 2.5, and full on
shards / plain decode of shards >= 0.90. Without a data_dir it writes num_images JPEGs of
500x375 (about ImageNet's average size) into a temporary folder. Every stage handles as
many images per epoch as a training epoch uses (its full batches). The pipelines run
alternately, best of `repeats` each; compare ratios, not absolute numbers from other runs.
"""

import gc
import os
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf

from keras_alexnet.data import folder_sources
from keras_alexnet.data import pipelines as input_pipeline
from keras_alexnet.data import preprocessing
from keras_alexnet.data import shapes as shapes_dataset
from keras_alexnet.data import shard_writer as prepare
from keras_alexnet.data import shards as prepared
from keras_alexnet.data import stats as stats_lib


def _texture(rng, size):
    """Noise at four scales, coarse to per-pixel: a crude stand-in for photographic texture."""
    height, width = size
    out = np.zeros((height, width, 3), np.float32)
    for divisor, amplitude in ((4, 30.0), (16, 20.0), (64, 14.0), (1, 16.0)):
        shape = (max(height // divisor, 1), max(width // divisor, 1), 3)
        small = rng.normal(0.0, amplitude, size=shape)
        small = small.astype(np.float32)
        out += tf.image.resize(small, size).numpy() if divisor > 1 else small
    return out


def write_benchmark_images(root, num_images, image_size=(375, 500), seed=0):
    """Writes ImageNet-like JPEGs as ROOT/train/<class>/*.jpg.

    Shapes on a background plus texture at several scales, so that the files are about as
    large and as slow to decode as ImageNet photos of the same size (about 100 KB): decoding
    time is dominated by the entropy-coded data, so file size matters as much as pixel count.

    Args:
        root: folder to write into.
        num_images: number of images.
        image_size: (height, width).
        seed: generator seed.

    Returns:
        `root`.
    """
    rng = np.random.default_rng(seed)
    names = shapes_dataset.class_names(4)
    for i in range(num_images):
        name = names[i % len(names)]
        pixels = shapes_dataset.draw_image(name, rng, image_size).astype(np.float32)
        pixels += _texture(rng, image_size)
        encoded = tf.io.encode_jpeg(np.clip(pixels, 0, 255).astype(np.uint8), quality=90)
        os.makedirs(os.path.join(root, "train", name), exist_ok=True)
        with open(os.path.join(root, "train", name, f"{i:06d}.jpg"), "wb") as f:
            f.write(encoded.numpy())
    return root


def _measure(dataset):
    """(images/s, CPU ms per image, images) of one pass, after its first batch (warm-up)."""
    iterator = iter(dataset)
    next(iterator)
    # The loop here stands for the training step; Python's cyclic garbage collector,
    # rescanning the million objects TensorFlow and Keras leave on the heap, took 10-20% of
    # the process's CPU time in it (more for batches of more tensors). Not the pipeline's
    # cost: the objects that exist now are left out of its scans while measuring.
    gc.collect()
    gc.freeze()
    try:
        # process_time: the CPU time of all the process's threads, at clock resolution.
        start, cpu_start, count = time.perf_counter(), time.process_time(), 0
        for _, labels in iterator:
            count += int(labels.shape[0])
        cpu = time.process_time() - cpu_start
        wall = time.perf_counter() - start
    finally:
        gc.unfreeze()
    return count / wall, 1000.0 * cpu / count, count


def _per_epoch(source, batch_size):
    """The images a training epoch uses: its full batches (the last partial one is dropped)."""
    return input_pipeline.steps_per_epoch(source, batch_size) * batch_size


def plain_decode_dataset(source, batch_size, epochs, ragged):
    """read_file + decode_jpeg of the training files, parallel map, batch: in file order,
    as many images per epoch as a training epoch uses."""
    ds = source.examples("train").take(_per_epoch(source, batch_size)).repeat(epochs)
    ds = ds.map(
        lambda ref, label: (tf.io.decode_jpeg(source.load(ref), channels=3), label),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    ds = ds.ragged_batch(batch_size) if ragged else ds.batch(batch_size)
    # The same tf.data options as the training pipeline, so only the work differs.
    return ds.prefetch(tf.data.AUTOTUNE).with_options(input_pipeline.dataset_options())


def read_dataset(source, batch_size, epochs):
    """The training order of every epoch and the bytes of each image, nothing decoded (as
    many images per epoch as a training epoch uses)."""
    count = _per_epoch(source, batch_size)
    orders = [source.examples("train", order=(0, e)).take(count) for e in range(epochs)]
    ds = orders[0]
    for more in orders[1:]:
        ds = ds.concatenate(more)
    ds = ds.map(
        lambda ref, label: (tf.strings.length(source.load(ref)), label),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return (
        ds.batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
        .with_options(input_pipeline.dataset_options())
    )


def finish_cost(stats, batch_size, repeats=5):
    """CPU ms per image of the training step's float work (`train_batch_finisher`) here."""
    crop, n = preprocessing.CROP_SIZE, batch_size
    drawn = preprocessing.step_augmentation(0, 0, tf.range(n, dtype=tf.int64), stats)
    patches = tf.random.uniform([n, crop, crop, 3], 0, 256, tf.int32)
    batch = dict(drawn, patches=tf.cast(patches, tf.uint8))
    finish = preprocessing.train_batch_finisher(stats)
    finish(batch)  # compiled
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        finish(batch).numpy()
        best = min(best, time.process_time() - start)
    return 1000.0 * best / n


def prepared_difference(source, prepared_dir, limit=64):
    """How far prepared images are from decoding on the fly (0-255 scale).

    Args:
        source: the `sources.Source` that was prepared.
        prepared_dir: the prepared folder.
        limit: images compared.

    Returns:
        (mean, largest) over the first `limit` training images of the mean absolute
        difference per value of an image.
    """
    shards = prepared.prepared_source(prepared_dir)
    # The shards, read one after the other, hold the images in `prepare.ORDER`.
    records = tf.data.TFRecordDataset(shards.record_files("train"))
    originals = source.examples("train", order=prepare.ORDER)
    diffs = []
    for record, (ref, _) in zip(records.take(limit), originals.take(limit)):
        encoded, _ = shards.parse_record(record)
        image = preprocessing.decode_and_center_crop(encoded).numpy()
        expected = preprocessing.decode_and_center_crop(source.load(ref)).numpy()
        diffs.append(np.abs(image - expected).mean())
    return float(np.mean(diffs)), float(np.max(diffs))


def run_benchmark(
    data_dir=None,
    *,
    num_images=500,
    batch_size=128,
    epochs=3,
    repeats=3,
    with_prepared=True,
    encoding="jpeg",
    quality=90,
):
    """Measures both pipelines over the same files, as they are and prepared.

    Args:
        data_dir: image folder, or None to generate `num_images` 500x375 JPEGs.
        num_images: images to generate when data_dir is None.
        batch_size: batch size of both pipelines.
        epochs: passes over the files in one timed run.
        repeats: timed runs of each pipeline (alternated); the best counts.
        with_prepared: also prepare the files (`prepare`) and measure both pipelines on
            the prepared shards.
        encoding, quality: how `prepare` stores them.

    Returns:
        dict with "plain" and "full" (best images/s), "plain_cpu_ms" and "full_cpu_ms"
        (least CPU time per image, which other processes disturb less), "ratio"
        (full/plain images/s), "cpu_ratio" (plain/full CPU time), "plain_images",
        "full_images", "read" and "read_cpu_ms" (the read stage), "finish_cpu_ms" (the
        training step's float work per image, on this CPU), and "num_files"; with
        with_prepared the same keys prefixed "prepared_", and "prepared_speedup" (the
        training pipeline's images/s on the prepared shards / on the files),
        "prepared_cpu_speedup" (the same in CPU time), "prepare_images_per_s",
        "prepared_bytes_per_image", "prepared_encoding" and "prepared_difference" /
        "prepared_max_difference" (`prepared_difference`).
    """
    tmp = prepared_dir = None
    if data_dir is None:
        tmp = tempfile.mkdtemp(prefix="input_benchmark-")
        data_dir = write_benchmark_images(tmp, num_images)
    try:
        source = folder_sources.folder_source(data_dir)
        stats = _benchmark_stats()
        result = {"num_files": source.num_train}
        pipelines = {"": source}
        if with_prepared:
            prepared_dir = tempfile.mkdtemp(prefix="input_benchmark-prepared-")
            result.update(_prepare_shards(source, prepared_dir, encoding, quality))
            pipelines["prepared_"] = prepared.prepared_source(prepared_dir)
        runs = _time_pipelines(
            pipelines, stats, batch_size, epochs, repeats, generated=tmp is not None
        )
        result["finish_cpu_ms"] = finish_cost(stats, batch_size)
        result.update(_summarize(runs, pipelines))
        return result
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if prepared_dir is not None:
            shutil.rmtree(prepared_dir, ignore_errors=True)


def _benchmark_stats():
    """Statistics only change values, not cost: a flat mean and the ImageNet PCA."""
    return stats_lib.Stats(
        np.full([preprocessing.IMAGE_SIZE] * 2 + [3], 120.0, np.float32),
        stats_lib.IMAGENET_PCA.eigval,
        stats_lib.IMAGENET_PCA.eigvec,
    )


def _prepare_shards(source, prepared_dir, encoding, quality):
    """Prepares `source` into `prepared_dir`; the "prepare*" and "prepared_*" figures."""
    start = time.perf_counter()
    plan = prepare.prepare(
        source, prepared_dir, encoding=encoding, quality=quality, images_per_shard=256
    )
    result = {"prepare_images_per_s": source.num_train / (time.perf_counter() - start)}
    result["prepared_encoding"] = plan["encoding"] + (
        f" q{plan['quality']}" if plan["quality"] else ""
    )
    result["prepared_difference"], result["prepared_max_difference"] = prepared_difference(
        source, prepared_dir
    )
    result["prepared_bytes_per_image"] = (
        sum(os.path.getsize(os.path.join(prepared_dir, f)) for f in os.listdir(prepared_dir))
        / source.num_train
    )
    return result


def _time_pipelines(pipelines, stats, batch_size, epochs, repeats, generated):
    """Times the read, plain and full pipelines of each source in turn, `repeats` times.

    Args:
        pipelines: {prefix of the result keys: source}.
        stats: the `stats.Stats` of the training pipeline.
        batch_size, epochs, repeats: as for `run_benchmark`.
        generated: whether the files are the generated ones (all of one size, which
            batch without ragged tensors).

    Returns:
        {"<prefix><stage>": a list of `_measure`'s (images/s, CPU ms, images) per repeat}.
    """
    runs = {f"{prefix}{kind}": [] for prefix in pipelines for kind in ("read", "plain", "full")}
    for _ in range(repeats):
        for prefix, data in pipelines.items():
            runs[f"{prefix}read"].append(_measure(read_dataset(data, batch_size, epochs)))
            ragged = not generated and not prefix
            runs[f"{prefix}plain"].append(
                _measure(plain_decode_dataset(data, batch_size, epochs, ragged=ragged))
            )
            runs[f"{prefix}full"].append(
                _measure(
                    input_pipeline.train_dataset(
                        data,
                        global_batch_size=batch_size,
                        stats=stats,
                        seed=0,
                        epoch=0,
                        num_epochs=epochs,
                        raw=True,
                    )
                )
            )
    return runs


def _summarize(runs, pipelines):
    """The best of each stage's repeats, and the ratios between stages and pipelines."""
    result = {}
    for name, measured in runs.items():
        result[name] = max(m[0] for m in measured)
        result[f"{name}_cpu_ms"] = min(m[1] for m in measured)
        result[f"{name}_images"] = measured[0][2]
    for prefix in pipelines:
        result[f"{prefix}ratio"] = result[f"{prefix}full"] / result[f"{prefix}plain"]
        result[f"{prefix}cpu_ratio"] = (
            result[f"{prefix}plain_cpu_ms"] / result[f"{prefix}full_cpu_ms"]
        )
    if "prepared_" in pipelines:
        result["prepared_speedup"] = result["prepared_full"] / result["full"]
        result["prepared_cpu_speedup"] = result["full_cpu_ms"] / result["prepared_full_cpu_ms"]
    return result
