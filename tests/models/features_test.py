"""feature_extractor: the outputs of named layers, on built, saved and converted models."""

import keras
import numpy as np
import pytest
import tiny

import keras_alexnet
from keras_alexnet.models import features


@pytest.fixture(scope="module")
def model():
    tiny.register()
    keras.utils.set_random_seed(1)
    return keras_alexnet.AlexNet(5, variant="tiny", input_offset=(120.0, 110.0, 100.0))


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 255, (3, 227, 227, 3)).astype(np.float32)


def _relu_dense(x, layer):
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in (layer.kernel, layer.bias))
    return np.maximum(x @ kernel + bias, 0.0)


def test_fc7_and_fc8_as_the_network_computes_them(model, images):
    out = keras_alexnet.feature_extractor(model, ("pool5", "fc6", "fc7", "fc8"))(images)
    out = {name: keras.ops.convert_to_numpy(value) for name, value in out.items()}
    assert out["pool5"].shape == (3, 6, 6, 32) and out["fc7"].shape == (3, 64)
    # fc6 and fc7 by hand in NumPy from pool5 (dropout is off at inference).
    fc6 = _relu_dense(out["pool5"].reshape(3, -1), model.get_layer("fc6"))
    fc7 = _relu_dense(fc6, model.get_layer("fc7"))
    np.testing.assert_allclose(out["fc6"], fc6, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["fc7"], fc7, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        out["fc8"], keras.ops.convert_to_numpy(model(images)), rtol=1e-5, atol=1e-6
    )


def test_default_is_fc7_and_a_single_name_works(model, images):
    default = keras_alexnet.feature_extractor(model)
    single = keras_alexnet.feature_extractor(model, "fc7")
    assert list(default.output) == ["fc7"]
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(default(images)["fc7"]),
        keras.ops.convert_to_numpy(single(images)["fc7"]),
    )


def test_a_saved_and_loaded_model_gives_the_same_features(model, images, tmp_path):
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    layers = ("conv5", "fc7")
    ours = keras_alexnet.feature_extractor(model, layers)(images)
    theirs = keras_alexnet.feature_extractor(loaded, layers)(images)
    for name in layers:
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(theirs[name]),
            keras.ops.convert_to_numpy(ours[name]),
            rtol=1e-5,
            atol=1e-5,
        )


def test_an_unknown_layer_is_named_with_the_available_ones(model):
    with pytest.raises(ValueError) as error:
        keras_alexnet.feature_extractor(model, ("fc7", "fc9"))
    message = str(error.value)
    assert "'fc9'" in message and "'fc7'" not in message.split("Its layers")[0]
    assert "conv1, lrn1, pool1, conv2" in message and "pool5, fc6, fc7, fc8" in message
    with pytest.raises(ValueError, match="at least one layer"):
        keras_alexnet.feature_extractor(model, ())


def test_paper_layers_are_the_builders_names(paper_model):
    names = [layer.name for layer in paper_model.layers]
    assert all(name in names for name in features.PAPER_LAYERS)
