"""Shared fixtures. Importing keras_alexnet first sets TensorFlow's environment."""

import keras
import pytest

import keras_alexnet  # noqa: F401


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
