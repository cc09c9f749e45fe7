"""Shared fixtures. Importing keras_alexnet first sets TensorFlow's environment."""

# isort: off
import keras_alexnet  # first: it sets TensorFlow's environment before TensorFlow loads
# isort: on

import keras
import pytest
import tiny

from keras_alexnet import shapes_dataset


@pytest.fixture(scope="session")
def paper_model():
    """The paper's AlexNet, built once: building 61M parameters takes seconds."""
    keras.utils.set_random_seed(0)
    return keras_alexnet.AlexNet()


@pytest.fixture(autouse=True)
def _float32_policy():
    """Each test starts and ends under the float32 policy, whatever it sets."""
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """A small built-in image set written once per test session (see tiny.SHAPES)."""
    root = tmp_path_factory.mktemp("data") / "shapes"
    return shapes_dataset.ensure_shapes_dataset(root, **tiny.SHAPES)
