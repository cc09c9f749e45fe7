"""Export for serving and reuse: `python -m keras_alexnet.export`.

    python -m keras_alexnet.export --model_dir=runs/alexnet             # a training run
    python -m keras_alexnet.export --model=pretrained/bvlc_alexnet.keras  # a model file

Writes `OUTPUT_DIR/<name>/<version>/`, the layout TensorFlow Serving watches, with a new
numeric version each time (an existing version is never touched):

    saved_model.pb, variables/   the SavedModel, with two signatures:
        serving_default  images: tf.string [batch] of image files (JPEG, PNG, BMP, GIF,
                         WebP) -> probabilities [batch, classes], top5_indices
                         [batch, 5], top5_labels [batch, 5]; decoding and the
                         evaluation preprocessing run inside the graph.
        predict_pixels   pixels: float32 [batch, 227, 227, 3], already preprocessed (the
                         training mean subtracted) -> the same outputs.
    model.keras          the Keras model (preprocessed pixels in, probabilities out,
                         its class names inside), for `import keras_alexnet;
                         keras.models.load_model(path)` and the tools' --model.
    labels.txt           class names in label order.
    dataset_stats.npz    the training set's mean image and colour PCA.
    model*.tflite, model.onnx   with --format=litert (--quantize=...) and --format=onnx:
                         the same network for LiteRT and ONNX runtimes (see formats.py).

The graph holds standard TensorFlow ops only: no XLA compilation, which TensorFlow
Serving on GPU cannot load.
"""

import os
import re
import shutil
import sys

import keras
import tensorflow as tf
from absl import app
from absl import flags

from keras_alexnet import cli
from keras_alexnet.data import folder_sources
from keras_alexnet.data import preprocessing
from keras_alexnet.models import alexnet as model_lib
from keras_alexnet.models import labels
from keras_alexnet.serving import formats as formats_lib
from keras_alexnet.serving import model_files
from keras_alexnet.training import config as config_lib
from keras_alexnet.training import write_errors
from keras_alexnet.training.run import folder as run_dir

KERAS_FILE = model_files.KERAS_FILE
TOP_K = 5


def _versions(base):
    if not tf.io.gfile.isdir(base):
        return []
    return sorted(int(n) for n in tf.io.gfile.listdir(base) if re.fullmatch(r"\d+/?", n.strip()))


def latest_version(base):
    """The path of the highest numeric version under `base`, as TF Serving would pick it."""
    versions = _versions(base)
    if not versions:
        raise ValueError(f"No exported version (a numeric subfolder) under {base}.")
    return os.path.join(base, str(versions[-1]))


def serving_functions(model, stats, class_names):
    """The two serving functions of an exported model.

    Args:
        model: a Keras model from preprocessed 227x227 pixels to probabilities.
        stats: the training set's `stats.Stats`.
        class_names: label names in label order.

    Returns:
        (from_bytes, from_pixels): functions of a string batch and of a pixel batch, each
        returning a dict of probabilities, top5_indices and top5_labels.
    """
    labels = tf.constant(list(class_names))
    k = min(TOP_K, len(class_names))
    crop = model.input_shape[1]

    def outputs(probs):
        probs = tf.cast(probs, tf.float32)
        top = tf.math.top_k(probs, k)
        return {
            "probabilities": probs,
            "top5_indices": top.indices,
            "top5_labels": tf.gather(labels, top.indices),
        }

    def from_pixels(pixels):
        return outputs(model(pixels, training=False))

    def from_bytes(images):
        pixels = tf.map_fn(
            lambda encoded: preprocessing.preprocess_for_eval(encoded, stats, crop=crop),
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
        model: the Keras model (preprocessed pixels in, probabilities out).
        stats: the training set's `stats.Stats`.
        class_names: label names in label order.
        output_dir: the base folder, e.g. "saved_models".
        name: the model's name: its folder under output_dir.
        formats: from `formats.FORMATS`. The SavedModel (and model.keras) is written
            whatever they are: the version folder is one TensorFlow Serving loads.
        quantize: the LiteRT files' quantizations, from `formats.QUANTIZATIONS`.
        calibration: float32 preprocessed pixels [n, 227, 227, 3] for int8 quantization.

    Returns:
        The path of the new version folder.

    Raises:
        write_errors.WriteFailed: the version could not be written (a full disk, a
            read-only folder); nothing of it is left.
    """
    formats, quantize = formats_lib.check_formats(formats, quantize)
    if not name or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
        raise ValueError(f"name must be a plain folder name. Received: name={name!r}")
    if model.output_shape[-1] != len(class_names):
        raise ValueError(
            f"The model has {model.output_shape[-1]} classes but {len(class_names)} labels "
            f"were given. Received: {len(class_names)} class_names"
        )
    base = os.path.join(output_dir, name)
    try:
        tf.io.gfile.makedirs(base)
    except write_errors.WRITE_ERRORS as error:
        raise write_errors.failed("the export folder", base, error) from error
    version = (_versions(base) or [0])[-1] + 1
    final = os.path.join(base, str(version))
    # Written aside and renamed into place, so that a server watching `base` never sees a
    # half-written version, and an interrupted export leaves no numeric folder behind.
    partial = os.path.join(base, f".partial-{version}-{os.getpid()}")
    from_bytes, from_pixels = serving_functions(model, stats, class_names)
    crop = model.input_shape[1]
    archive = keras.export.ExportArchive()
    archive.track(model)
    serve = archive.add_endpoint(
        "serving_default", from_bytes, input_signature=[tf.TensorSpec([None], tf.string)]
    )
    pixels = archive.add_endpoint(
        "predict_pixels",
        from_pixels,
        input_signature=[tf.TensorSpec([None, crop, crop, 3], tf.float32)],
    )
    del serve, pixels
    try:
        archive.write_out(partial, verbose=False)
        labels.with_class_names(model, class_names).save(os.path.join(partial, KERAS_FILE))
        with tf.io.gfile.GFile(os.path.join(partial, run_dir.LABELS_FILE), "w") as f:
            f.write("\n".join(class_names) + "\n")
        run_dir.write_stats(partial, stats)
        formats_lib.write(model, partial, formats, quantize, calibration)
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
        model: a .keras file or exported model folder (see `model_files.load`).
        output_dir, name: as for `export`; name defaults to model_dir's name, or the
            file's (bvlc_alexnet.keras -> bvlc_alexnet).
        checkpoint: with model_dir, a checkpoint path.
        mixed_precision: the compute dtype inside.
        formats, quantize: as `export`.
        calibration_images: for int8, how many training images calibrate it.
        data_dir: for int8, where the run's images are, if not where the run found them
            (with a model file: an image folder to calibrate on).

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
    loaded = model_files.load(model, model_dir, checkpoint, mixed_precision)
    calibration = None
    if "int8" in quantize and "litert" in formats:
        purpose = "int8 quantization calibrates on"
        if model is None:
            source = run_source(run_dir.read_run(model_dir), model_dir, data_dir, purpose)
        elif data_dir:
            source = folder_sources.folder_source(data_dir)
        else:
            raise ValueError(
                f"{purpose} training images: with --model, name an image folder with "
                f"--data_dir. Received: model={model!r}, data_dir=None"
            )
        calibration = formats_lib.calibration_pixels(
            source, loaded.stats, calibration_images, crop=loaded.model.input_shape[1]
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


def run_source(run, model_dir, data_dir=None, purpose="this needs"):
    """The images of a training run: its dataset, where it was found or in `data_dir`.

    Args:
        run: the run's settings (`run_dir.read_run`).
        model_dir: the run's model_dir.
        data_dir: where the images are now, if not where the run found them.
        purpose: what needs them, for the error ("int8 quantization calibrates on").

    Raises:
        ValueError: the images are not there, or their classes are not the run's.
    """
    config = config_lib.TrainConfig(
        model_dir=model_dir,
        dataset=run.get("dataset_flag", config_lib.BUILTIN_DATASET),
        data_dir=data_dir or run.get("data_dir"),
        manual_dir=run.get("manual_dir"),
    )
    try:
        source = config_lib.load_source(config_lib.resolve(config))
    except (ValueError, OSError, tf.errors.OpError) as error:
        raise ValueError(
            f"{purpose} the run's images, which cannot be read ({error}). Point "
            f"--data_dir at them. Received: data_dir={config.data_dir}"
        ) from error
    if list(source.class_names) != list(run["class_names"]):
        raise ValueError(
            f"The images' classes differ from the run's. Received: data_dir="
            f"{config.data_dir} with classes {list(source.class_names)[:3]}..."
        )
    return source


FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags; only the entry point calls this."""
    cli.define_model_flags("The training run to export.", model_lib.PRECISIONS)
    flags.DEFINE_string("output_dir", "saved_models", "Base folder of exported models.")
    flags.DEFINE_string(
        "name", None, "The model's folder name (default: model_dir's name, or the file's)."
    )
    flags.DEFINE_list(
        "format",
        ["saved_model"],
        "Formats to write, comma-separated: saved_model (always written), litert, onnx "
        f"(needs {formats_lib.ONNX_EXTRA}).",
    )
    flags.DEFINE_list(
        "quantize",
        ["none"],
        "LiteRT files to write, comma-separated: none (float32), float16, dynamic, int8.",
    )
    flags.DEFINE_integer("calibration_images", 200, "For int8: training images to calibrate on.")
    flags.DEFINE_string(
        "data_dir", None, "For int8: the run's images, if moved since (with --model: a folder)."
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        path = export_run(
            FLAGS.model_dir,
            FLAGS.output_dir,
            FLAGS.name,
            FLAGS.checkpoint,
            FLAGS.mixed_precision,
            formats=FLAGS.format,
            quantize=FLAGS.quantize,
            calibration_images=FLAGS.calibration_images,
            data_dir=FLAGS.data_dir,
            model=FLAGS.model,
        )
    except (ValueError, ImportError, write_errors.WriteFailed) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    base = os.path.abspath(os.path.dirname(path))
    print(f"Exported {path}", flush=True)
    print(
        f"  serve:   tensorflow_model_server --model_base_path={base} "
        f"--model_name={os.path.basename(base)} --rest_api_port=8501"
    )
    print(f"  predict: python -m keras_alexnet.predict --model {os.path.dirname(path)} IMAGE...")
    for file in sorted(os.listdir(path)):
        if file != KERAS_FILE and formats_lib.is_model_file(file):
            print(f"           python -m keras_alexnet.predict --model {path}/{file} IMAGE...")
    return 0
