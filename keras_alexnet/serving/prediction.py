"""A quick look at a model's predictions: `python -m keras_alexnet.predict`.

    python -m keras_alexnet.predict --model saved_models/alexnet image.jpg other.png
    python -m keras_alexnet.predict --model bvlc_alexnet.keras image.jpg
    python -m keras_alexnet.predict --model_dir runs/alexnet image.jpg

prints the five most probable labels of each image. `--model` is an exported model's folder
(its highest version is used), one version folder, a .keras file (converted, exported or
`model.save`d, with its preprocessing and class names: `model_files`), or a LiteRT .tflite
or ONNX .onnx file of a version folder (`formats`); `--model_dir` a training run. The images
go through the serving signature's function (the SavedModel's own,
`export.serving_functions` of a Keras model, or the same preprocessing before a LiteRT or
ONNX runtime). An image that does not
decode is reported by name; the others are still predicted, and the exit status is 1.
"""

import os
import sys

import tensorflow as tf
from absl import app
from absl import flags

from keras_alexnet.data import bad_images
from keras_alexnet.serving import formats
from keras_alexnet.serving import model_files
from keras_alexnet.serving import saved_model as export_lib


def load(path):
    """Loads an exported SavedModel: a version folder, or a model folder (its latest)."""
    if not tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        path = export_lib.latest_version(path)
    return tf.saved_model.load(path), path


def serving_function(model=None, model_dir=None, checkpoint=None):
    """The function predict runs on image bytes, and what it came from.

    Args:
        model: an exported SavedModel (a version or model folder), a .keras file, or a
            .tflite or .onnx file of a version folder.
        model_dir: a training run (instead of model).
        checkpoint: with model_dir, a checkpoint path.

    Returns:
        (fn, origin): fn(images=<tf.string batch>) returns the serving signature's dict
        (probabilities, top5_indices, top5_labels); origin is the version folder, file or
        checkpoint.
    """
    if model is not None and formats.is_model_file(model) and not str(model).endswith(".keras"):
        return formats.serving_function(model), model
    if model is not None and not str(model).endswith(".keras"):
        saved_model, version = load(model)
        return saved_model.signatures["serving_default"], version
    loaded = model_files.load(model, model_dir, checkpoint)
    from_bytes, _ = export_lib.serving_functions(loaded.model, loaded.stats, loaded.class_names)
    fn = tf.function(from_bytes, input_signature=[tf.TensorSpec([None], tf.string)])
    return fn, loaded.origin


def predict_files(serving_fn, paths):
    """Runs the serving signature on each file.

    Returns:
        A list of (path, result or None, error message or None); result is a list of
        (label, probability) pairs, most probable first.
    """
    results = []
    for path in paths:
        try:
            with tf.io.gfile.GFile(path, "rb") as f:
                data = f.read()
            out = serving_fn(images=tf.constant([data]))
        except (tf.errors.OpError, OSError) as error:
            message = getattr(error, "message", None) or str(error)
            results.append((path, None, bad_images.error_summary(message)))
            continue
        labels = [label.decode() for label in out["top5_labels"].numpy()[0]]
        probs = out["probabilities"].numpy()[0]
        indices = out["top5_indices"].numpy()[0]
        results.append((path, [(lab, float(probs[i])) for lab, i in zip(labels, indices)], None))
    return results


FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags; only the entry point calls this."""
    flags.DEFINE_string(
        "model",
        None,
        "An exported model folder or one of its versions, a .keras file (from convert, "
        "export or model.save), or a .tflite or .onnx file of a version folder. Or --model_dir.",
    )
    flags.DEFINE_string("model_dir", None, "A training run (its latest checkpoint). Or --model.")
    flags.DEFINE_string("checkpoint", None, "With --model_dir: a checkpoint (default: the latest).")
    flags.mark_flags_as_mutual_exclusive(["model", "model_dir"], required=True)


def main(argv):
    paths = argv[1:]
    if not paths:
        raise app.UsageError("Name one or more image files after the flags.")
    try:
        serving_fn, version = serving_function(FLAGS.model, FLAGS.model_dir, FLAGS.checkpoint)
    except (ValueError, OSError, ImportError) as error:
        given = f"--model={FLAGS.model}" if FLAGS.model else f"--model_dir={FLAGS.model_dir}"
        print(f"error: cannot load {given}: {error}", file=sys.stderr)
        return 1
    print(f"Model {version}", flush=True)
    failed = 0
    for path, result, error in predict_files(serving_fn, paths):
        if error:
            failed += 1
            print(
                f"error: {path}: not a readable JPEG, PNG, BMP, GIF or WebP image ({error})",
                file=sys.stderr,
            )
            continue
        print(path)
        for label, prob in result:
            print(f"  {prob:7.2%}  {label}")
    return 1 if failed else 0
