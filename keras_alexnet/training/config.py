"""A training run's settings: `TrainConfig`, its checks and its flags.

Each setting is described once, in the `help` of its `TrainConfig` field; the flags of
`python -m keras_alexnet.train` are generated from those fields (`define_flags`), with the
recipes' defaults (`recipes`) appended.
"""

import dataclasses
import os

import numpy as np
from absl import flags

from keras_alexnet.data import service as data_service
from keras_alexnet.data import sources
from keras_alexnet.models import alexnet as model_lib
from keras_alexnet.models import variants
from keras_alexnet.runs import dataset as run_dataset
from keras_alexnet.training import precision
from keras_alexnet.training import recipes
from keras_alexnet.weights import catalog

BUILTIN_DATASET = run_dataset.BUILTIN_DATASET
PREPARED = run_dataset.PREPARED  # --dataset=prepared:DIR reads what `prepare` wrote into DIR
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("plateau", "cosine")
DEFAULT_MODEL_DIR = "runs/alexnet"
AUTO_PRECISION = "auto"


def _setting(default, help, flag="string", **flag_args):
    """A `TrainConfig` field: its default, its one description and its flag's kind.

    flag is an absl flag kind ("string", "integer", "float", "boolean", "enum", "list"),
    or None for a setting that has no flag; flag_args go to the flag's definition, except
    flag_default, the flag's default where it differs from the field's.
    """
    return dataclasses.field(default=default, metadata=dict(help=help, flag=flag, **flag_args))


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; each field's `help` metadata describes it.

    The fields of `recipes.Recipe` default to None: they take the recipe's (`recipe`, by
    default `recipes.default_recipe`'s). `python -m keras_alexnet.train --helpfull` prints
    every description with the recipes' defaults.
    """

    model_dir: str = _setting(
        None,
        "Checkpoints, TensorBoard logs, statistics and labels.",
        flag_default=DEFAULT_MODEL_DIR,
    )
    dataset: str = _setting(
        BUILTIN_DATASET,
        "'shapes' (built in, no download), 'folder' (--data_dir with train/ and validation/, "
        "val/ or valid/ class folders, or one folder of class folders with "
        "--validation_split), 'prepared:DIR' (made by python -m keras_alexnet.prepare), "
        "'imagenet2012' (prepared from --manual_dir) or a TFDS NAME[:VERSION] already "
        "prepared in --data_dir.",
    )
    data_dir: str = _setting(
        None, "The image folder, the TFDS data folder, or where the built-in set is written."
    )
    manual_dir: str = _setting(None, "The folder of ILSVRC2012_img_{train,val}.tar (imagenet2012).")
    validation_split: float = _setting(
        None,
        "dataset=folder: validate on this fraction of each class's training images, chosen "
        "by a hash of (seed, path), the same on every rerun.",
        "float",
    )
    variant: str = _setting(
        None,
        "The network variant (default: paper, or init_from's).",
        "enum",
        # Read when the flags are defined: variants registered by then are choices too.
        enum_values=lambda: list(variants.VARIANTS),
    )
    recipe: str = _setting(
        None,
        "The defaults of the settings below that no flag gives: paper (the paper's, section "
        "5), scratch (learns from scratch on small data: Adam, He init, cosine decay) or "
        "finetune (from --init_from: SGD at a tenth of the paper's rate, cosine decay). "
        "Default: finetune with --init_from, scratch for the built-in set and image "
        "folders, paper otherwise; a resumed run keeps its own.",
        "enum",
        enum_values=list(recipes.RECIPES),
    )
    epochs: int = _setting(None, "Epochs to train.", "integer")
    batch_size: int = _setting(None, "The GLOBAL batch, over all replicas.", "integer")
    optimizer: str = _setting(
        None, "sgd (with momentum, the paper's) or adam.", "enum", enum_values=list(OPTIMIZERS)
    )
    learning_rate: float = _setting(None, "The initial learning rate.", "float")
    momentum: float = _setting(None, "SGD's momentum.", "float")
    weight_decay: float = _setting(
        None,
        "The paper's weight decay, coupled into the momentum (an L2 penalty of wd/2).",
        "float",
    )
    dropout: float = _setting(None, "Dropout rate after fc6 and fc7.", "float")
    lr_schedule: str = _setting(
        None,
        "plateau (the paper's): the learning rate is divided by 10 after lr_patience epochs "
        "without a better validation error, at most lr_max_reductions times; cosine: "
        "base * (1 + cos(pi * step / steps)) / 2 over the run's steps.",
        "enum",
        enum_values=list(LR_SCHEDULES),
    )
    lr_patience: int = _setting(
        None, "plateau: epochs without progress before lr /= 10.", "integer"
    )
    lr_max_reductions: int = _setting(None, "plateau: at most this many reductions.", "integer")
    init: str = _setting(
        None,
        "Weight init: the variant's own (paper) or He et al.'s with zero biases (he).",
        "enum",
        enum_values=list(model_lib.INITS),
    )
    input_scale: object = _setting(
        None, 'The input multiplier: a number, or "auto" (1 / the training set\'s pixel std).'
    )
    seed: int = _setting(0, "Seeds the input order, the augmentation and the init.", "integer")
    deterministic: bool = _setting(
        False,
        "Deterministic ops too, so an interrupted and resumed run ends with the same "
        "weights as an uninterrupted one.",
        "boolean",
    )
    checkpoint_every: int = _setting(
        100, "Steps between checkpoints (one is also written at each epoch end).", "integer"
    )
    keep_checkpoints: int = _setting(3, "Checkpoints kept in model_dir.", None)
    input_timeout: float = _setting(
        600.0,
        "Seconds to wait for a training batch (a hung network filesystem, a dead input "
        "worker) before the run writes a checkpoint and stops with a message; 0 waits for "
        "ever. Generous by default: the first batch of a run fills the shuffle buffer.",
        "float",
    )
    data_service: str = _setting(
        None,
        "grpc://HOST:PORT of a tf.data service dispatcher (python -m keras_alexnet.data_service):"
        " its workers, on other machines, decode and augment the training batches, reading "
        "the image or record files at the same paths (split by step for image folders, by "
        "record file for prepared and TFDS datasets). The batches come in the "
        "order the workers deliver them, so --deterministic is refused; a resumed run "
        "restores the weights, optimizer and step exactly, but not exactly the examples the "
        "uninterrupted run would have seen next.",
    )
    log_every: int = _setting(10, "Steps between TensorBoard scalars.", "integer")
    on_bad_image: str = _setting(
        "skip",
        "Corrupt or non-image files: skip (leave out and count them) or fail (stop at the first).",
        "enum",
        enum_values=list(sources.ON_BAD_IMAGE),
    )
    profile_steps: tuple = _setting(
        None, "first,last: the steps to profile into TensorBoard.", "list"
    )
    stats_images: int = _setting(
        10_000, "Training images sampled for the mean image and the colour PCA.", "integer"
    )
    projector_images: int = _setting(
        1000,
        "Validation images whose fc7 vectors go to TensorBoard's projector (0: none).",
        "integer",
    )
    max_steps: int = _setting(None, "Stop after this many steps in all (smoke tests).", "integer")
    init_from: str = _setting(
        None,
        "A .keras AlexNet to start from (converted pretrained weights, or an export), or a "
        "name of pretrained weights (bvlc_alexnet, imagenet, torchvision_alexnet, "
        "IMAGENET1K_V1; fetched and cached on first use): every layer is loaded but fc8 "
        "when the class count differs; the variant and the input normalisation come from "
        "the file.",
    )
    freeze: tuple = _setting(
        (), "Layers left untrained, e.g. conv1,conv2,conv3,conv4,conv5.", "list"
    )
    mixed_precision: str = _setting(
        "none",
        "The layers' compute dtype: none (float32, the paper's arithmetic), float16 (with "
        "dynamic loss scaling) or bfloat16, on hardware that has them; auto: bfloat16 on a "
        "CPU with AMX-BF16 and no GPU, where it trains faster, none otherwise (the run's "
        "first lines say which and why). Variables and checkpoints stay float32.",
        "enum",
        enum_values=[*model_lib.PRECISIONS, AUTO_PRECISION],
        flag_default=AUTO_PRECISION,
    )
    precision_reason: str = _setting(None, "Why auto chose mixed_precision (resolve).", None)
    jit_compile: bool = _setting(
        False, "Compile the training step with XLA (one device).", "boolean"
    )
    verbose: bool = _setting(True, "Show a progress bar.", None)


def resolve(config):
    """Fills the None fields of `config` from its recipe and checks every field.

    Args:
        config: a `TrainConfig`; without a recipe, `recipes.default_recipe`'s.

    Returns:
        A new, complete `TrainConfig`.

    Raises:
        ValueError: naming the first bad field and its value.
    """
    if config.recipe is None:
        config = dataclasses.replace(
            config, recipe=recipes.default_recipe(config.dataset, config.init_from)
        )
    names = list(recipes.RECIPES)
    _check(config, "recipe", config.recipe in names, f"must be one of {names}")
    recipe = recipes.RECIPES[config.recipe]
    filled = {
        f.name: getattr(recipe, f.name)
        for f in dataclasses.fields(recipes.Recipe)
        if getattr(config, f.name) is None
    }
    config = dataclasses.replace(config, **filled)
    if config.mixed_precision == AUTO_PRECISION:
        import tensorflow as tf

        chosen, reason = precision.auto_precision(len(tf.config.list_physical_devices("GPU")))
        config = dataclasses.replace(
            config, mixed_precision=chosen, precision_reason=f"auto: {reason}"
        )
    _check_model(config)
    _check_recipe(config)
    _check_run(config)
    _check_data(config)
    return config


def _check(config, name, ok, requirement):
    """Raises a ValueError naming field `name`, its value and `requirement` unless `ok`."""
    if not ok:
        raise ValueError(f"{name} {requirement}. Received: {name}={getattr(config, name)!r}")


def check_model_dir(model_dir):
    """Raises a ValueError if model_dir names a file: a run's folder cannot be made there."""
    if model_dir and os.path.isfile(model_dir):
        raise ValueError(
            "model_dir must be a folder (an existing run's, or one to create), not a file. "
            f"Received: model_dir={model_dir}"
        )


def _check_model(config):
    """Checks the run's folder and the fields that say which network is built."""
    _check(config, "model_dir", bool(config.model_dir), "must name a folder")
    check_model_dir(config.model_dir)
    _check(
        config,
        "variant",
        config.variant is None or config.variant in variants.VARIANTS,
        f"must be one of {list(variants.VARIANTS)}",
    )
    _check(config, "init", config.init in model_lib.INITS, f"must be one of {model_lib.INITS}")
    _check(
        config,
        "input_scale",
        config.input_scale == "auto"
        or (isinstance(config.input_scale, (int, float)) and config.input_scale > 0),
        'must be a positive number or "auto"',
    )


def _check_recipe(config):
    """Checks the training hyperparameters and the run's step counts."""
    for name in ("epochs", "batch_size", "checkpoint_every", "keep_checkpoints", "log_every"):
        value = getattr(config, name)
        _check(config, name, is_int(value) and value >= 1, "must be >= 1")
    _check(config, "learning_rate", config.learning_rate > 0, "must be > 0")
    _check(config, "optimizer", config.optimizer in OPTIMIZERS, f"must be one of {OPTIMIZERS}")
    _check(config, "momentum", 0 <= config.momentum < 1, "must be in [0, 1)")
    _check(config, "weight_decay", config.weight_decay >= 0, "must be >= 0")
    _check(config, "dropout", 0 <= config.dropout < 1, "must be in [0, 1)")
    _check(
        config, "lr_schedule", config.lr_schedule in LR_SCHEDULES, f"must be one of {LR_SCHEDULES}"
    )
    _check(
        config,
        "lr_patience",
        is_int(config.lr_patience) and config.lr_patience >= 1,
        "must be >= 1",
    )
    _check(config, "lr_max_reductions", config.lr_max_reductions >= 0, "must be >= 0")


def _check_run(config):
    """Checks the seed, the run's limits, its starting point, precision and profiled steps."""
    _check(config, "seed", is_int(config.seed) and config.seed >= 0, "must be an integer >= 0")
    sources.check_on_bad_image(config.on_bad_image)
    _check(config, "stats_images", config.stats_images >= 1, "must be >= 1")
    _check(
        config,
        "input_timeout",
        config.input_timeout >= 0,
        "must be >= 0 seconds (0: no timeout)",
    )
    _check(config, "max_steps", config.max_steps is None or config.max_steps >= 1, "must be >= 1")
    _check(
        config,
        "init_from",
        config.init_from is None
        or str(config.init_from).endswith(".keras")
        or catalog.is_name(config.init_from),
        f"must be the path of a .keras model or one of the names {catalog.names()}",
    )
    _check(
        config, "freeze", isinstance(config.freeze, (list, tuple)), "must be a list of layer names"
    )
    _check(
        config,
        "mixed_precision",
        config.mixed_precision in model_lib.PRECISIONS,
        f"must be one of {list(model_lib.PRECISIONS)}",
    )
    if config.profile_steps is not None:
        steps = tuple(config.profile_steps)
        _check(
            config,
            "profile_steps",
            len(steps) == 2 and 1 <= steps[0] <= steps[1],
            "must be two step numbers first,last with 1 <= first <= last",
        )


def _check_data(config):
    """Checks the fields that say where the images come from (`run_dataset.check`)."""
    run_dataset.check(config.dataset, config.data_dir, config.manual_dir, config.validation_split)
    if config.data_service is not None:
        _check_data_service(config)


def _check_data_service(config):
    data_service.parse_address(config.data_service)
    if config.deterministic:
        raise ValueError(
            "data_service cannot be used with deterministic: the service's workers make the "
            "steps' batches in parallel and the trainer takes them in the order they arrive, "
            "so the batch order is not a function of the seed, and a resumed run would not "
            "end with the weights of an uninterrupted one. Leave out one of them. Received: "
            f"data_service={config.data_service!r}, deterministic=True"
        )


def is_int(value):
    """Whether `value` is an integer (and not a bool)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def load_source(config):
    """The `sources.Source` a resolved config names, checked before any work."""
    return run_dataset.open_source(
        config.dataset,
        config.data_dir,
        config.manual_dir,
        on_bad_image=config.on_bad_image,
        validation_split=config.validation_split,
        seed=config.seed,
    )


def _flag_help(field):
    help = field.metadata["help"]
    if field.name in {f.name for f in dataclasses.fields(recipes.Recipe)}:
        defaults = ", ".join(
            f"{name}'s {getattr(recipe, field.name)}" for name, recipe in recipes.RECIPES.items()
        )
        help += f" Default: the recipe's: {defaults}."
    return help


# The fields that say which images to read, for the tools that read data without training.
DATA_FIELDS = ("dataset", "data_dir", "manual_dir", "validation_split", "on_bad_image", "seed")


def define_data_flags(flag_values=flags.FLAGS):
    """Defines the flags of `DATA_FIELDS` only, as training has them; for entry points only.

    Args:
        flag_values: the `flags.FlagValues` to define them in.
    """
    define_flags(flag_values, names=DATA_FIELDS)


def define_flags(flag_values=flags.FLAGS, names=None):
    """Defines a flag for every `TrainConfig` field that has one; for entry points only.

    Args:
        flag_values: the `flags.FlagValues` to define them in.
        names: define only the flags of these fields; None for all.
    """
    for field in dataclasses.fields(TrainConfig):
        kind = field.metadata["flag"]
        if kind is None or (names is not None and field.name not in names):
            continue
        extra = {
            k: v() if callable(v) else v
            for k, v in field.metadata.items()
            if k not in ("help", "flag", "flag_default")
        }
        default = field.metadata.get("flag_default", field.default)
        if kind == "list" and default is not None:
            default = list(default)
        define = getattr(flags, f"DEFINE_{kind}")
        define(
            name=field.name,
            default=default,
            help=_flag_help(field),
            flag_values=flag_values,
            **extra,
        )


def from_flags(flag_values):
    """The `TrainConfig` that parsed flags (`define_flags`) describe.

    Raises:
        ValueError: a flag value that does not parse (profile_steps, input_scale).
    """
    values = {
        f.name: flag_values[f.name].value
        for f in dataclasses.fields(TrainConfig)
        if f.metadata["flag"] is not None
    }
    if values["profile_steps"]:
        try:
            values["profile_steps"] = tuple(int(s) for s in values["profile_steps"])
        except ValueError:
            raise ValueError(
                "profile_steps must be two step numbers first,last. "
                f"Received: profile_steps={','.join(values['profile_steps'])}"
            ) from None
    else:
        values["profile_steps"] = None
    if values["input_scale"] not in (None, "auto"):
        try:
            values["input_scale"] = float(values["input_scale"])
        except ValueError:
            raise ValueError(
                f'input_scale must be a number or "auto". '
                f"Received: input_scale={values['input_scale']}"
            ) from None
    values["freeze"] = tuple(values["freeze"])
    return TrainConfig(**values)
