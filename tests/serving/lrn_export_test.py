"""The LRN of exported LiteRT files (`layers.lrn_from_ops`): equal to TensorFlow's LRN op on
real activations, in int8 operations in the int8 file, and its int8 error per layer."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from caffe_files import BVLC_ALEXNET_SHAPES
from caffe_files import random_weights
from caffe_files import write_caffemodel
from image_data import raw_validation_pixels
from image_data import smooth_image
from image_data import validation_pixels

import keras_alexnet
from keras_alexnet.benchmarks import format_speed
from keras_alexnet.models import features
from keras_alexnet.models import layers
from keras_alexnet.runs import folder as run_dir
from keras_alexnet.serving import formats
from keras_alexnet.serving import runtimes

pytest.importorskip("ai_edge_litert.interpreter", reason="the litert extra is not installed")


def _max_relative_error(model, images):
    """lrn_from_ops against tf.nn.local_response_normalization on the inputs of the
    model's LRN layers (the ReLU outputs of conv1 and conv2) for `images`."""
    lrns = [layer for layer in model.layers if isinstance(layer, layers.LocalResponseNormalization)]
    assert [layer.name for layer in lrns] == ["lrn1", "lrn2"]
    inputs = features.feature_extractor(model, ("conv1", "conv2"))(images)
    errors = []
    for lrn, name in zip(lrns, ("conv1", "conv2")):
        x = tf.constant(inputs[name])
        assert float(tf.reduce_max(x)) > 0  # real activations, not a dead layer
        want = tf.nn.local_response_normalization(
            x, lrn.depth_radius, lrn.bias, lrn.alpha, lrn.beta
        )
        got = layers.lrn_from_ops(x, lrn.depth_radius, lrn.bias, lrn.alpha, lrn.beta)
        nonzero = want.numpy() != 0
        relative = np.abs(got.numpy() - want.numpy())[nonzero] / np.abs(want.numpy())[nonzero]
        errors.append(float(relative.max()))
    return errors


def test_lrn_from_ops_equals_the_op_on_a_trained_model(trained):
    model, _ = run_dir.restore_model(trained[0])
    _, pixels = validation_pixels(*trained)
    assert max(_max_relative_error(model, pixels)) < 1e-5


def test_lrn_from_ops_equals_the_op_on_a_converted_caffe_model(tmp_path):
    path = tmp_path / "bvlc_alexnet.caffemodel"
    write_caffemodel(path, random_weights(BVLC_ALEXNET_SHAPES, seed=12))
    model = keras_alexnet.AlexNet(weights=str(path))
    lrn = model.get_layer("lrn1")
    assert (lrn.bias, lrn.alpha) == (1.0, pytest.approx(2e-5))  # Caffe's constants
    images = np.stack([smooth_image(seed, 227, 227) for seed in range(4)]).astype(np.float32)
    assert max(_max_relative_error(model, images)) < 1e-5


def test_int8_file_runs_lrn_in_int8_and_only_the_classifier_in_float(exported_formats):
    ops = runtimes.litert_operations(os.path.join(exported_formats, formats.litert_file("int8")))
    kinds = [op["op"] for op in ops]
    assert "LOCAL_RESPONSE_NORMALIZATION" not in kinds
    assert kinds[0] == "QUANTIZE" and kinds.count("QUANTIZE") == 1
    # One DEQUANTIZE, into the last layer (float32 weights) and softmax.
    assert kinds[-3:] == ["DEQUANTIZE", "FULLY_CONNECTED", "SOFTMAX"]
    assert kinds.count("DEQUANTIZE") == 1
    interpreter = runtimes.litert_interpreter(
        model_path=os.path.join(exported_formats, formats.litert_file("int8"))
    )
    dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    for name in ("lrn1", "lrn2"):
        lrn = [op for op in ops if format_speed.layer_of(op["name"], op["op"]) == name]
        assert [op["op"] for op in lrn] == ["MUL", "CONV_2D", "LOG", "MUL", "EXP", "MUL"]
        assert all(dtypes[op["output"]] == np.int8 for op in lrn), name
    assert all(dtypes[op["output"]] == np.float32 for op in ops[-2:])
    float_ops = runtimes.litert_operations(os.path.join(exported_formats, "model.tflite"))
    assert "LOCAL_RESPONSE_NORMALIZATION" not in [op["op"] for op in float_ops]


def test_int8_error_is_measured_layer_by_layer(trained, exported_formats):
    model = keras.models.load_model(os.path.join(exported_formats, "model.keras"))
    _, pixels = raw_validation_pixels(trained[1])
    path = os.path.join(exported_formats, formats.litert_file("int8"))
    rows = {row["layer"]: row for row in format_speed.int8_layer_errors(path, model, pixels)}
    # The file's first layer subtracts the mean from the raw pixels (the uint8 input's
    # rounding and the int8 mean's, against the float32 model on unrounded pixels).
    assert list(rows)[:4] == ["subtract_mean", "conv1", "lrn1", "pool1"] and "fc8" in rows
    for row in rows.values():
        assert 0 <= row["error"] < 0.2, row
    # The LRN's own error, against float32 LRN of its own int8 input: small, and below
    # what it inherits from conv1.
    for name in ("lrn1", "lrn2"):
        assert 0 < rows[name]["own_error"] < 0.02, rows[name]
    assert rows["lrn1"]["error"] < rows["conv1"]["error"] + rows["lrn1"]["own_error"] + 1e-3
    # fc8 is float32 in the file: its probabilities against the model's.
    assert rows["fc8"]["error"] < 0.2
