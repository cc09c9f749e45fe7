"""Top-5 predictions for image files (`python -m keras_alexnet.predict`).

The model is an exported model's folder (its highest version is used), one version folder,
a .keras file (converted, exported or `model.save`d, with its preprocessing and class
names: `model_files`), a LiteRT .tflite or ONNX .onnx file of a version folder (`formats`),
or a training run. The images go through the serving signature's function (the
SavedModel's own, `saved_model.serving_functions` of a Keras model, or the same
preprocessing, the central patch in raw RGB, before a LiteRT or ONNX runtime, whose file
subtracts the mean inside). An image that does not decode, or whose
header declares more pixels than `image_headers.max_pixels()`, is reported by name; the
others are still predicted.
"""

import os

import tensorflow as tf

from keras_alexnet.data import bad_images
from keras_alexnet.data import image_headers
from keras_alexnet.runs import model_files
from keras_alexnet.serving import formats
from keras_alexnet.serving import graph_ops
from keras_alexnet.serving import saved_model
from keras_alexnet.weights import cache


def load_saved_model(path, trust=False):
    """Loads an exported SavedModel: a version folder, or a model folder (its latest).

    A SavedModel is a program: one whose graph uses operations this package's exports
    never use is refused before anything of it runs, unless trusted (`graph_ops.check`).

    Returns:
        (the loaded SavedModel, the path of its version folder).

    Raises:
        errors.InputError: a graph of foreign operations (unless trust), or a
            saved_model.pb that cannot be read.
    """
    if not tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        path = saved_model.latest_version(path)
    graph_ops.check(path, trust)
    return tf.saved_model.load(path), path


def serving_function(model=None, model_dir=None, checkpoint=None, trust=False):
    """The function predict runs on image bytes, and what it came from.

    Args:
        model: an exported SavedModel (a version or model folder), a .keras file, a
            .tflite or .onnx file of a version folder, or a name of pretrained weights
            (its cached .keras file, fetched on first use).
        model_dir: a training run (instead of model).
        checkpoint: with model_dir, a checkpoint path.
        trust: run a SavedModel whose graph uses operations this package's exports never
            use (`load_saved_model`).

    Returns:
        (fn, origin): fn(images=<tf.string batch>) returns the serving signature's dict
        (probabilities, top5_indices, top5_labels); origin is the version folder, file or
        checkpoint.
    """
    model = cache.resolve(model)
    if model is not None and formats.is_model_file(model) and not str(model).endswith(".keras"):
        return formats.serving_function(model), model
    if model is not None and not str(model).endswith(".keras"):
        exported, version = load_saved_model(model, trust)
        return exported.signatures["serving_default"], version
    loaded = model_files.load_model_or_run(model, model_dir, checkpoint)
    from_bytes, _ = saved_model.serving_functions(loaded.model, loaded.stats, loaded.class_names)
    fn = tf.function(from_bytes, input_signature=[tf.TensorSpec([None], tf.string)])
    return fn, loaded.origin


def predict_files(serving_fn, paths):
    """Runs the serving signature on each file.

    Args:
        serving_fn: the function of `serving_function`.
        paths: image files.

    Returns:
        A list of (path, result or None, error message or None); result is a list of
        (label, probability) pairs, most probable first.
    """
    results = []
    for path in paths:
        try:
            if "://" in str(path):
                with tf.io.gfile.GFile(path, "rb") as f:
                    data = f.read()
            else:  # Python's open: also names that are not UTF-8 (surrogate escapes)
                with open(path, "rb") as f:
                    data = f.read()
            # Also before a SavedModel exported without the check, or with another limit.
            image_headers.size_check(tf.constant(data))
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
