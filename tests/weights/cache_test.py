"""Named weights end to end, from a server on 127.0.0.1: `AlexNet(weights=NAME)` fetches,
converts and caches once, then works offline; keras.applications' arguments; the tools take
the name; two processes fetching at once leave one good file."""

import dataclasses
import hashlib
import os
import threading

import fresh_process
import image_data
import keras
import numpy as np
import pytest
import tiny
import weight_server
from caffe_files import random_weights
from caffe_files import write_caffemodel

import keras_alexnet
from keras_alexnet import pretrained as pretrained_tool
from keras_alexnet.models import imagenet_classes
from keras_alexnet.models import labels
from keras_alexnet.runs import model_files
from keras_alexnet.serving import prediction
from keras_alexnet.training import config as config_lib
from keras_alexnet.training import trainer
from keras_alexnet.weights import cache
from keras_alexnet.weights import catalog
from keras_alexnet.weights import conversion
from keras_alexnet.weights import downloads


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    """A tiny-layout .caffemodel of 1000 classes, and its direct conversion (the reference)."""
    tiny.register()
    folder = tmp_path_factory.mktemp("publisher")
    path = folder / "tiny.caffemodel"
    write_caffemodel(path, random_weights(tiny.caffe_shapes(), seed=5))
    return path, conversion.convert(path, folder / "reference.keras", variant="tiny")


@pytest.fixture
def server(monkeypatch, tiny_file):
    """The tiny file served as `tiny_alexnet`, the mirror and the catalog pointing at it
    (in this process, and through the environment in the processes it starts)."""
    data = tiny_file[0].read_bytes()
    served = weight_server.Server()
    entries = [
        weight_server.entry("tiny_alexnet", data, "tiny"),
        weight_server.entry("tiny_missing", data, "tiny"),  # not served: a 404
    ]
    served.files[entries[0].file_name] = data
    for entry in entries:
        monkeypatch.setitem(catalog.ENTRIES, entry.name, entry)
    monkeypatch.setenv(downloads.MIRROR_ENV, served.url)
    for key, value in weight_server.environment(entries).items():
        monkeypatch.setenv(key, value)
    yield served
    served.stop()


def assert_same_weights(model, reference):
    assert [w.path for w in model.weights] == [w.path for w in reference.weights]
    for a, b in zip(model.weights, reference.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_first_use_fetches_and_converts_then_the_cache_works_offline(server, tiny_file):
    _, reference = tiny_file
    model = keras_alexnet.AlexNet(weights="tiny_alexnet_alias")
    assert_same_weights(model, reference)
    assert labels.class_names_of(model) == list(imagenet_classes.class_names())
    assert sorted(os.listdir(downloads.cache_dir())) == [
        "tiny_alexnet.caffemodel",
        "tiny_alexnet.keras",
    ]
    assert server.requests == ["tiny_alexnet.caffemodel"]
    server.stop()
    os.remove(cache.raw_path(catalog.entry("tiny_alexnet")))  # the .keras file is enough
    again = keras_alexnet.AlexNet(weights="tiny_alexnet")
    assert_same_weights(again, reference)
    images = np.random.default_rng(0).uniform(0, 255, (2, 227, 227, 3)).astype(np.float32)
    probs = again.predict(images, verbose=0)
    np.testing.assert_allclose(probs, reference.predict(images, verbose=0), rtol=1e-5)
    decoded = keras_alexnet.decode_predictions(probs, top=1, model=again)
    assert decoded[0][0][0] == imagenet_classes.class_names()[int(np.argmax(probs[0]))][:9]
    # evaluate and export load --model through the same function.
    loaded = model_files.load_model_or_run(model="tiny_alexnet")
    assert loaded.name == "tiny_alexnet" and len(loaded.class_names) == 1000
    assert not loaded.stats.mean_image.any()  # the normalisation is inside


def test_keras_applications_arguments(server, tiny_file):
    _, reference = tiny_file
    with pytest.raises(ValueError, match="num_classes must be 1000.*Received: num_classes=10"):
        keras_alexnet.AlexNet(10, weights="tiny_alexnet")
    with pytest.raises(ValueError, match="variant must be that or left out"):
        keras_alexnet.AlexNet(weights="tiny_alexnet", variant="paper")
    assert server.requests == []  # refused before any download
    features = keras_alexnet.AlexNet(include_top=False, pooling="avg", weights="tiny_alexnet")
    assert not any(layer.name.startswith("fc") for layer in features.layers)
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5"):
        for a, b in zip(features.get_layer(name).weights, reference.get_layer(name).weights):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    images = np.random.default_rng(1).uniform(0, 255, (2, 227, 227, 3)).astype(np.float32)
    pool5 = keras.Model(reference.input, reference.get_layer("pool5").output)(images)
    np.testing.assert_allclose(
        np.asarray(features(images)), np.mean(np.asarray(pool5), axis=(1, 2)), rtol=1e-4, atol=1e-5
    )
    # input_tensor: the network built on a tensor of the caller's.
    inputs = keras.Input((227, 227, 3))
    on_tensor = keras_alexnet.AlexNet(input_tensor=inputs, weights="tiny_alexnet")
    assert on_tensor.inputs[0] is inputs
    assert_same_weights(on_tensor, reference)
    assert server.requests == ["tiny_alexnet.caffemodel"]  # fetched once for all three


def test_training_takes_the_name(server, tiny_root, tmp_path):
    config = config_lib.TrainConfig(
        model_dir=str(tmp_path / "run"),
        dataset="folder",
        data_dir=tiny_root,
        init_from="tiny_alexnet",
        batch_size=8,
        epochs=1,
        max_steps=1,
        stats_images=8,
        verbose=False,
    )
    assert trainer.train(config)["step"] == 1
    assert server.requests == ["tiny_alexnet.caffemodel"]
    with pytest.raises(ValueError, match="init_from must be the path of a .keras model or one"):
        config_lib.resolve(dataclasses.replace(config, init_from="alexnet"))


def test_the_tools_take_the_name_and_two_fetching_at_once_leave_one_good_file(
    server, tiny_file, tmp_path
):
    path, reference = tiny_file
    server.barrier = threading.Barrier(2, timeout=120)  # both are downloading at once
    output = tmp_path / "converted.keras"
    downloaded, converted, failed = fresh_process.run_together(
        fresh_process.command("pretrained", "--download=tiny_alexnet"),
        fresh_process.command("convert", "tiny_alexnet", f"--output={output}"),
        fresh_process.command("pretrained", "--download=tiny_missing_alias"),
        timeout=600,
    )
    server.stop()
    entry = catalog.entry("tiny_alexnet")
    assert downloaded.returncode == 0, downloaded.stderr[-2000:]
    assert f"Cached {cache.keras_path(entry)}" in downloaded.stdout
    assert converted.returncode == 0, converted.stderr[-2000:]
    assert sorted(server.requests) == ["tiny_alexnet.caffemodel"] * 2 + ["tiny_missing.caffemodel"]
    assert sorted(os.listdir(downloads.cache_dir())) == [
        "tiny_alexnet.caffemodel",
        "tiny_alexnet.keras",
    ]
    with open(cache.raw_path(entry), "rb") as f:
        assert hashlib.sha1(f.read()).hexdigest() == hashlib.sha1(path.read_bytes()).hexdigest()
    assert_same_weights(keras.models.load_model(cache.keras_path(entry)), reference)
    assert_same_weights(keras.models.load_model(output), reference)

    assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr[-2000:]
    assert (
        "error: tiny_missing (tiny_missing.caffemodel): the server answered HTTP 404 Not Found"
        in failed.stderr
    )
    assert "--file=tiny_missing=PATH" in failed.stderr

    # Offline now: predict's model by name, and the listing.
    image = tmp_path / "cat.png"
    image_data.write_png(image, seed=0)
    serving_fn, origin = prediction.serving_function(model="tiny_alexnet")
    assert origin == cache.keras_path(entry)
    [(_, result, error)] = prediction.predict_files(serving_fn, [str(image)])
    assert error is None and len(result) == 5
    lines = pretrained_tool.describe(entry)
    assert lines[0] == "tiny_alexnet (alias tiny_alexnet_alias): tiny_alexnet.caffemodel, " + (
        "becomes variant tiny"
    )
    assert "  cached    converted" in lines
    assert "  cached    no" in pretrained_tool.describe(catalog.entry("tiny_missing"))
