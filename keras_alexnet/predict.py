"""A quick look at an exported model's predictions: `python -m keras_alexnet.predict`.

    python -m keras_alexnet.predict --model saved_models/alexnet image.jpg other.png

prints the five most probable labels of each image. `--model` is a model's folder (its
highest version is used), one version folder, or a model file of a version folder:
model.keras, a LiteRT .tflite or an ONNX .onnx (see formats.py). An image that does not
decode is reported by name; the others are still predicted, and the exit status is 1.
"""

import os
import sys

import tensorflow as tf
from absl import app
from absl import flags

from keras_alexnet import cli
from keras_alexnet import export as export_lib
from keras_alexnet import formats
from keras_alexnet import input_pipeline


def load(path):
    """Loads an exported SavedModel: a version folder, or a model folder (its latest)."""
    if not tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        path = export_lib.latest_version(path)
    return tf.saved_model.load(path), path


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
            results.append((path, None, input_pipeline.error_summary(message)))
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
        "An exported model folder, one of its versions, or a model file of a version: "
        ".keras, .tflite (LiteRT) or .onnx.",
    )
    flags.mark_flag_as_required("model")


def main(argv):
    paths = argv[1:]
    if not paths:
        raise app.UsageError("Name one or more image files after the flags.")
    try:
        if formats.is_model_file(FLAGS.model):
            serving_fn, version = formats.serving_function(FLAGS.model), FLAGS.model
        else:
            model, version = load(FLAGS.model)
            serving_fn = model.signatures["serving_default"]
    except (ValueError, OSError, ImportError) as error:
        print(f"error: cannot load --model={FLAGS.model}: {error}", file=sys.stderr)
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


if __name__ == "__main__":
    cli.run(main, define_flags)
