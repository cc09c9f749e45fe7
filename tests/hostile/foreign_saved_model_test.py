"""Hostile SavedModels: a folder whose graph writes and reads files, or runs Python, is
refused by the tools before anything of it runs, and runs with --trust_model.

The package's own exports still load: tests/serving/prediction_test.py predicts with
them, and tests/serving/graph_ops_test.py derives the allowed operations from them.
"""

import concurrent.futures
import os

import harness
import numpy as np
import pytest
import tensorflow as tf

from keras_alexnet import errors
from keras_alexnet.benchmarks import format_speed


def _outputs(images, label):
    """What predict reads of a serving signature: one class, `label`, for each image."""
    batch = tf.shape(images)[0]
    return {
        "probabilities": tf.ones([batch, 1]),
        "top5_indices": tf.zeros([batch, 1], tf.int32),
        "top5_labels": tf.fill([batch, 1], label),
    }


def file_saved_model(folder, secret, written):
    """A SavedModel whose serving_default writes `written` and returns the contents of
    `secret` as its label."""

    class Files(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, images):
            tf.io.write_file(written, "written by a SavedModel")
            return _outputs(images, tf.io.read_file(secret))

    module = Files()
    tf.saved_model.save(module, folder, signatures={"serving_default": module.serve})
    return folder


def python_saved_model(folder):
    """A SavedModel whose signature runs Python (tf.numpy_function and tf.py_function)."""

    class Python(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, images):
            label = tf.numpy_function(lambda: np.bytes_(b"numpy"), [], tf.string)
            label = tf.py_function(lambda x: x, [label], tf.string)
            return _outputs(images, tf.reshape(label, []))

    module = Python()
    tf.saved_model.save(module, folder, signatures={"serving_default": module.serve})
    return folder


def test_predict_refuses_a_saved_model_of_foreign_operations_unless_trusted(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the contents of a private file")
    refused_write, trusted_write = tmp_path / "refused.txt", tmp_path / "trusted.txt"
    files = file_saved_model(str(tmp_path / "files" / "1"), str(secret), str(refused_write))
    trusted = file_saved_model(str(tmp_path / "trusted" / "1"), str(secret), str(trusted_write))
    python = python_saved_model(str(tmp_path / "python" / "1"))
    image = tmp_path / "image.png"
    image.write_bytes(tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)).numpy())
    runs = (
        ("--model", os.path.dirname(files), image),  # the model folder: its latest version
        ("--model", python, image),
        ("--model", trusted, "--trust_model", image),
    )
    with concurrent.futures.ThreadPoolExecutor(len(runs)) as pool:
        results = list(pool.map(lambda args: harness.run_tool("predict", *args), runs))

    harness.assert_refused(results[0], files, "ReadFile, WriteFile", "--trust_model")
    harness.assert_refused(results[1], python, "EagerPyFunc, PyFunc", "--trust_model")
    assert not refused_write.exists()
    assert results[2].returncode == 0, results[2].stderr[-3000:]
    assert "the contents of a private file" in results[2].stdout
    assert trusted_write.read_text() == "written by a SavedModel"


def test_the_format_benchmark_refuses_it_before_any_work(tmp_path):
    written = tmp_path / "written.txt"
    folder = file_saved_model(str(tmp_path / "files" / "1"), str(tmp_path), str(written))
    with pytest.raises(errors.InputError, match=r"\(ReadFile, WriteFile\).*--trust_model"):
        format_speed.run_benchmark(str(tmp_path / "no_run"), folder)
    assert not written.exists()
