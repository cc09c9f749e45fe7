"""The model a tool works on: a training run (--model_dir) or a model file (--model).

`evaluate`, `export` and `predict` take either and then run one code path on a
`LoadedModel`: the Keras model, its class names and the statistics its preprocessing needs.

A model file is a name of pretrained weights (`weights.catalog`: bvlc_alexnet, imagenet,
...), whose converted .keras file is fetched and cached on first use (`weights.cache`), or a
.keras file: one `python -m keras_alexnet.convert` wrote, the
`model.keras` of an exported version (or the version or model folder holding it), or any
`model.save`d AlexNet. What its preprocessing needs travels with it:

  - the input size: the model's input shape;
  - the input normalisation: its "input_rescaling" layer (converted weights carry their mean
    pixel and scale there, and then take raw 0-255 RGB);
  - a training set's mean image: its "subtract_mean" layer (`mean_image`: an exported
    model.keras takes raw 0-255 RGB), else `dataset_stats.npz` beside the file (how
    earlier exports carried it);
  - the class names: its `labels.ClassNames` layer, else `labels.txt` beside the file.
"""

import dataclasses
import os
import re

import keras
import numpy as np
import tensorflow as tf

from keras_alexnet.data import preprocessing
from keras_alexnet.data import stats as stats_lib
from keras_alexnet.models import alexnet as model_lib
from keras_alexnet.models import imagenet_classes
from keras_alexnet.models import inspection
from keras_alexnet.models import labels
from keras_alexnet.models import loading
from keras_alexnet.models import mean_image
from keras_alexnet.runs import folder as run_dir
from keras_alexnet.weights import applications
from keras_alexnet.weights import cache

KERAS_FILE = "model.keras"  # the Keras model of an exported version


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A model ready for a tool.

    Attributes:
        model: the `keras.Model`, from 227x227 pixels (as its preprocessing leaves them)
            to class probabilities.
        class_names: one name per class, in label order.
        stats: the `stats.Stats` whose mean image the preprocessing subtracts (zeros for a
            model that normalises its own input).
        name: a name for the model, e.g. the folder name `export` gives it by default.
        origin: the checkpoint or the file the weights come from.
        step: the checkpoint's training step (0 for a file).
        model_dir: the training run's model_dir, or None for a file.
        run: the run's recorded settings (`run_dir.read_run`), or None for a file.
    """

    model: keras.Model
    class_names: tuple
    stats: stats_lib.Stats
    name: str
    origin: str
    step: int = 0
    model_dir: str = None
    run: dict = None


def load_model_or_run(model=None, model_dir=None, checkpoint=None, mixed_precision="none"):
    """Loads the model of a --model or a --model_dir flag (exactly one of them).

    Args:
        model: a name of pretrained weights (cached .keras file, fetched on first use),
            a .keras file, an exported version folder, or an exported model folder (its
            highest version).
        model_dir: a training run's model_dir.
        checkpoint: with model_dir, a checkpoint path (default: the latest).
        mixed_precision: "none", "float16" or "bfloat16": the compute dtype.

    Returns:
        A `LoadedModel`.

    Raises:
        ValueError: both or neither given, a checkpoint without model_dir, no run or
            checkpoint in model_dir, a file that is missing, not an AlexNet, or lacks the
            mean image its input needs; named weights that cannot be fetched
            (`downloads.DownloadError`).
    """
    if (model is None) == (model_dir is None):
        raise ValueError(
            "Give exactly one of model (a .keras file) and model_dir (a training run). "
            f"Received: model={model!r}, model_dir={model_dir!r}"
        )
    policy = model_lib.precision_policy(mixed_precision)
    if model_dir is not None:
        return _from_run(model_dir, checkpoint, policy)
    if checkpoint:
        raise ValueError(
            "checkpoint names a checkpoint of a training run (model_dir), not of a model "
            f"file. Received: checkpoint={checkpoint!r} with model={model!r}"
        )
    return _from_file(cache.resolve(model), policy)


def _from_run(model_dir, checkpoint, policy):
    checkpoint = run_dir.readable_checkpoint(model_dir, checkpoint)
    model, run = run_dir.restore_model(model_dir, checkpoint, dtype_policy=policy)
    stats = run_dir.read_stats(model_dir)
    if stats is None:
        raise ValueError(
            f"model_dir holds no {run_dir.STATS_FILE} (the mean image its preprocessing "
            f"needs). Received: model_dir={model_dir}"
        )
    number = checkpoint.rsplit("-", 1)[-1]
    return LoadedModel(
        model=model,
        # Folders named by synset ("n02123045"): the readable names, as converted models have.
        class_names=tuple(imagenet_classes.with_readable_names(run["class_names"])),
        stats=stats,
        name=os.path.basename(os.path.normpath(model_dir)),
        origin=checkpoint,
        step=int(number) if number.isdigit() else 0,
        model_dir=model_dir,
        run=run,
    )


def keras_file(path):
    """The .keras file a --model path names.

    Args:
        path: a .keras file, an exported version folder (holding model.keras) or an
            exported model folder (its highest numeric version).

    Raises:
        ValueError: if there is no such file.
    """
    path = os.fspath(path)
    if tf.io.gfile.isdir(path) and not tf.io.gfile.exists(os.path.join(path, KERAS_FILE)):
        versions = [
            int(n.strip("/")) for n in tf.io.gfile.listdir(path) if re.fullmatch(r"\d+/?", n)
        ]
        if versions:
            path = os.path.join(path, str(max(versions)))
    if tf.io.gfile.isdir(path):
        path = os.path.join(path, KERAS_FILE)
    if not path.endswith(".keras") or not tf.io.gfile.exists(path):
        raise ValueError(
            "model must be a .keras file, an exported version folder (with "
            f"{KERAS_FILE}) or a model folder of versions. Received: model={path!r}"
        )
    return path


def _from_file(path, policy):
    path = keras_file(path)
    # An exported model.keras subtracts the mean image itself; the tools' preprocessing
    # subtracts it instead, the right window for each of the paper's ten patches.
    model, mean = mean_image.split(loading.load_keras(path))
    if inspection.layer_or_none(model, "fc8") is None:
        raise ValueError(
            f"model has no fc8: a tool needs an AlexNet with its classifier. Received: {path}"
        )
    class_names = _class_names(model, os.path.dirname(path))
    stats = _stats(model, os.path.dirname(path), path, mean)
    if policy is not None:
        model = _rebuilt(model, path, policy)
    return LoadedModel(
        model=model,
        class_names=tuple(class_names),
        stats=stats,
        name=_name(path),
        origin=path,
    )


def _rebuilt(model, path, policy):
    """The file's model built again under a dtype policy, with the file's weights."""
    variant = inspection.variant_of(model)
    if variant is None:
        raise ValueError(
            f"mixed_precision needs an AlexNet of a known variant. Received: model={path}"
        )
    fc8 = model.get_layer("fc8")
    return applications.AlexNet(
        fc8.units,
        variant=variant,
        input_shape=model.input_shape[1:],
        classifier_activation=fc8.get_config()["activation"],
        weights=path,
        dtype_policy=policy,
        name=model.name,
    )


def _class_names(model, folder):
    """The model's own class names, else labels.txt beside it, else the class indices."""
    names = labels.class_names_of(model)
    if names is None and tf.io.gfile.exists(os.path.join(folder, run_dir.LABELS_FILE)):
        names = run_dir.read_labels(folder)
    classes = model.output_shape[-1]
    if names is None:
        return [str(i) for i in range(classes)]
    if len(names) != classes:
        raise ValueError(
            f"{os.path.join(folder, run_dir.LABELS_FILE)} names {len(names)} classes; the "
            f"model has {classes}."
        )
    return names


def _stats(model, folder, path, mean=None):
    """The file's own mean image (with dataset_stats.npz's PCA), else dataset_stats.npz
    beside the file, else no mean image for a self-normalising model."""
    stats = run_dir.read_stats(folder)
    if mean is not None:
        pca = stats.pca if stats is not None else stats_lib.IMAGENET_PCA
        return stats_lib.Stats(mean, pca.eigval, pca.eigvec)
    if stats is not None:
        return stats
    if inspection.normalizes_input(model):
        size = preprocessing.IMAGE_SIZE
        pca = stats_lib.IMAGENET_PCA
        return stats_lib.Stats(np.zeros((size, size, 3), np.float32), pca.eigval, pca.eigvec)
    raise ValueError(
        f"{path} takes mean-subtracted pixels, and neither it nor its folder holds the mean "
        f"image ({run_dir.STATS_FILE}). Export it from its training run "
        "(python -m keras_alexnet.export --model_dir=...), or save it with the normalisation "
        f"inside (AlexNet(input_offset=...)). Received: model={path}"
    )


def _name(path):
    """A model's name: its folder's for an exported saved_models/<name>/<version>/model.keras."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.basename(path) == KERAS_FILE and os.path.basename(folder).isdigit():
        return os.path.basename(os.path.dirname(folder))
    return os.path.splitext(os.path.basename(path))[0]
