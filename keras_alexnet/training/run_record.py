"""A training run's record: the `Run`, checked and written before the first step.

`prepare_run` refuses everything it can before any training work (the config, the
strategy, the data, a resumed run's settings), opens the data, reads or computes the
training set's statistics, and writes the record in the run's folder (`runs.folder`).
"""

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf

from keras_alexnet.data import bad_images
from keras_alexnet.data import pipelines as input_pipeline
from keras_alexnet.data import service as data_service
from keras_alexnet.data import sources
from keras_alexnet.data import stats as stats_lib
from keras_alexnet.models import inspection
from keras_alexnet.models import layer_weights
from keras_alexnet.models import loading
from keras_alexnet.runs import folder as run_folder
from keras_alexnet.training import config as config_lib
from keras_alexnet.training import distribute
from keras_alexnet.training import recipes
from keras_alexnet.weights import cache
from keras_alexnet.weights import catalog


@dataclasses.dataclass(frozen=True)
class Run:
    """What a training run works with, fixed before its first step.

    Attributes:
        config: the resolved `config.TrainConfig` (its variant filled in).
        strategy: the `tf.distribute.Strategy`.
        source: the `sources.Source` of the images.
        stats: the training set's `stats.Stats`.
        model_args: the `model.AlexNet` arguments, as recorded in run.json.
        start_from: the model of `config.init_from`, or None.
        skipped: how many bad image files the source left out.
        chief: whether this process writes the run's files.
    """

    config: config_lib.TrainConfig
    strategy: tf.distribute.Strategy
    source: sources.Source
    stats: stats_lib.Stats
    model_args: dict
    start_from: keras.Model
    skipped: int
    chief: bool

    @property
    def steps_per_epoch(self):
        """Training steps in an epoch: the training images over the global batch."""
        return input_pipeline.steps_per_epoch(self.source, self.config.batch_size)

    @property
    def total_steps(self):
        """Training steps in the whole run, over all its epochs."""
        return self.steps_per_epoch * self.config.epochs


def prepare_run(config, strategy=None, source=None):
    """Checks the config, opens the data, records the run and its statistics.

    Everything that can be refused is refused here, before anything is written in the
    model_dir (run.json, the statistics, the labels): a refused run leaves no record. A
    model_dir without a checkpoint holds no run to continue, and takes the new settings.

    Returns:
        A `Run`.
    """
    config = config_lib.resolve(_with_recorded_recipe(config))
    strategy = strategy or distribute.make_strategy("auto")
    _check_strategy(config, strategy)
    if config.data_service:
        data_service.check_reachable(config.data_service)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    if source is None:
        source = config_lib.load_source(config)  # applies on_bad_image to the files it scans
    else:
        sources.check_bad_files(source.bad_files, config.on_bad_image)
    chief = distribute.is_chief(strategy)
    _check_source(config, source)
    start_from = None
    if config.init_from:
        start_from = _load_start_from(config)
        config = dataclasses.replace(config, variant=inspection.variant_of(start_from))
    elif config.variant is None:
        config = dataclasses.replace(config, variant="paper")
    record = _record(config, source)
    run_folder.check_run(config.model_dir, record)
    if config.on_bad_image == "skip":
        source, _ = bad_images.check_decoding(source, model_dir=config.model_dir, write_list=chief)
        _check_source(config, source)  # again, without the files that do not decode
    stats, computed = _load_or_compute_stats(config, source, start_from, record)
    model_args = _model_args(config, source, stats, start_from)
    if chief:
        if computed:
            run_folder.write_stats(config.model_dir, stats)
        run_folder.write_run(config.model_dir, dict(record, model_args=model_args))
        run_folder.write_labels(config.model_dir, source.class_names)
    run = Run(config, strategy, source, stats, model_args, start_from, len(source.bad_files), chief)
    print_run(run)
    return run


def _with_recorded_recipe(config):
    """The config; without --recipe, a resumed run's recipe (the one its run.json records)."""
    if config.recipe is not None or not config.model_dir:
        return config
    if run_folder.previous_run(config.model_dir) is None:
        return config
    previous = run_folder.read_run(config.model_dir)
    return dataclasses.replace(config, recipe=recipes.recorded_recipe(previous))


def _record(config, source):
    """What run.json records of a run (`run_folder.RUN_KEYS` and how to find the data)."""
    return dict(
        dataset=source.name,
        variant=config.variant,
        num_classes=source.num_classes,
        batch_size=config.batch_size,
        seed=config.seed,
        init=config.init,
        input_scale=config.input_scale,
        recipe=config.recipe,
        class_names=list(source.class_names),
        validation_split=config.validation_split,
        layout=source.layout,
        # How to find the data again (evaluate's default), not checked on resume.
        dataset_flag=config.dataset,
        data_dir=config.data_dir and os.path.abspath(config.data_dir),
        manual_dir=config.manual_dir,
        init_from=_init_from_record(config.init_from),
        freeze=list(config.freeze),
    )


def _check_source(config, source):
    """Refuses a plateau rule without validation images, and a batch the data cannot fill."""
    if config.lr_schedule == "plateau" and not source.num_validation:
        raise ValueError(
            "lr_schedule=plateau lowers the learning rate when the validation error stops "
            f"improving, and {source.name} has no validation images: the rate would stay "
            f"at {config.learning_rate:g} for the whole run. Give the data a validation "
            "split, or use --lr_schedule=cosine. Received: lr_schedule='plateau'"
        )
    if config.batch_size > source.num_train:
        raise ValueError(
            f"batch_size (the global batch) must be at most the training set's size "
            f"({source.num_train} images in {source.name}): a step takes a whole batch. "
            f"Give a smaller --batch_size. Received: batch_size={config.batch_size}"
        )


def _check_strategy(config, strategy):
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


def _init_from_record(init_from):
    """init_from as the run records it: a name as it is, a file as an absolute path."""
    if not init_from or catalog.is_name(init_from):
        return init_from
    return os.path.abspath(init_from)


def _load_start_from(config):
    """The model of `config.init_from` (a file, or named weights fetched and cached on first
    use), checked to be an AlexNet of the config's variant."""
    path = cache.resolve(config.init_from)
    if not os.path.exists(path):
        raise ValueError(f"init_from does not exist. Received: init_from={config.init_from}")
    start_from = loading.load_keras(path)  # errors.InputError naming the file and its fault
    found = inspection.variant_of(start_from)
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
    return start_from


def _load_or_compute_stats(config, source, start_from, record):
    """The run's mean image and colour PCA: computed once per model_dir, then read.

    Returns:
        (stats, computed): computed is True when they are new, to be written.
    """
    if run_folder.reusable_stats(config.model_dir, record, STATS_KEYS):
        stats = run_folder.read_stats(config.model_dir)
        if stats is not None:
            return stats, False
    print(
        f"Computing the mean image and colour PCA over "
        f"{min(config.stats_images, source.num_train)} training images (once per model_dir).",
        flush=True,
    )
    try:
        stats = stats_lib.compute_stats(source, max_images=config.stats_images, seed=config.seed)
    except tf.errors.InvalidArgumentError as error:  # on_bad_image=fail: a file did not decode
        raise bad_images.undecodable_error(
            error,
            source,
            "train",
            "training image(s)",
            "training",
            ". Remove or replace them, or leave them out with --on_bad_image=skip.",
        ) from error
    if start_from is not None and inspection.normalizes_input(start_from):
        # The starting model subtracts its own mean (converted pretrained weights take raw
        # 0-255 RGB): the pipeline must not subtract one as well. The colour PCA stays.
        stats = dataclasses.replace(stats, mean_image=np.zeros_like(stats.mean_image))
        print("  the starting model normalises its own input: no mean image is subtracted")
    return stats, True


# What the statistics depend on: a model_dir's statistics serve a new run only if its
# record names the same (a run that trained keeps its own whatever is given).
STATS_KEYS = ("dataset", "validation_split", "seed", "init_from")


def _model_args(config, source, stats, start_from):
    """The `model.AlexNet` arguments of the run; init_from's input normalisation if any."""
    args = dict(
        num_classes=source.num_classes,
        variant=config.variant,
        init=config.init,
        input_scale=run_folder.input_scale_value(config.input_scale, stats),
        input_offset=0.0,
    )
    if start_from is not None:
        rescaling = inspection.layer_or_none(start_from, "input_rescaling")
        args.update(
            input_scale=rescaling.get_config()["scale"] if rescaling else 1.0,
            input_offset=rescaling.get_config()["offset"] if rescaling else 0.0,
        )
    return args


def copy_start_from(run, model):
    """Copies init_from's weights into the new model (all but fc8 when the classes differ)."""
    fc8 = run.start_from.get_layer("fc8")
    new_top = fc8.units != run.source.num_classes
    layer_weights.copy_weights(run.start_from, model, skip=("fc8",) if new_top else ())
    print(
        f"Starting from {run.config.init_from} ({run.config.variant})"
        + (f"; fc8 replaced: {fc8.units} -> {run.source.num_classes} classes" if new_top else ""),
        flush=True,
    )


def print_run(run):
    """Prints what the run will do: the data, the recipe, the strategy and where it writes."""
    config, source = run.config, run.source
    print(
        f"Training AlexNet ({config.variant}) on {source.name}: {source.num_classes} classes, "
        f"{source.num_train} training and {source.num_validation} validation images"
        + (f" ({source.layout})" if source.layout else "")
        + (f", {run.skipped} bad files left out" if run.skipped else ""),
        flush=True,
    )
    start = f"weights from {config.init_from}" if config.init_from else f"init {config.init}"
    print(
        f"  recipe {config.recipe} ({recipes.PURPOSES[config.recipe]}; --recipe="
        f"{'|'.join(recipes.RECIPES)}, each setting's own flag overrides it): "
        f"{config.epochs} epochs of {run.steps_per_epoch} steps, global batch "
        f"{config.batch_size} over {run.strategy.num_replicas_in_sync} replica(s) "
        f"({type(run.strategy).__name__}); {config.optimizer} lr {config.learning_rate:g}"
        + (f", momentum {config.momentum:g}" if config.optimizer == "sgd" else "")
        + ", weight decay "
        f"{config.weight_decay:g}, dropout {config.dropout:g}, {start}, "
        f"input scale {config.input_scale}, precision {config.mixed_precision}"
        + (f" ({config.precision_reason})" if config.precision_reason else "")
        + "; "
        + (
            f"lr /10 after {config.lr_patience} epochs without progress, at most "
            f"{config.lr_max_reductions} times"
            if config.lr_schedule == "plateau"
            else "lr cosine decay to 0 over the run"
        ),
        flush=True,
    )
    if config.batch_size * 10 > source.num_train:
        print(
            f"  warning: the global batch ({config.batch_size}) is more than a tenth of the "
            f"training set ({source.num_train} images): {run.steps_per_epoch} step(s) an "
            "epoch, and the images left over from whole batches are not trained on in that "
            "epoch. A smaller --batch_size gives more, smaller steps.",
            flush=True,
        )
    if config.data_service:
        print(
            f"  training batches from the tf.data service at {config.data_service}, in the "
            "order its workers deliver them",
            flush=True,
        )
    print(
        f"  model_dir {config.model_dir}: checkpoints every {config.checkpoint_every} steps "
        "and at each epoch end; TensorBoard: tensorboard --logdir " + config.model_dir,
        flush=True,
    )
