"""preprocess_input against what converted models apply inside, and AlexNet(weights=) with
the public weight files converted on the fly (files the tests write, as convert_test)."""

import keras
import numpy as np
import pytest
import tiny
from caffe_files import random_weights
from caffe_files import write_caffemodel

import keras_alexnet
from keras_alexnet.models import imagenet_classes
from keras_alexnet.models import labels
from keras_alexnet.weights import conversion as convert
from keras_alexnet.weights import weight_files


@pytest.fixture(scope="module")
def tiny_caffemodel(tmp_path_factory):
    """A tiny-layout .caffemodel of 1000 classes (see tiny.caffe_shapes)."""
    tiny.register()
    path = tmp_path_factory.mktemp("weights") / "tiny.caffemodel"
    write_caffemodel(path, random_weights(tiny.caffe_shapes(), seed=11))
    return path


def rescaled(model, images):
    """What a model computes from raw pixels before conv1: its input_rescaling output."""
    return np.asarray(keras.Model(model.input, model.get_layer("input_rescaling").output)(images))


def test_preprocess_input_is_what_the_converted_caffe_model_applies(tiny_caffemodel, tmp_path):
    model = convert.convert(tiny_caffemodel, tmp_path / "tiny.keras", variant="tiny")
    images = np.random.default_rng(0).uniform(0, 255, (2, 227, 227, 3)).astype(np.float32)
    want = rescaled(model, images)
    np.testing.assert_allclose(keras_alexnet.preprocess_input(images), want, rtol=1e-6)
    as_tensor = keras_alexnet.preprocess_input(keras.ops.convert_to_tensor(images), "paper")
    np.testing.assert_allclose(np.asarray(as_tensor), want, rtol=1e-6)
    # Caffe's own rule: BGR minus the BGR mean pixel, read back in RGB order.
    bgr = images[..., ::-1] - np.asarray(weight_files.CAFFE_MEAN_BGR, np.float32)
    np.testing.assert_allclose(want, bgr[..., ::-1], rtol=1e-6, atol=1e-4)


def test_preprocess_input_of_torchvisions_weights():
    images = np.random.default_rng(1).uniform(0, 255, (2, 5, 5, 3))
    mean = np.asarray(weight_files.TORCHVISION_MEAN_RGB)
    std = np.asarray(weight_files.TORCHVISION_STD_RGB)
    got = keras_alexnet.preprocess_input(images, variant="one_weird_trick")
    np.testing.assert_allclose(got, (images / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)
    assert got.dtype == np.float32
    with pytest.raises(ValueError, match="variant must be one of.*variant='vgg'"):
        keras_alexnet.preprocess_input(images, variant="vgg")


def test_alexnet_weights_converts_a_caffemodel_on_the_fly(tiny_caffemodel, tmp_path):
    converted = convert.convert(tiny_caffemodel, tmp_path / "tiny.keras", variant="tiny")
    model = keras_alexnet.AlexNet(variant="tiny", weights=str(tiny_caffemodel))
    for a, b in zip(model.weights, converted.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert labels.class_names_of(model) == list(imagenet_classes.class_names())
    images = np.random.default_rng(2).uniform(0, 255, (2, 227, 227, 3)).astype(np.float32)
    np.testing.assert_allclose(rescaled(model, images), rescaled(converted, images))

    features = keras_alexnet.AlexNet(
        variant="tiny", include_top=False, weights=str(tiny_caffemodel)
    )
    pool5 = np.asarray(features(images))
    assert pool5.shape == (2, 6, 6, 32)
    for pooling, reduce in (("avg", np.mean), ("max", np.max)):
        pooled = keras_alexnet.AlexNet(
            variant="tiny", include_top=False, pooling=pooling, weights=str(tiny_caffemodel)
        )
        got = np.asarray(pooled(images))
        assert got.shape == (2, 32)
        np.testing.assert_allclose(got, reduce(pool5, axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_weight_file_safety_rules_hold(tmp_path):
    npy = tmp_path / "bvlc_alexnet.npy"
    np.save(npy, {"conv1": [np.zeros((1,)), np.zeros((1,))]}, allow_pickle=True)
    with pytest.raises(ValueError, match="execute arbitrary code.*allow_pickle=False"):
        keras_alexnet.AlexNet(weights=str(npy))
    with pytest.raises(ValueError, match="weights file does not exist"):
        keras_alexnet.AlexNet(weights=str(tmp_path / "missing.caffemodel"))
    with pytest.raises(ValueError, match=r"\.keras file or of a weight file.*weights.h5"):
        keras_alexnet.AlexNet(weights=str(tmp_path / "weights.h5"))
