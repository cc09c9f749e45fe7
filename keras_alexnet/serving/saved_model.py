"""The SavedModel and .keras export of a trained model (`python -m keras_alexnet.export`).

Writes `OUTPUT_DIR/<name>/<version>/`, the layout TensorFlow Serving watches, with a new
numeric version each time (an existing version is never touched):

    saved_model.pb, variables/   the SavedModel, with two signatures:
        serving_default  images: tf.string [batch] of image files (JPEG, PNG, BMP, GIF,
                         WebP) -> probabilities [batch, classes], top5_indices
                         [batch, 5], top5_labels [batch, 5]; decoding and the
                         evaluation preprocessing run inside the graph.
        predict_pixels   rgb: float32 [batch, 227, 227, 3], raw RGB 0-255 (the central
                         patch of the 256x256 image; the training mean image is
                         subtracted inside) -> the same outputs. (0.1.0's took
                         `pixels`, with the mean already subtracted.)
    model.keras          the Keras model: raw RGB 0-255 pixels [batch, 227, 227, 3]
                         in (the training mean image subtracted inside, its first
                         layer), probabilities out, its class names inside; for
                         `import keras_alexnet; keras.models.load_model(path)` and
                         the tools' --model.
    labels.txt           class names in label order.
    dataset_stats.npz    the training set's mean image and colour PCA.
    model*.tflite, model.onnx   with --format=litert (--quantize=...) and --format=onnx:
                         the same network for LiteRT and ONNX runtimes, raw RGB in
                         (uint8 for the int8 file; see formats.py).
    keras_hub/           with --format=keras_hub: a KerasHub preset folder, for
                         `keras_hub.models.ImageClassifier.from_preset` (hub/presets.py).

The graph holds standard TensorFlow ops only: no XLA compilation, which TensorFlow
Serving on GPU cannot load.
"""

import os
import re
import shutil

import keras
import numpy as np
import tensorflow as tf

from keras_alexnet.data import folder_sources
from keras_alexnet.data import preprocessing
from keras_alexnet.models import labels
from keras_alexnet.models import mean_image
from keras_alexnet.runs import dataset as run_dataset
from keras_alexnet.runs import folder as run_dir
from keras_alexnet.runs import model_files
from keras_alexnet.runs import write_errors
from keras_alexnet.serving import formats as formats_lib
from keras_alexnet.serving import runtimes

KERAS_FILE = model_files.KERAS_FILE
RAW_INPUT = runtimes.RAW_INPUT  # predict_pixels' input: raw RGB 0-255 pixels
TOP_K = 5


def _versions(base):
    if not tf.io.gfile.isdir(base):
        return []
    return sorted(int(n) for n in tf.io.gfile.listdir(base) if re.fullmatch(r"\d+/?", n.strip()))


def latest_version(base):
    """The path of the highest numeric version under `base`, as TF Serving would pick it."""
    versions = _versions(base)
    if not versions:
        hint = ""
        if tf.io.gfile.exists(os.path.join(base, run_dir.RUN_FILE)) or tf.io.gfile.isdir(
            os.path.join(base, run_dir.CHECKPOINTS)
        ):
            hint = (
                f" It is a training run's model_dir: pass it as --model_dir={base} (its latest "
                f"checkpoint), or export it first (python -m keras_alexnet.export "
                f"--model_dir={base})."
            )
        raise ValueError(f"No exported version (a numeric subfolder) under {base}.{hint}")
    return os.path.join(base, str(versions[-1]))


def serving_functions(model, stats, class_names):
    """The two serving functions of an exported model.

    Args:
        model: a Keras model from preprocessed 227x227 pixels (the training mean
            subtracted, as `model_files.LoadedModel` holds it) to probabilities.
        stats: the training set's `stats.Stats`.
        class_names: label names in label order.

    Returns:
        (from_bytes, from_pixels): functions of a string batch and of a batch of raw RGB
        0-255 pixels (the central patch; the mean image is subtracted inside,
        `raw_pixels_model`), each returning a dict of probabilities, top5_indices and
        top5_labels.
    """
    labels = tf.constant(list(class_names))
    k = min(TOP_K, len(class_names))
    crop = model.input_shape[1]
    size = stats.mean_image.shape[0]
    model = raw_pixels_model(model, stats)

    def outputs(probs):
        probs = tf.cast(probs, tf.float32)
        top = tf.math.top_k(probs, k)
        return {
            "probabilities": probs,
            "top5_indices": top.indices,
            "top5_labels": tf.gather(labels, top.indices),
        }

    def from_pixels(rgb):  # the signature's input is named after the argument
        return outputs(model(rgb, training=False))

    def from_bytes(images):
        pixels = tf.map_fn(
            lambda encoded: preprocessing.central_patch(encoded, size=size, crop=crop),
            images,
            fn_output_signature=tf.TensorSpec([crop, crop, 3], tf.float32),
        )
        return from_pixels(pixels)

    return from_bytes, from_pixels


def export(
    model,
    stats,
    class_names,
    output_dir,
    name,
    formats=("saved_model",),
    quantize=("none",),
    calibration=None,
):
    """Writes a new version of an exported model; never overwrites an existing one.

    Args:
        model: the Keras model (mean-subtracted pixels in, probabilities out); every file
            written takes raw RGB 0-255 pixels, the mean image inside (`raw_pixels_model`).
        stats: the training set's `stats.Stats`.
        class_names: label names in label order.
        output_dir: the base folder, e.g. "saved_models".
        name: the model's name: its folder under output_dir.
        formats: from `formats.EXPORT_FORMATS`. The SavedModel (and model.keras) is
            written whatever they are: the version folder is one TensorFlow Serving loads.
        quantize: the LiteRT files' quantizations, from `formats.QUANTIZATIONS`.
        calibration: float32 raw pixels [n, 227, 227, 3] for int8 quantization
            (`formats.calibration_pixels`).

    Returns:
        The path of the new version folder.

    Raises:
        write_errors.WriteFailed: the version could not be written (a full disk, a
            read-only folder); nothing of it is left.
    """
    formats, quantize = formats_lib.check_formats(formats, quantize)
    _check_name_and_classes(model, class_names, name)
    base = os.path.join(output_dir, name)
    version = _next_version(base)
    final = os.path.join(base, str(version))
    # Written aside and renamed into place, so that a server watching `base` never sees a
    # half-written version, and an interrupted export leaves no numeric folder behind.
    partial = os.path.join(base, f".partial-{version}-{os.getpid()}")
    archive = _serving_archive(model, stats, class_names)
    try:
        archive.write_out(partial, verbose=False)
        _write_beside(partial, model, stats, class_names)
        formats_lib.write(raw_pixels_model(model, stats), partial, formats, quantize, calibration)
        if "keras_hub" in formats:
            from keras_alexnet.hub import presets

            presets.save_preset(
                keras_model(model, stats, class_names), os.path.join(partial, presets.FOLDER)
            )
        if tf.io.gfile.exists(final):
            raise ValueError(f"Export version {final} appeared meanwhile; not overwriting it.")
        tf.io.gfile.rename(partial, final)
    except write_errors.WRITE_ERRORS as error:
        raise write_errors.failed(
            f"export version {version}",
            partial,
            error,
            "What it wrote is removed; the existing versions are untouched.",
        ) from error
    except write_errors.WriteFailed as error:  # the statistics, named by run_dir
        raise write_errors.WriteFailed(
            f"{error} What export version {version} wrote is removed; the existing versions "
            "are untouched."
        ) from error
    finally:
        if tf.io.gfile.exists(partial):
            shutil.rmtree(partial, ignore_errors=True)
    return final


def _check_name_and_classes(model, class_names, name):
    if not name or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
        raise ValueError(f"name must be a plain folder name. Received: name={name!r}")
    if model.output_shape[-1] != len(class_names):
        raise ValueError(
            f"The model has {model.output_shape[-1]} classes but {len(class_names)} labels "
            f"were given. Received: {len(class_names)} class_names"
        )


def _next_version(base):
    """Creates the model folder `base` if needed; the number its next version takes."""
    try:
        tf.io.gfile.makedirs(base)
    except write_errors.WRITE_ERRORS as error:
        raise write_errors.failed("the export folder", base, error) from error
    return (_versions(base) or [0])[-1] + 1


def _serving_archive(model, stats, class_names):
    """The `keras.export.ExportArchive` of the model's two signatures (see the module's
    docstring), ready to be written.

    The model is not `track`ed: the archive would then save each weight twice, once as
    the Keras variable and once as the TensorFlow variable the signatures read (the
    paper's network: 488 MB of variables for 244 MB of weights). The signatures' own
    variables are saved once, and listed under `variables`, `trainable_variables` and
    `non_trainable_variables` of the loaded SavedModel as `track` would list them.
    """
    from_bytes, from_pixels = serving_functions(model, stats, class_names)
    crop = model.input_shape[1]
    archive = keras.export.ExportArchive()
    endpoints = [
        archive.add_endpoint(
            "serving_default", from_bytes, input_signature=[tf.TensorSpec([None], tf.string)]
        ),
        archive.add_endpoint(
            "predict_pixels",
            from_pixels,
            input_signature=[tf.TensorSpec([None, crop, crop, 3], tf.float32, name=RAW_INPUT)],
        ),
    ]
    used = {}
    for endpoint in endpoints:
        for variable in endpoint.get_concrete_function().variables:
            used.setdefault(id(variable), variable)
    used = list(used.values())
    archive.add_variable_collection("variables", used)
    archive.add_variable_collection("trainable_variables", [v for v in used if v.trainable])
    archive.add_variable_collection("non_trainable_variables", [v for v in used if not v.trainable])
    return archive


def raw_pixels_model(model, stats):
    """The model every exported file holds: raw RGB 0-255 pixels in.

    The training set's mean image goes inside (`mean_image.with_mean`), but not for a
    model that normalises its own input, whose mean image is zeros, nor for one that
    already subtracts it.
    """
    if np.any(stats.mean_image) and mean_image.find(model) is None:
        model = mean_image.with_mean(model, stats.mean_image)
    return model


def keras_model(model, stats, class_names):
    """The model an export saves as model.keras: raw RGB 0-255 pixels in, the mean image
    (`raw_pixels_model`) and the class names inside."""
    return labels.with_class_names(raw_pixels_model(model, stats), class_names)


def _write_beside(folder, model, stats, class_names):
    """Writes model.keras, labels.txt and dataset_stats.npz beside the SavedModel."""
    keras_model(model, stats, class_names).save(os.path.join(folder, KERAS_FILE))
    run_dir.write_labels(folder, class_names)
    run_dir.write_stats(folder, stats)


def export_run(
    model_dir=None,
    output_dir="saved_models",
    name=None,
    checkpoint=None,
    mixed_precision="none",
    formats=("saved_model",),
    quantize=("none",),
    calibration_images=200,
    data_dir=None,
    *,
    model=None,
):
    """Exports a training run's checkpoint (default: the latest), or a model file, as a new
    version.

    The signatures take and return float32 whatever `mixed_precision` (the compute dtype
    inside, "none", "float16" or "bfloat16") is.

    Args:
        model_dir: a training run's model_dir; or
        model: a .keras file or exported model folder (see `model_files.load_model_or_run`).
        output_dir, name: as for `export`; name defaults to model_dir's name, or the
            file's (bvlc_alexnet.keras -> bvlc_alexnet).
        checkpoint: with model_dir, a checkpoint path.
        mixed_precision: the compute dtype inside.
        formats, quantize: as `export`.
        calibration_images: for int8, how many training images calibrate it.
        data_dir: for int8, where the run's images are, if not where the run found them
            (with a model file: an image folder to calibrate on, of class folders or
            with train/, validation/ or test/ (`folder_sources.evaluation_source`)).

    Returns:
        The path of the new version folder.
    """
    formats, quantize = formats_lib.check_formats(formats, quantize)
    if mixed_precision != "none" and {"litert", "onnx"} & set(formats):
        raise ValueError(
            "LiteRT and ONNX files are converted from the float32 network (--quantize "
            "makes smaller ones): export them without --mixed_precision. Received: "
            f"mixed_precision={mixed_precision!r}"
        )
    loaded = model_files.load_model_or_run(model, model_dir, checkpoint, mixed_precision)
    calibration = None
    if "int8" in quantize and "litert" in formats:
        purpose = "int8 quantization calibrates on"
        split = "train"
        if model is None:
            source = run_dataset.run_source(run_dir.read_run(model_dir), data_dir, purpose)
        elif data_dir:
            # Any folder of class folders: its training images, else the others.
            source = folder_sources.evaluation_source(data_dir, split=None)
            split = next(s for s in ("train", "validation", "test") if source.num_examples(s))
        else:
            raise ValueError(
                f"{purpose} training images: with --model, name an image folder with "
                f"--data_dir. Received: model={model!r}, data_dir=None"
            )
        calibration = formats_lib.calibration_pixels(
            source, loaded.stats, calibration_images, crop=loaded.model.input_shape[1], split=split
        )
    return export(
        loaded.model,
        loaded.stats,
        loaded.class_names,
        output_dir,
        name or loaded.name,
        formats,
        quantize,
        calibration,
    )
