"""Class names inside a model (the ClassNames layer) and decode_predictions."""

import keras
import numpy as np
import pytest
import tiny

import keras_alexnet
from keras_alexnet.models import labels


def test_class_names_travel_through_save_and_load(tmp_path):
    tiny.register()
    names = ["circle", "red square", "n02123045 tabby, tabby cat"]
    model = keras_alexnet.AlexNet(3, variant="tiny", class_names=names)
    assert model.layers[-1].name == labels.LAYER_NAME
    layer = model.get_layer(labels.LAYER_NAME)
    assert labels.ClassNames.from_config(layer.get_config()).class_names == names
    path = tmp_path / "named.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    assert labels.class_names_of(loaded) == names
    x = np.random.default_rng(0).uniform(-50, 50, (2, 227, 227, 3)).astype(np.float32)
    fc8 = keras.Model(loaded.input, loaded.get_layer("fc8").output)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(fc8(x)))  # the identity
    assert labels.class_names_of(keras_alexnet.AlexNet(3, variant="tiny")) is None
    with pytest.raises(ValueError, match=r"3 classes but 2 class names"):
        keras_alexnet.AlexNet(3, variant="tiny", class_names=["a", "b"])
    with pytest.raises(ValueError, match="already carries other class names"):
        labels.with_class_names(model, ["x", "y", "z"])
    with pytest.raises(ValueError, match="non-empty strings"):
        labels.ClassNames(["a", ""])


def test_decode_predictions_ranks_like_top_k_and_names_imagenet_classes():
    probs = np.zeros((2, 1000), np.float32)
    probs[0, [281, 5, 7]] = [0.5, 0.2, 0.2]  # a tie: the lower index first, as top_k
    probs[1, 999] = 1.0
    first, second = keras_alexnet.decode_predictions(probs, top=3)
    assert first == [
        ("n02123045", "tabby, tabby cat", 0.5),
        ("n01496331", "electric ray, crampfish, numbfish, torpedo", pytest.approx(0.2)),
        ("n01514668", "cock", pytest.approx(0.2)),
    ]
    assert second[0] == ("n15075141", "toilet tissue, toilet paper, bathroom tissue", 1.0)
    assert [c[2] for c in second[1:]] == [0.0, 0.0] and second[1][0] == "n01440764"


def test_decode_predictions_uses_the_models_names():
    tiny.register()
    model = keras_alexnet.AlexNet(3, variant="tiny", class_names=["a", "b", "c"])
    probs = np.asarray(model(np.zeros((4, 227, 227, 3), np.float32)))
    decoded = keras_alexnet.decode_predictions(probs, top=2, model=model)
    for row, top in zip(probs, decoded):
        order = np.argsort(-row, kind="stable")[:2]
        assert top == [("abc"[i], "abc"[i], pytest.approx(float(row[i]))) for i in order]
    with pytest.raises(ValueError, match="No class names for 3 classes"):
        keras_alexnet.decode_predictions(probs)
    with pytest.raises(ValueError, match=r"\[batch, classes\]"):
        keras_alexnet.decode_predictions(probs[0], model=model)
