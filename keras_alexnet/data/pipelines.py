"""The training and evaluation datasets.

A source (`sources`) gives the (encoded image, label) pairs in an order that is a pure
function of (seed, epoch); the datasets here shard them over the input pipelines, apply the
paper's preprocessing (`preprocessing`) and batch them. Never imports the model.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from keras_alexnet.data import preprocessing
from keras_alexnet.data import sources


def steps_per_epoch(source, global_batch_size):
    """Training steps in one epoch: full global batches only.

    Args:
        source: a `sources.Source`.
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
    raw=False,
):
    """Augmented training batches of epochs epoch .. epoch + num_epochs - 1.

    The order of an epoch is a pure function of (seed, epoch): the same permutation on every
    worker (for folders a full permutation, `sources.epoch_permutation`; for TFDS a
    permutation of the record files, then stateless shuffles of 1024-record windows), then
    sharded element-wise over the input pipelines (with TFDS every pipeline reads all records
    and keeps its share).
    Each pipeline yields per-replica batches; one step takes global_batch_size /
    num_input_pipelines of its examples, so every pipeline yields the same number of batches
    and the last partial step of an epoch is dropped. The `start_step` steps already taken
    are skipped before decoding. Augmentation is seeded by (seed, epoch, position in the
    epoch), so a resumed run sees exactly the batches the uninterrupted run would have.

    Args:
        source: a `sources.Source`.
        global_batch_size: examples per step over all replicas.
        stats: `stats.Stats` of the training set.
        seed: int >= 0, the run's seed.
        epoch: int >= 0, the first epoch.
        start_step: steps already taken, counted from the start of `epoch` (may span epochs).
        input_context: a `tf.distribute.InputContext`, or None for one pipeline and replica.
        num_epochs: number of epochs in the dataset.
        raw: yield each batch before its float work (see below), for the training step to
            finish with `preprocessing.finish_train_batch` where the model runs.

    Returns:
        A `tf.data.Dataset` of (images float32 [per_replica_batch, 227, 227, 3],
        labels int32 [per_replica_batch]); with raw, of (a dict of "patches" [per_replica_batch,
        227, 227, 3], uint8 for a prepared source in JPEG (`sources.Source.jpeg_size`), else
        float32, and their "top", "left", "flip" and "lighting", labels).
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
    sources.check_seed_and_epoch(seed, epoch)
    share = _Share(steps, global_batch_size // pipelines, pipelines, pipeline_id)

    def epoch_chunks(e, skip_steps):
        return _epoch_chunks(source, (seed, e), skip_steps, share)

    # Epochs are joined before decoding, so one parallel map serves them all; every epoch
    # holds whole steps, so no batch straddles two epochs.
    first, skip = epoch + start_step // steps, start_step % steps
    if source.order_in_graph:
        chunks = tf.data.Dataset.range(first, epoch + num_epochs).flat_map(
            lambda e: epoch_chunks(e, tf.where(e == first, tf.constant(skip, tf.int64), 0))
        )
    else:
        chunks = epoch_chunks(first, skip)
        for e in range(first + 1, epoch + num_epochs):
            chunks = chunks.concatenate(epoch_chunks(e, 0))
    return _augmented_batches(chunks, source, stats, seed, per_replica, raw)


@dataclasses.dataclass(frozen=True)
class _Share:
    """What one input pipeline takes of an epoch of `steps` steps: `per_step` examples a
    step, every `pipelines`-th example of the epoch's order from `pipeline_id` on."""

    steps: int
    per_step: int
    pipelines: int
    pipeline_id: int


def _epoch_chunks(source, order, skip_steps, share):
    """(refs, labels, epochs, indices in the epoch) of a pipeline's share of an epoch, from
    step skip_steps on, a window of the epoch's order at a time.

    Args:
        source: a `sources.Source`.
        order: (seed, epoch); the epoch may be a scalar tensor.
        skip_steps: the steps of the epoch already taken (an int or a scalar tensor).
        share: the pipeline's `_Share`.

    Returns:
        A `tf.data.Dataset` of (refs [n], labels [n], epochs [n], indices [n]), n >= 1.
    """
    # Example k of this pipeline's share is example pipeline_id + k * pipelines of the
    # epoch; the share's first skip_steps steps are skipped and its last partial step
    # dropped.
    pipelines, pipeline_id = share.pipelines, share.pipeline_id
    first, end = skip_steps * share.per_step, share.steps * share.per_step
    e64 = tf.cast(order[1], tf.int64)

    def keep_share(w, window):
        refs, labels = window
        index = w * sources.WINDOW + tf.range(tf.shape(labels, out_type=tf.int64)[0])
        k = index // pipelines
        keep = (index % pipelines == pipeline_id) & (k >= first) & (k < end)
        # Most windows are kept whole: not copied then.
        refs, labels, index = tf.cond(
            tf.reduce_all(keep),
            lambda: (refs, labels, index),
            lambda: tuple(tf.boolean_mask(t, keep) for t in (refs, labels, index)),
        )
        return refs, labels, tf.fill(tf.shape(index), e64), index

    # Windows wholly before the first example or after the last one are not decoded.
    before = first * pipelines // sources.WINDOW
    windows = source.windows("train", order=order).enumerate()
    windows = windows.take(-(-(end * pipelines) // sources.WINDOW)).skip(before)
    return windows.map(keep_share).filter(lambda refs, *_: tf.size(refs) > 0)


def train_dataset_by_step(
    source, *, global_batch_size, stats, seed, first_step=0, input_context=None, raw=False
):
    """Endless augmented training batches from step `first_step` on, one split per step.

    For the tf.data service (`service`), whose dispatcher hands the splits of a dataset's
    source to its workers as they ask: here the source is the step numbers first_step,
    first_step + 1, ..., counted over epochs (step s is step s % steps of epoch s // steps),
    and a worker given step s makes this pipeline's examples of that step on its own, from
    the epoch's order computed in the graph (image folders only). The examples and their
    augmentation are those `train_dataset` gives the same step: the pipeline's share of the
    step's positions in the epoch's order, seeded by (seed, epoch, position).

    The epochs go on without end, so a consumer whose splits were lost with a worker takes
    later steps instead and never runs out; it takes only as many batches as it needs.

    Args:
        source: a `sources.Source` whose order is computed in the graph (`order_in_graph`).
        global_batch_size: examples per step over all replicas.
        stats: `stats.Stats` of the training set.
        seed: int >= 0, the run's seed.
        first_step: int >= 0, the first step, counted from the start of epoch 0.
        input_context: a `tf.distribute.InputContext`, or None for one pipeline and replica.
        raw: as `train_dataset`'s.

    Returns:
        An infinite `tf.data.Dataset` of (images float32 [per_replica_batch, 227, 227, 3],
        labels int32 [per_replica_batch]), each step's share in whole batches; with raw, of
        `train_dataset`'s raw batches.
    """
    if not source.order_in_graph:
        raise ValueError(
            "train_dataset_by_step needs an order computed in the graph (image folders); "
            f"{source.name} permutes its record files in Python. Received: kind={source.kind!r}"
        )
    steps = steps_per_epoch(source, global_batch_size)
    pipelines, pipeline_id, per_replica = _layout(input_context, global_batch_size)
    if not (isinstance(first_step, (int, np.integer)) and first_step >= 0):
        raise ValueError(f"first_step must be an integer >= 0. Received: first_step={first_step!r}")
    sources.check_seed_and_epoch(seed, 0)
    per_step = global_batch_size // pipelines
    paths, labels = source.files("train")

    def step_refs(step):
        epoch = step // steps
        # This pipeline's examples of the step are, as `train_dataset` shards them, every
        # pipelines-th position of the epoch's order from pipeline_id on.
        shared = (step % steps) * per_step + tf.range(per_step, dtype=tf.int64)
        positions = pipeline_id + pipelines * shared
        # The epoch's permutation, made again for each step: 13 ms for ImageNet's 1.28M
        # files on one core, small beside decoding the step's images.
        chosen = tf.gather(sources.epoch_permutation(len(paths), seed, epoch), positions)
        return (
            tf.gather(paths, chosen),
            tf.gather(labels, chosen),
            tf.fill([per_step], epoch),
            positions,
        )

    # One chunk per step.
    chunks = tf.data.Dataset.range(first_step, np.iinfo(np.int64).max).map(step_refs)
    return _augmented_batches(chunks, source, stats, seed, per_replica, raw)


# Records a worker of `train_dataset_by_file` holds to shuffle, across the files it reads
# at once (as `sources.WINDOW` without the service).
SHUFFLE_BUFFER = 1024
# Record files a worker of `train_dataset_by_file` reads at once (as the local readers).
FILES_AT_ONCE = 16


def train_dataset_by_file(
    source,
    *,
    global_batch_size,
    stats,
    seed,
    first_step=0,
    input_context=None,
    num_epochs=None,
    raw=False,
):
    """Augmented training batches of a record-file source, one split per file; endless.

    For the tf.data service (`service`), when the order of an epoch cannot be computed
    per step (prepared folders and TFDS datasets, whose records are read file by file): the
    dataset's source is the stream of (epoch, record file) over epochs, each epoch's files
    in a permutation of (seed, epoch) computed in the graph, and the dispatcher hands one
    file at a time to a worker, which reads it whole. A worker reads `FILES_AT_ONCE` files
    interleaved, shuffles their records in a `SHUFFLE_BUFFER`-record buffer seeded by the
    run's seed, and decodes, augments and batches them. Record r of file f in epoch e is
    augmented with the random choices of (seed, e, f * 2**32 + r): the same record in the same epoch
    gets the same crop and flip whichever worker makes it, and every record and epoch
    its own. The order the records come in depends on which files each worker was handed.

    Each input pipeline keeps its share of every file: the records whose index in the file
    is pipeline_id modulo the number of pipelines (each pipeline's own job reads every
    file, as without the service every pipeline reads every record). A record thus goes
    to one pipeline only.

    `first_step` starts the stream at epoch first_step // steps, at the file the step has
    reached in proportion (step s of an epoch of S steps and F files: file s * F // S of
    the epoch's order), so a resumed run goes on roughly where it stopped. The trainer's
    epochs go on without end, so a consumer whose files were lost with a worker takes
    later files instead and never runs out; it takes only as many batches as it needs.
    Each worker drops its own last partial batch only when the stream ends.

    Args:
        source: a `sources.Source` of record files (kind "prepared" or "tfds").
        global_batch_size: examples per step over all replicas.
        stats: `stats.Stats` of the training set.
        seed: int >= 0, the run's seed.
        first_step: int >= 0, the first step, counted from the start of epoch 0.
        input_context: a `tf.distribute.InputContext`, or None for one pipeline and replica.
        num_epochs: None for epochs without end (training), or the number of epochs from
            first_step's on: a stream that ends, e.g. one pass to check.
        raw: as `train_dataset`'s.

    Returns:
        A `tf.data.Dataset` (infinite unless num_epochs is given) of (images float32
        [per_replica_batch, 227, 227, 3], labels int32 [per_replica_batch]); with raw, of
        `train_dataset`'s raw batches.
    """
    steps = steps_per_epoch(source, global_batch_size)
    pipelines, pipeline_id, per_replica = _layout(input_context, global_batch_size)
    if not (isinstance(first_step, (int, np.integer)) and first_step >= 0):
        raise ValueError(f"first_step must be an integer >= 0. Received: first_step={first_step!r}")
    sources.check_seed_and_epoch(seed, 0)
    files = source.record_files("train")
    count = len(files)
    first_file = (first_step // steps) * count + (first_step % steps) * count // steps
    if num_epochs is None:
        end = np.iinfo(np.int64).max
    elif isinstance(num_epochs, (int, np.integer)) and num_epochs >= 1:
        end = (first_step // steps + num_epochs) * count
    else:
        raise ValueError(f"num_epochs must be None or >= 1. Received: num_epochs={num_epochs!r}")
    refs = _file_stream_records(source, seed, files, (first_file, end), pipelines, pipeline_id)
    return _augmented_batches(refs.batch(DRAW_CHUNK), source, stats, seed, per_replica, raw)


def _file_stream_records(source, seed, files, span, pipelines, pipeline_id):
    """The records of the stream of record files, shuffled, with their epochs and indices.

    Args:
        source: a `sources.Source` of record files.
        seed: int >= 0, the run's seed.
        files: the training split's record files, in file order.
        span: (first, end): the stream's files first .. end - 1, counted over epochs.
        pipelines, pipeline_id: this input pipeline's share of each file's records.

    Returns:
        A `tf.data.Dataset` of (ref, label int32, epoch, index f * 2**32 + r).
    """
    count = len(files)

    def file_of(k):
        # The split: the k-th file of the stream, file k % count of epoch k // count's order.
        epoch = k // count
        index = tf.gather(sources.epoch_permutation(count, seed, epoch), k % count)
        return tf.gather(files, index), epoch, index

    def records(path, epoch, file_index):
        # Made on the worker that was handed the file: its datasets are not split further.
        ds = tf.data.TFRecordDataset(path).enumerate()
        if pipelines > 1:
            ds = ds.shard(pipelines, pipeline_id)
        return ds.map(lambda r, record: (record, epoch, file_index * 2**32 + r))

    def parse(record, epoch, index):
        return (*source.parse_record(record), epoch, index)

    return (
        tf.data.Dataset.range(*span)
        .map(file_of)
        .interleave(
            records,
            cycle_length=min(FILES_AT_ONCE, count),
            block_length=16,
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .shuffle(SHUFFLE_BUFFER, seed=seed)
        .map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    )


def train_dataset_for_service(source, **kwargs):
    """`train_dataset_by_step` for image folders, `train_dataset_by_file` for record files."""
    if source.order_in_graph:
        return train_dataset_by_step(source, **kwargs)
    return train_dataset_by_file(source, **kwargs)


# Examples whose random choices are drawn together, by a few vectorised ops.
DRAW_CHUNK = 256


def _augmented_batches(chunks, source, stats, seed, per_replica, raw):
    """Chunks of (ref, label, epoch, position in the epoch) -> augmented per-replica batches.

    The random choices of a chunk are drawn together; the images are then decoded one by
    one, in parallel."""
    size, crop = stats.mean_image.shape[0], preprocessing.CROP_SIZE
    all_jpeg = source.jpeg_size == size

    def draw(refs, labels, epochs, index):
        return refs, labels, preprocessing.step_augmentation(seed, epochs, index, stats, crop)

    def augment(ref, label, augmentation):
        encoded = source.load(ref)
        if not raw:
            return preprocessing.train_image(encoded, stats, augmentation, crop, all_jpeg), label
        patch = preprocessing.train_patch(encoded, augmentation, size, crop, all_jpeg)
        return dict(augmentation, patches=patch), label

    ds = chunks.map(draw).unbatch()
    ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(per_replica, drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(dataset_options())


PADDING_LABEL = -1  # the label of the examples that fill an evaluation's last step


def eval_dataset(
    source, *, batch_size, stats, split="validation", crops="center", input_context=None
):
    """Evaluation batches of every example of a split, in file order.

    Under several replicas (an `input_context` with num_replicas_in_sync > 1) every replica
    takes part in every step, so the last step, which the split rarely fills, is filled up
    with padding examples: zero images labelled `PADDING_LABEL`, which the evaluation step
    counts for nothing. Every input pipeline then gives the same number of full batches,
    and no replica is handed an empty or partial batch.

    Args:
        source: a `sources.Source`.
        batch_size: global batch size (per replica: `input_context`'s share of it).
        stats: `stats.Stats` of the training set.
        split: "validation" or "train".
        crops: "center" (one central 227 patch) or "10" (the paper's ten patches).
        input_context: a `tf.distribute.InputContext`, or None.

    Returns:
        A `tf.data.Dataset` of (images, labels int32); images are float32 [b, 227, 227, 3] for
        "center", and for "10" the mean-subtracted 256x256 images [b, 256, 256, 3], whose
        ten patches the evaluation step cuts (`steps.make_eval_step`). On one replica the
        last batch may be smaller; on several, batches are full and the last ones may hold
        padding.
    """
    if crops not in ("center", "10"):
        raise ValueError(f'crops must be "center" or "10". Received: crops={crops!r}')
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1. Received: batch_size={batch_size}")
    pipelines, pipeline_id, per_replica = _layout(input_context, batch_size)

    def preprocess(ref, label):
        if crops == "10":
            # Each image once: the evaluation step cuts its ten patches one at a time.
            size = stats.mean_image.shape[0]
            image = preprocessing.decode_and_center_crop(source.load(ref), size)
            return preprocessing.subtract_mean(image, stats.mean_image), label
        return preprocessing.preprocess_for_eval(source.load(ref), stats, crops), label

    ds = source.examples(split)
    if pipelines > 1:
        ds = ds.shard(pipelines, pipeline_id)
    ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if input_context is not None and input_context.num_replicas_in_sync > 1:
        images, labels = ds.element_spec
        padding = tf.data.Dataset.from_tensors(
            (tf.zeros(images.shape, images.dtype), tf.constant(PADDING_LABEL, labels.dtype))
        )
        # Every pipeline's share of ceil(n / batch_size) full global batches: at least
        # its shard of the split, as batch_size divides over the pipelines.
        global_steps = -(-source.num_examples(split) // batch_size)
        ds = ds.concatenate(padding.repeat()).take(global_steps * batch_size // pipelines)
        ds = ds.batch(per_replica, drop_remainder=True)
    else:
        ds = ds.batch(per_replica)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(dataset_options())
