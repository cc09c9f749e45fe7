"""Training AlexNet with the paper's recipe: `python -m keras_alexnet.train`.

One custom training loop serves every `tf.distribute` strategy (one device, MirroredStrategy
over GPUs or logical CPUs, MultiWorkerMirroredStrategy): `model.fit` does not work under
MultiWorkerMirroredStrategy in Keras 3.15, and Keras' BackupAndRestore restarts a whole
epoch, while this loop resumes at the exact step.

Resuming: the checkpoint holds the model, the optimizer (momentum, learning rate), the
epoch, the step within it and the learning-rate schedule's state. The input order is a pure
function of (seed, epoch), so a resumed run skips the batches it already consumed (file names,
before decoding) and goes on with exactly the batches it would have seen.
"""

import dataclasses
import hashlib
import json
import math
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app
from absl import flags

from keras_alexnet import cli
from keras_alexnet import input_pipeline
from keras_alexnet import metrics
from keras_alexnet import model as model_lib
from keras_alexnet import paper
from keras_alexnet import run_dir
from keras_alexnet import shapes_dataset
from keras_alexnet import summaries

BUILTIN_DATASET = "shapes"
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("plateau", "cosine")

# What a resumed run must share with the run that wrote the checkpoints.
RUN_KEYS = ("dataset", "variant", "num_classes", "batch_size", "seed", "init", "input_scale")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Training hyperparameters; every field is a flag of `python -m keras_alexnet.train`."""

    epochs: int
    batch_size: int
    optimizer: str  # "sgd" (with momentum, the paper's) or "adam"
    learning_rate: float
    momentum: float
    weight_decay: float
    dropout: float
    lr_schedule: str  # "plateau" (the paper's) or "cosine"
    lr_patience: int
    lr_max_reductions: int
    init: str
    input_scale: object  # a number, or "auto": 1 / the training set's pixel std


# Section 5 of the paper. The patience is not stated ("when the validation error rate
# stopped improving"); the learning rate was lowered three times in about 90 epochs.
PAPER_RECIPE = Recipe(
    epochs=paper.EPOCHS,
    batch_size=paper.BATCH_SIZE,
    optimizer="sgd",
    learning_rate=paper.LEARNING_RATE,
    momentum=paper.MOMENTUM,
    weight_decay=paper.WEIGHT_DECAY,
    dropout=paper.DROPOUT_RATE,
    lr_schedule="plateau",
    lr_patience=5,
    lr_max_reductions=paper.LR_REDUCTIONS,
    init="paper",
    input_scale=1.0,
)

# The built-in demo set. From scratch, the paper's recipe stays at chance for hundreds of
# steps (its N(0, 0.01) weights and biases of 1 give a long flat loss, as Caffe's authors
# reported); to learn in minutes on a CPU the demo uses He init on inputs scaled to unit
# variance, and Adam, which was steadier than SGD across seeds; a cosine decay over the
# run's few steps ends it better than waiting for a plateau. Measured in the README,
# "The built-in dataset".
DEMO_RECIPE = Recipe(
    epochs=5,
    batch_size=32,
    optimizer="adam",
    learning_rate=1e-4,
    momentum=0.9,
    weight_decay=paper.WEIGHT_DECAY,
    dropout=paper.DROPOUT_RATE,
    lr_schedule="cosine",
    lr_patience=2,
    lr_max_reductions=paper.LR_REDUCTIONS,
    init="he",
    input_scale="auto",
)


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs. None fields take the dataset's recipe default.

    Attributes:
        model_dir: where checkpoints, TensorBoard logs, statistics and labels go.
        dataset: "shapes" (built in), "folder", "imagenet2012" or any TFDS name[:version].
        data_dir: the image folder, the TFDS data folder, or where the built-in set is
            written (default: `shapes_dataset.DEFAULT_ROOT`).
        manual_dir: the folder holding the ILSVRC2012 tar files (imagenet2012 only).
        variant: the network variant (see `model.VARIANTS`).
        epochs, batch_size (global), optimizer, learning_rate, momentum (SGD's), weight_decay,
        dropout, init: see `Recipe`.
        lr_schedule: "plateau", the paper's: the learning rate is divided by 10 after
            lr_patience epochs without a better validation error, at most
            lr_max_reductions times; or "cosine": `cosine_learning_rate` over all the
            run's steps.
        seed: seeds the input order, the augmentation and the initial weights.
        deterministic: also make TensorFlow's ops deterministic, so an interrupted and
            resumed run ends with the same weights as one that was not interrupted.
        checkpoint_every: steps between checkpoints (one is also written each epoch end).
        keep_checkpoints: checkpoints kept in model_dir.
        log_every: steps between TensorBoard scalar summaries.
        on_bad_image: "skip" or "fail" for corrupt or non-image files.
        profile_steps: (first, last) steps to profile into TensorBoard, or None.
        stats_images: images sampled for the mean image and the colour PCA.
        max_steps: stop after this many steps in all (for smoke tests), or None.
        init_from: a .keras AlexNet (converted pretrained weights, or an exported model) to
            start from: every layer is loaded except fc8 when the class count differs; the
            variant and input normalisation come from the file.
        freeze: names of layers (e.g. conv1 ... conv5) left untrained.
        mixed_precision: "none", "float16" (with dynamic loss scaling) or "bfloat16": the
            compute dtype of the layers; variables and checkpoints stay float32.
        jit_compile: compile the training step with XLA (one device only).
        verbose: show a progress bar.
    """

    model_dir: str
    dataset: str = BUILTIN_DATASET
    data_dir: str = None
    manual_dir: str = None
    variant: str = None
    epochs: int = None
    batch_size: int = None
    optimizer: str = None
    learning_rate: float = None
    momentum: float = None
    weight_decay: float = None
    dropout: float = None
    lr_schedule: str = None
    lr_patience: int = None
    lr_max_reductions: int = None
    init: str = None
    input_scale: object = None
    seed: int = 0
    deterministic: bool = False
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    log_every: int = 10
    on_bad_image: str = "skip"
    profile_steps: tuple = None
    stats_images: int = 10_000
    max_steps: int = None
    init_from: str = None
    freeze: tuple = ()
    mixed_precision: str = "none"
    jit_compile: bool = False
    verbose: bool = True


def recipe_for(dataset):
    """The default recipe of a dataset: the demo's for the built-in set, else the paper's."""
    return DEMO_RECIPE if dataset == BUILTIN_DATASET else PAPER_RECIPE


def resolve(config):
    """Fills the None fields of `config` from its dataset's recipe and checks every field.

    Returns:
        A new, complete `TrainConfig`.

    Raises:
        ValueError: naming the first bad field and its value.
    """
    recipe = recipe_for(config.dataset)
    filled = {
        f.name: getattr(recipe, f.name)
        for f in dataclasses.fields(Recipe)
        if getattr(config, f.name) is None
    }
    config = dataclasses.replace(config, **filled)

    def check(name, ok, requirement):
        if not ok:
            raise ValueError(f"{name} {requirement}. Received: {name}={getattr(config, name)!r}")

    check("model_dir", bool(config.model_dir), "must name a folder")
    check(
        "variant",
        config.variant is None or config.variant in model_lib.VARIANTS,
        f"must be one of {list(model_lib.VARIANTS)}",
    )
    check("init", config.init in model_lib.INITS, f"must be one of {model_lib.INITS}")
    check(
        "input_scale",
        config.input_scale == "auto"
        or (isinstance(config.input_scale, (int, float)) and config.input_scale > 0),
        'must be a positive number or "auto"',
    )
    for name in ("epochs", "batch_size", "checkpoint_every", "keep_checkpoints", "log_every"):
        check(name, _is_int(getattr(config, name)) and getattr(config, name) >= 1, "must be >= 1")
    check("learning_rate", config.learning_rate > 0, "must be > 0")
    check("optimizer", config.optimizer in OPTIMIZERS, f"must be one of {OPTIMIZERS}")
    check("momentum", 0 <= config.momentum < 1, "must be in [0, 1)")
    check("weight_decay", config.weight_decay >= 0, "must be >= 0")
    check("dropout", 0 <= config.dropout < 1, "must be in [0, 1)")
    check("lr_schedule", config.lr_schedule in LR_SCHEDULES, f"must be one of {LR_SCHEDULES}")
    check("lr_patience", _is_int(config.lr_patience) and config.lr_patience >= 1, "must be >= 1")
    check("lr_max_reductions", config.lr_max_reductions >= 0, "must be >= 0")
    check("seed", _is_int(config.seed) and config.seed >= 0, "must be an integer >= 0")
    check(
        "on_bad_image", config.on_bad_image in input_pipeline.ON_BAD_IMAGE, "must be skip or fail"
    )
    check("stats_images", config.stats_images >= 1, "must be >= 1")
    check("max_steps", config.max_steps is None or config.max_steps >= 1, "must be >= 1")
    check(
        "init_from",
        config.init_from is None or str(config.init_from).endswith(".keras"),
        "must be the path of a .keras model",
    )
    check("freeze", isinstance(config.freeze, (list, tuple)), "must be a list of layer names")
    check(
        "mixed_precision",
        config.mixed_precision in model_lib.PRECISIONS,
        f"must be one of {list(model_lib.PRECISIONS)}",
    )
    if config.profile_steps is not None:
        steps = tuple(config.profile_steps)
        check(
            "profile_steps",
            len(steps) == 2 and 1 <= steps[0] <= steps[1],
            "must be two step numbers first,last with 1 <= first <= last",
        )
    if config.dataset == "folder":
        check("data_dir", bool(config.data_dir), "must name the image folder for dataset=folder")
    elif config.dataset != BUILTIN_DATASET:
        check(
            "data_dir",
            bool(config.data_dir),
            f"must name the TFDS data folder for {config.dataset}",
        )
    if config.manual_dir and not config.dataset.startswith("imagenet2012"):
        check("manual_dir", False, "is only read for dataset=imagenet2012")
    return config


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def load_source(config):
    """The `input_pipeline.Source` a config names, checked before any training work."""
    if config.dataset == BUILTIN_DATASET:
        root = shapes_dataset.ensure_shapes_dataset(config.data_dir or shapes_dataset.DEFAULT_ROOT)
        return input_pipeline.folder_source(root, on_bad_image=config.on_bad_image)
    if config.dataset == "folder":
        return input_pipeline.folder_source(config.data_dir, on_bad_image=config.on_bad_image)
    return input_pipeline.tfds_source(config.dataset, config.data_dir, config.manual_dir)


def make_strategy(name="auto", cpu_replicas=None, worker_timeout=600):
    """Creates the distribution strategy; call it before any other TensorFlow work.

    Args:
        name: "auto" (MirroredStrategy over all GPUs when there are several, or over
            `cpu_replicas` logical CPUs; else one device), "one_device", "mirrored" or
            "multi_worker" (the cluster comes from the TF_CONFIG environment variable).
        cpu_replicas: split the CPU into this many logical devices and mirror over them,
            so data parallelism runs (and is tested) without GPUs.
        worker_timeout: with multi_worker, seconds a collective operation waits for the
            other workers before it fails, so that a lost worker stops the job instead of
            hanging it.

    Returns:
        A `tf.distribute.Strategy`.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}. Received: strategy={name!r}")
    if cpu_replicas is not None and (not _is_int(cpu_replicas) or cpu_replicas < 1):
        raise ValueError(f"cpu_replicas must be >= 1. Received: cpu_replicas={cpu_replicas!r}")
    if name == "multi_worker":
        if cpu_replicas:
            raise ValueError(
                "cpu_replicas cannot be used with strategy=multi_worker: "
                "MultiWorkerMirroredStrategy uses one CPU device per worker even when the CPU "
                "is split into logical devices, so on CPU a worker is one replica. "
                f"Received: cpu_replicas={cpu_replicas}"
            )
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=worker_timeout)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    cpu_devices = None
    if cpu_replicas:
        cpu = tf.config.list_physical_devices("CPU")[0]
        configs = [tf.config.LogicalDeviceConfiguration() for _ in range(cpu_replicas)]
        try:
            tf.config.set_logical_device_configuration(cpu, configs)
        except RuntimeError as error:
            current = len(tf.config.list_logical_devices("CPU"))
            if current != cpu_replicas:
                raise ValueError(
                    "cpu_replicas must be set before TensorFlow initialises its devices "
                    f"(they are {current} logical CPUs now). Received: cpu_replicas={cpu_replicas}"
                ) from error
        cpu_devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (
        name == "auto" and (len(gpus) > 1 or (cpu_devices and len(cpu_devices) > 1))
    ):
        devices = [d.name for d in gpus] if gpus else cpu_devices
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


def is_chief(strategy):
    """Whether this process writes the run's files (always, except on other workers)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)


def make_train_step(model, optimizer, global_batch_size, jit_compile=False):
    """Returns a `tf.function` that runs one SGD step on one replica's batch.

    The loss is the mean cross-entropy over the GLOBAL batch plus the model's
    regularisation losses (the paper's coupled weight decay), scaled so that summing the
    replicas' gradients, as every `tf.distribute` strategy does, gives the gradient of the
    global batch. Under no strategy it is the ordinary mean loss.

    Args:
        model: a Keras model that returns class probabilities.
        optimizer: a Keras optimizer; a `keras.optimizers.LossScaleOptimizer` scales the
            loss before the gradients (float16) and unscales them before the update.
        global_batch_size: examples per step over all replicas.
        jit_compile: compile the step with XLA.

    Returns:
        step(images, labels) -> (loss, top-1 hits, top-5 hits), to call directly or with
        `strategy.run`. The loss is the one before the update, unscaled.
    """
    scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    @tf.function(jit_compile=jit_compile)
    def step(images, labels):
        with tf.GradientTape() as tape:
            probs = model(images, training=True)
            per_example = keras.losses.sparse_categorical_crossentropy(labels, probs)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            # float16: gradients of the scaled loss, unscaled by the optimizer.
            scaled_loss = optimizer.scale_loss(loss) if scaled else loss
        grads = tape.gradient(scaled_loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return (
            loss,
            metrics.top_k_correct(labels, probs, 1),
            metrics.top_k_correct(labels, probs, 5),
        )

    return step


class _Schedule(tf.Module):
    """The paper's schedule: divide the learning rate by 10 when validation error stalls."""

    def __init__(self, patience, max_reductions):
        super().__init__(name="schedule")
        self.patience = patience
        self.max_reductions = max_reductions
        self.best_error = tf.Variable(math.inf, dtype=tf.float64, trainable=False)
        self.epochs_without_gain = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.reductions = tf.Variable(0, dtype=tf.int64, trainable=False)

    def update(self, error, optimizer):
        """Records an epoch's validation error; returns True when it lowered the rate."""
        if error < self.best_error.numpy():
            self.best_error.assign(error)
            self.epochs_without_gain.assign(0)
            return False
        self.epochs_without_gain.assign_add(1)
        if self.epochs_without_gain.numpy() >= self.patience and (
            self.reductions.numpy() < self.max_reductions
        ):
            optimizer.learning_rate.assign(optimizer.learning_rate * paper.LR_DECAY_FACTOR)
            self.reductions.assign_add(1)
            self.epochs_without_gain.assign(0)
            return True
        return False


def cosine_learning_rate(base, step, total_steps):
    """The learning rate of step `step` (0-based) of `total_steps` under cosine decay.

    base * (1 + cos(pi * step / total_steps)) / 2: `base` at the first step, falling to 0
    at the end (Loshchilov and Hutter, SGDR, 2017, without restarts). A function of the
    step alone, so a resumed run continues the same curve.
    """
    return base * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


def _check_run(model_dir, run):
    """Checks that a resumed run keeps the settings the run recorded (`RUN_KEYS`)."""
    path = os.path.join(model_dir, run_dir.RUN_FILE)
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            previous = json.load(f)
        for key in RUN_KEYS:
            if key in previous and previous[key] != run[key]:
                raise ValueError(
                    f"model_dir {model_dir} holds a run with {key}={previous[key]!r}; resuming it "
                    f"with {key}={run[key]!r} would not continue that run. Use another "
                    f"--model_dir, or the same --{key}. Received: {key}={run[key]!r}"
                )


def _write_run(model_dir, run):
    """Records the run's settings, once (the chief only)."""
    path = os.path.join(model_dir, run_dir.RUN_FILE)
    if not tf.io.gfile.exists(path):
        tf.io.gfile.makedirs(model_dir)
        with tf.io.gfile.GFile(path, "w") as f:
            json.dump(run, f, indent=1)


def _load_or_compute_stats(model_dir, source, config, chief, start_from=None):
    path = os.path.join(model_dir, run_dir.STATS_FILE)
    if tf.io.gfile.exists(path):
        return input_pipeline.Stats.load(path)
    print(
        f"Computing the mean image and colour PCA over "
        f"{min(config.stats_images, source.num_train)} training images (once per model_dir).",
        flush=True,
    )
    stats = input_pipeline.compute_stats(source, max_images=config.stats_images, seed=config.seed)
    if start_from is not None and model_lib.normalizes_input(start_from):
        # The starting model subtracts its own mean (converted pretrained weights take raw
        # 0-255 RGB): the pipeline must not subtract one as well. The colour PCA stays.
        stats = dataclasses.replace(stats, mean_image=np.zeros_like(stats.mean_image))
        print("  the starting model normalises its own input: no mean image is subtracted")
    if chief:
        tf.io.gfile.makedirs(model_dir)
        stats.save(path)
    return stats


def _all_finite(variables):
    return all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in variables)


class _Writer:
    """TensorBoard summaries, written by the chief only."""

    def __init__(self, model_dir, enabled):
        self.enabled = enabled
        if enabled:
            self.train = tf.summary.create_file_writer(os.path.join(model_dir, "train"))
            self.validation = tf.summary.create_file_writer(os.path.join(model_dir, "validation"))

    def scalars(self, which, step, values):
        if not self.enabled:
            return
        with getattr(self, which).as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)

    def epoch_pictures(self, model, step):
        if not self.enabled:
            return
        with self.train.as_default(step=step):
            conv1 = model.get_layer("conv1")
            kernel = keras.ops.convert_to_numpy(conv1.kernel)
            groups = 2 if kernel.shape[-1] % 2 == 0 else 1
            tf.summary.image(
                "conv1_kernels",
                summaries.conv1_grid(kernel, groups=groups),
                description="The conv1 kernels as in the paper's figure 3: the first tower's "
                "on the left, the second's on the right.",
            )
            for weight in model.trainable_weights:
                # TensorBoard's histogram op is slow on millions of values (fc6 has 37M):
                # an evenly strided sample of at most 100k shows the same distribution.
                values = keras.ops.convert_to_numpy(weight).ravel()
                tf.summary.histogram(weight.path, values[:: max(1, values.size // 100_000)])

    def inputs(self, images, step, mean_rgb):
        if not self.enabled:
            return
        with self.train.as_default(step=step):
            tf.summary.image(
                "augmented_inputs", summaries.displayable(images[:4], mean_rgb), max_outputs=4
            )


def train(config, *, strategy=None, source=None):
    """Trains AlexNet, resuming from the latest checkpoint in `config.model_dir`.

    Args:
        config: a `TrainConfig`; None fields take the dataset's recipe.
        strategy: a `tf.distribute.Strategy`; default: one device.
        source: an `input_pipeline.Source` to use instead of `config.dataset`.

    Returns:
        A dict of the final state: step, epoch, train and validation metrics, the
        learning rate, and the path of the last checkpoint.

    Raises:
        ValueError: bad configuration or data, before any training work.
        FloatingPointError: the loss became NaN or infinite; the last good checkpoint
            is kept.
    """
    config = resolve(config)
    strategy = strategy or tf.distribute.OneDeviceStrategy("/cpu:0")
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ValueError(
            f"batch_size (the global batch) must divide by the {replicas} replicas. "
            f"Received: batch_size={config.batch_size}"
        )
    if config.jit_compile and not isinstance(strategy, tf.distribute.OneDeviceStrategy):
        raise ValueError(
            f"jit_compile works on one device only: Keras does not compile with XLA under "
            f"{type(strategy).__name__}. Use --strategy=one_device, or leave jit_compile off. "
            "Received: jit_compile=True"
        )
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    if source is None:
        source = load_source(config)  # applies on_bad_image to the files it scans
        bad = len(source.bad_files)
    else:
        bad = input_pipeline.check_bad_files(source.bad_files, config.on_bad_image)
    steps_per_epoch = input_pipeline.steps_per_epoch(source, config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    chief = is_chief(strategy)
    model_dir = config.model_dir
    start_from = None
    if config.init_from:
        if not os.path.exists(config.init_from):
            raise ValueError(f"init_from does not exist. Received: init_from={config.init_from}")
        start_from = keras.models.load_model(config.init_from, compile=False)
        found = model_lib.variant_of(start_from)
        if found is None:
            raise ValueError(
                "init_from is not an AlexNet of a known variant (layer names, channels, "
                f"towers, LRN). Received: init_from={config.init_from}"
            )
        if config.variant not in (None, found):
            raise ValueError(
                f"init_from holds a {found!r} model; variant must match it or be left out. "
                f"Received: variant={config.variant!r}"
            )
        config = dataclasses.replace(config, variant=found)
    elif config.variant is None:
        config = dataclasses.replace(config, variant="paper")
    run = dict(
        dataset=source.name,
        variant=config.variant,
        num_classes=source.num_classes,
        batch_size=config.batch_size,
        seed=config.seed,
        init=config.init,
        input_scale=config.input_scale,
        class_names=list(source.class_names),
        # How to find the data again (evaluate's default), not checked on resume.
        dataset_flag=config.dataset,
        data_dir=config.data_dir and os.path.abspath(config.data_dir),
        manual_dir=config.manual_dir,
        init_from=config.init_from and os.path.abspath(config.init_from),
        freeze=list(config.freeze),
    )
    _check_run(model_dir, run)
    stats = _load_or_compute_stats(model_dir, source, config, chief, start_from)
    model_args = dict(
        num_classes=source.num_classes,
        variant=config.variant,
        init=config.init,
        input_scale=run_dir.input_scale_value(config.input_scale, stats),
        input_offset=0.0,
    )
    if start_from is not None:
        rescaling = model_lib.layer_or_none(start_from, "input_rescaling")
        model_args.update(
            input_scale=rescaling.get_config()["scale"] if rescaling else 1.0,
            input_offset=rescaling.get_config()["offset"] if rescaling else 0.0,
        )
    if chief:
        _write_run(model_dir, dict(run, model_args=model_args))
        run_dir.write_labels(model_dir, source.class_names)
    _print_config(config, source, strategy, steps_per_epoch, bad)

    with strategy.scope():
        keras.utils.set_random_seed(config.seed)
        model = model_lib.AlexNet(
            dropout=config.dropout,
            weight_decay=config.weight_decay,
            dtype_policy=model_lib.precision_policy(config.mixed_precision),
            **model_args,
        )
        if start_from is not None:
            fc8 = start_from.get_layer("fc8")
            new_top = fc8.units != source.num_classes
            model_lib.copy_weights(start_from, model, skip=("fc8",) if new_top else ())
            print(
                f"Starting from {config.init_from} ({config.variant})"
                + (
                    f"; fc8 replaced: {fc8.units} -> {source.num_classes} classes"
                    if new_top
                    else ""
                ),
                flush=True,
            )
        for name in config.freeze:
            layer = model_lib.layer_or_none(model, name)
            if layer is None or not layer.weights:
                raise ValueError(
                    f"freeze names a layer without weights or not in the model. Received: {name!r}"
                )
            layer.trainable = False
        if config.optimizer == "sgd":
            base = keras.optimizers.SGD(config.learning_rate, momentum=config.momentum)
        else:
            base = keras.optimizers.Adam(config.learning_rate)
        optimizer = base
        if config.mixed_precision == "float16":
            # float16 gradients underflow without it; bfloat16 has float32's range.
            optimizer = keras.optimizers.LossScaleOptimizer(base)
        optimizer.build(model.trainable_variables)
    # Host-side state, read and written eagerly between steps: plain variables.
    schedule = _Schedule(config.lr_patience, config.lr_max_reductions)
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False)  # steps taken, skipped or not
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    # Dropout's random state is not tracked by the model's checkpoint dependencies; it is
    # saved explicitly so that a resumed run draws the masks the uninterrupted one would.
    rng_state = [v for v in model.non_trainable_variables if "seed_generator" in v.path]
    # The checkpoint holds the SGD state whatever the precision, so a run can resume with or
    # without mixed precision; float16's loss scale is a separate, optional part.
    state = tf.train.Checkpoint(
        model=model,
        optimizer=base,
        schedule=schedule,
        step=step_var,
        epoch=epoch_var,
        step_in_epoch=step_in_epoch,
        rng_state=rng_state,
    )
    loss_scale = tf.train.Checkpoint()
    if optimizer is not base:
        loss_scale.scale = optimizer.dynamic_scale
        loss_scale.counter = optimizer.step_counter
    checkpoint = tf.train.Checkpoint(state=state, loss_scale=loss_scale)
    # Every worker saves (saving is a collective operation under MultiWorkerMirroredStrategy),
    # but only the chief into model_dir; every worker resumes from the chief's checkpoints.
    write_dir = model_dir if chief else _worker_dir(model_dir, strategy)
    manager = tf.train.CheckpointManager(
        checkpoint,
        os.path.join(write_dir, run_dir.CHECKPOINTS),
        max_to_keep=config.keep_checkpoints,
    )
    latest = run_dir.latest_checkpoint(model_dir)
    if latest:
        status = tf.train.Checkpoint(state=state).restore(latest)
        status.assert_existing_objects_matched().expect_partial()  # the loss scale: below
        tf.train.Checkpoint(loss_scale=loss_scale).restore(latest).expect_partial()
        # The rate follows the flag, lowered as many times as the schedule has lowered it.
        optimizer.learning_rate.assign(
            config.learning_rate * paper.LR_DECAY_FACTOR ** int(schedule.reductions)
            if config.lr_schedule == "plateau"
            else cosine_learning_rate(config.learning_rate, int(step_var), total_steps)
        )
        print(
            f"Resuming from {latest}: epoch {int(epoch_var) + 1}, "
            f"step {int(step_in_epoch)} of {steps_per_epoch}, step {int(step_var)} "
            f"in all, learning rate {_value(optimizer.learning_rate):g}",
            flush=True,
        )

    def dataset_fn(input_context):
        return input_pipeline.train_dataset(
            source,
            global_batch_size=config.batch_size,
            stats=stats,
            seed=config.seed,
            epoch=int(epoch_var),
            start_step=int(step_in_epoch),
            input_context=input_context,
            num_epochs=config.epochs - int(epoch_var),
        )

    step_fn = make_train_step(model, optimizer, config.batch_size, config.jit_compile)

    @tf.function
    def distributed_step(images, labels):
        results = strategy.run(step_fn, args=(images, labels))
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, r, axis=None) for r in results]

    writer = _Writer(model_dir, chief)
    writer.scalars("train", int(step_var), {"skipped_images": bad})
    mean_rgb = stats.mean_image.mean(axis=(0, 1))
    validation = None
    if source.num_validation:
        validation = strategy.distribute_datasets_from_function(
            lambda ctx: input_pipeline.eval_dataset(
                source, batch_size=config.batch_size, stats=stats, input_context=ctx
            )
        )

    def save(reason):
        if not _all_finite(model.trainable_variables):
            raise FloatingPointError(
                f"The weights are no longer finite at step {int(step_var)}; "
                f"not saving them ({reason}). The last good checkpoint is "
                f"{manager.latest_checkpoint}."
            )
        return manager.save(checkpoint_number=int(step_var))

    def rerun_hint():
        return (
            ". Remove or replace them and rerun the same command; it resumes from "
            f"{manager.latest_checkpoint or 'the start'}"
        )

    result = dict(step=int(step_var), epoch=int(epoch_var))
    if int(epoch_var) >= config.epochs:
        print(f"Nothing to do: {model_dir} has finished its {config.epochs} epochs.")
        return dict(result, checkpoint=latest, weights_sha256=weights_digest(model))
    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    profiling = False
    stop = False
    while int(epoch_var) < config.epochs and not stop:
        epoch = int(epoch_var)
        progbar = (
            keras.utils.Progbar(
                steps_per_epoch,
                verbose=1 if config.verbose else 0,
                stateful_metrics=["loss", "top1_err", "top5_err", "img/s"],
            )
            if config.verbose
            else None
        )
        if config.verbose:
            print(f"Epoch {epoch + 1}/{config.epochs}", flush=True)
        totals = np.zeros(4)  # loss sum, top-1 hits, top-5 hits, examples
        start = time.perf_counter()
        first = int(step_in_epoch)
        while int(step_in_epoch) < steps_per_epoch:
            global_step = int(step_var) + 1
            if config.profile_steps and chief and global_step == config.profile_steps[0]:
                tf.profiler.experimental.start(os.path.join(model_dir, "profile"))
                profiling = True
            if config.lr_schedule == "cosine":
                optimizer.learning_rate.assign(
                    cosine_learning_rate(config.learning_rate, global_step - 1, total_steps)
                )
            try:
                images, labels = next(iterator)
            except tf.errors.InvalidArgumentError as error:
                bad_images = input_pipeline.undecodable_in_step(
                    source,
                    seed=config.seed,
                    epoch=epoch,
                    step=int(step_in_epoch),
                    global_batch_size=config.batch_size,
                )
                if not bad_images:
                    raise
                raise ValueError(
                    input_pipeline.describe_failures(
                        bad_images, f"training image(s) of step {global_step}", "training"
                    )
                    + rerun_hint()
                    + " (with other files, the input order differs from the interrupted run's)."
                ) from error
            loss, top1, top5 = (float(x) for x in distributed_step(images, labels))
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"The loss became {loss} at step {global_step} (epoch {epoch + 1}). "
                    f"The last good checkpoint is kept: {manager.latest_checkpoint}. "
                    "Try a lower --learning_rate."
                )
            step_in_epoch.assign_add(1)
            step_var.assign_add(1)
            if profiling and global_step == config.profile_steps[1]:
                tf.profiler.experimental.stop()
                profiling = False
            totals += (loss * config.batch_size, top1, top5, config.batch_size)
            done = int(step_in_epoch) - first
            rate = done * config.batch_size / (time.perf_counter() - start)
            train_metrics = dict(
                loss=totals[0] / totals[3],
                top1_error=1 - totals[1] / totals[3],
                top5_error=1 - totals[2] / totals[3],
            )
            if progbar:
                progbar.update(
                    int(step_in_epoch),
                    [
                        ("loss", train_metrics["loss"]),
                        ("top1_err", train_metrics["top1_error"]),
                        ("top5_err", train_metrics["top5_error"]),
                        ("img/s", rate),
                    ],
                )
            if global_step % config.log_every == 0 or global_step == 1:
                scalars = dict(
                    train_metrics,
                    learning_rate=_value(optimizer.learning_rate),
                    images_per_second=rate,
                )
                if optimizer is not base:
                    scalars["loss_scale"] = _value(loss_scale.scale)
                writer.scalars("train", global_step, scalars)
            if global_step == 1 or int(step_in_epoch) == first + 1:
                writer.inputs(_local(strategy, images), global_step, mean_rgb)
            if global_step % config.checkpoint_every == 0 and int(step_in_epoch) < steps_per_epoch:
                save("periodic")
            if config.max_steps and global_step >= config.max_steps:
                stop = True
                if progbar and int(step_in_epoch) < steps_per_epoch:
                    print(flush=True)  # end the progress bar's line
                break
        result.update(train=train_metrics)
        if stop and int(step_in_epoch) < steps_per_epoch:
            result["checkpoint"] = save("max_steps")
            break
        # The epoch is complete: validate, adjust the learning rate, checkpoint.
        global_step = int(step_var)
        if validation is not None:
            try:
                val = metrics.evaluate_dataset(model, validation, strategy=strategy)
            except tf.errors.InvalidArgumentError as error:
                bad_images = input_pipeline.undecodable(source, "validation")
                if not bad_images:
                    raise
                raise ValueError(
                    input_pipeline.describe_failures(bad_images, "validation image(s)", "training")
                    + rerun_hint()
                    + "."
                ) from error
            result["validation"] = val
            writer.scalars(
                "validation",
                global_step,
                {
                    "loss": val["loss"],
                    "top1_error": val["top1_error"],
                    "top5_error": val["top5_error"],
                },
            )
            lowered = config.lr_schedule == "plateau" and schedule.update(
                val["top1_error"], optimizer
            )
            print(
                f"Epoch {epoch + 1}: validation top-1 error {val['top1_error']:.2%}, "
                f"top-5 error {val['top5_error']:.2%} over {val['count']} images"
                + (
                    f"; learning rate lowered to {_value(optimizer.learning_rate):g}"
                    if lowered
                    else ""
                ),
                flush=True,
            )
        writer.epoch_pictures(model, global_step)
        epoch_var.assign_add(1)
        step_in_epoch.assign(0)
        result["checkpoint"] = save("epoch end")
    if profiling:
        tf.profiler.experimental.stop()
    result["weights_sha256"] = weights_digest(model)
    result.update(
        step=int(step_var),
        epoch=int(epoch_var),
        learning_rate=_value(optimizer.learning_rate),
    )
    if not chief:
        tf.io.gfile.rmtree(write_dir)
        workers = os.path.dirname(write_dir)
        if tf.io.gfile.isdir(workers) and not tf.io.gfile.listdir(workers):
            tf.io.gfile.rmtree(workers)
    return result


def weights_digest(model):
    """SHA-256 of the model's weights: equal on every worker of a synchronous run."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


def _value(variable):
    """A scalar variable's value as a Python float (also for a MirroredVariable)."""
    return float(tf.convert_to_tensor(variable).numpy())


def _local(strategy, value):
    """The first local replica's part of a per-replica value, as NumPy."""
    parts = strategy.experimental_local_results(value)
    return keras.ops.convert_to_numpy(parts[0])


def _worker_dir(model_dir, strategy):
    resolver = strategy.cluster_resolver
    return os.path.join(model_dir, "workers", f"{resolver.task_type}_{resolver.task_id}")


def _print_config(config, source, strategy, steps_per_epoch, bad):
    recipe = "demo" if recipe_for(config.dataset) is DEMO_RECIPE else "paper's"
    print(
        f"Training AlexNet ({config.variant}) on {source.name}: {source.num_classes} classes, "
        f"{source.num_train} training and {source.num_validation} validation images"
        + (f", {bad} bad files left out" if bad else ""),
        flush=True,
    )
    print(
        f"  {config.epochs} epochs of {steps_per_epoch} steps, global batch {config.batch_size} "
        f"over {strategy.num_replicas_in_sync} replica(s) ({type(strategy).__name__}); "
        f"{config.optimizer} lr {config.learning_rate:g}"
        + (f", momentum {config.momentum:g}" if config.optimizer == "sgd" else "")
        + ", weight decay "
        f"{config.weight_decay:g}, dropout {config.dropout:g}, init {config.init}, "
        f"input scale {config.input_scale}, precision {config.mixed_precision}; "
        + (
            f"lr /10 after {config.lr_patience} epochs without progress, at most "
            f"{config.lr_max_reductions} times"
            if config.lr_schedule == "plateau"
            else "lr cosine decay to 0 over the run"
        )
        + f" ({recipe} defaults where no flag was given)",
        flush=True,
    )
    print(
        f"  model_dir {config.model_dir}: checkpoints every {config.checkpoint_every} steps "
        "and at each epoch end; TensorBoard: tensorboard --logdir " + config.model_dir,
        flush=True,
    )


FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags; only the entry point calls this."""
    flags.DEFINE_string("model_dir", "runs/alexnet", "Checkpoints, TensorBoard logs, statistics.")
    flags.DEFINE_string(
        "dataset",
        BUILTIN_DATASET,
        "'shapes' (built in, no download), 'folder' (--data_dir with train/ and validation/ "
        "class folders), 'imagenet2012' (prepared from --manual_dir) or a TFDS NAME[:VERSION] "
        "already prepared in --data_dir.",
    )
    flags.DEFINE_string("data_dir", None, "Image folder or TFDS data folder.")
    flags.DEFINE_string("manual_dir", None, "Folder of ILSVRC2012_img_{train,val}.tar.")
    flags.DEFINE_enum(
        "variant",
        None,
        list(model_lib.VARIANTS),
        "Network variant (default: paper, or init_from's).",
    )
    paper_, demo = PAPER_RECIPE, DEMO_RECIPE
    flags.DEFINE_integer("epochs", None, f"Epochs (paper: {paper_.epochs}, demo: {demo.epochs}).")
    flags.DEFINE_integer(
        "batch_size",
        None,
        f"GLOBAL batch over all replicas (paper: {paper_.batch_size}, demo: {demo.batch_size}).",
    )
    flags.DEFINE_float(
        "learning_rate",
        None,
        f"Initial learning rate (paper: {paper_.learning_rate:g}, demo: {demo.learning_rate:g}).",
    )
    flags.DEFINE_enum("optimizer", None, list(OPTIMIZERS), "sgd (the paper's) or adam (demo).")
    flags.DEFINE_float("momentum", None, "SGD momentum (paper: 0.9).")
    flags.DEFINE_float("weight_decay", None, "The paper's coupled weight decay (5e-4).")
    flags.DEFINE_float("dropout", None, "Dropout after fc6 and fc7 (paper: 0.5).")
    flags.DEFINE_enum(
        "lr_schedule",
        None,
        list(LR_SCHEDULES),
        f"plateau: lr /= 10 when validation error stalls (paper); cosine: decay to 0 over "
        f"the run (demo: {demo.lr_schedule}).",
    )
    flags.DEFINE_integer("lr_patience", None, "Epochs without progress before lr /= 10.")
    flags.DEFINE_integer("lr_max_reductions", None, "At most this many lr reductions (paper: 3).")
    flags.DEFINE_enum("init", None, list(model_lib.INITS), "Weight init (default per dataset).")
    flags.DEFINE_string(
        "input_scale",
        None,
        'Input multiplier, a number or "auto" (1 / pixel '
        "std); default 1 (the paper's raw pixels), auto for the demo.",
    )
    flags.DEFINE_integer("seed", 0, "Seed of the input order, augmentation and init.")
    flags.DEFINE_boolean("deterministic", False, "Deterministic ops: resumed == uninterrupted.")
    flags.DEFINE_integer("checkpoint_every", 100, "Steps between checkpoints.")
    flags.DEFINE_integer("log_every", 10, "Steps between TensorBoard scalars.")
    flags.DEFINE_enum(
        "on_bad_image",
        "skip",
        list(input_pipeline.ON_BAD_IMAGE),
        "Skip and count bad image files, or stop at the first.",
    )
    flags.DEFINE_list("profile_steps", None, "first,last: steps to profile into TensorBoard.")
    flags.DEFINE_integer("stats_images", 10_000, "Images sampled for the mean image and PCA.")
    flags.DEFINE_integer("max_steps", None, "Stop after this many steps in all (smoke tests).")
    flags.DEFINE_string(
        "init_from", None, "A .keras AlexNet to start from (converted weights, or an export)."
    )
    flags.DEFINE_list("freeze", [], "Layers left untrained, e.g. conv1,conv2,conv3,conv4,conv5.")
    flags.DEFINE_enum(
        "mixed_precision",
        "none",
        list(model_lib.PRECISIONS),
        "Compute dtype: float16 (with loss "
        "scaling) or bfloat16 on GPUs/TPUs that have them; variables stay float32.",
    )
    flags.DEFINE_boolean("jit_compile", False, "Compile the training step with XLA (one device).")
    flags.DEFINE_enum("strategy", "auto", list(STRATEGIES), "tf.distribute strategy.")
    flags.DEFINE_integer(
        "worker_timeout", 600, "multi_worker: seconds to wait for a lost worker before failing."
    )
    flags.DEFINE_integer(
        "cpu_replicas",
        None,
        "Split the CPU into N logical devices and "
        "mirror over them (data parallelism without GPUs).",
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        # The strategy comes first: it must exist before any other TensorFlow work.
        strategy = make_strategy(FLAGS.strategy, FLAGS.cpu_replicas, FLAGS.worker_timeout)
        profile = None
        if FLAGS.profile_steps:
            try:
                profile = tuple(int(s) for s in FLAGS.profile_steps)
            except ValueError:
                raise ValueError(
                    f"profile_steps must be two step numbers first,last. "
                    f"Received: profile_steps={','.join(FLAGS.profile_steps)}"
                ) from None
        input_scale = FLAGS.input_scale
        if input_scale not in (None, "auto"):
            try:
                input_scale = float(input_scale)
            except ValueError:
                raise ValueError(
                    f'input_scale must be a number or "auto". Received: input_scale={input_scale}'
                ) from None
        config = TrainConfig(
            **{
                f.name: FLAGS[f.name].value
                for f in dataclasses.fields(TrainConfig)
                if f.name in FLAGS and f.name not in ("profile_steps", "input_scale", "freeze")
            },
            profile_steps=profile,
            input_scale=input_scale,
            freeze=tuple(FLAGS.freeze),
        )
        result = train(config, strategy=strategy)
    except (ValueError, FloatingPointError) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as error:
        # A collective operation failed: another worker is gone. TensorFlow's shutdown may
        # wait on the lost peer, so leave at once; rerunning the job resumes it.
        latest = run_dir.latest_checkpoint(FLAGS.model_dir)
        print(
            f"error: lost contact with another worker ({type(error).__name__}: "
            f"{str(error).strip().splitlines()[0]}). Rerun the job to resume from {latest}.",
            file=sys.stderr,
            flush=True,
        )
        sys.stdout.flush()
        os._exit(1)
    val = result.get("validation")
    summary = f"Done: step {result['step']}"
    if val:
        summary += (
            f", validation top-1 error {val['top1_error']:.2%}, top-5 error {val['top5_error']:.2%}"
        )
    print(f"{summary}; checkpoint {result.get('checkpoint')}", flush=True)
    print(f"Weights sha256 {result.get('weights_sha256')}", flush=True)
    return 0


if __name__ == "__main__":
    cli.run(main, define_flags)
