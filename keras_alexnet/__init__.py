"""keras_alexnet: the AlexNet of Krizhevsky, Sutskever and Hinton (2012) in Keras 3."""

import os

# TensorFlow reads this once, at import: oneDNN's CPU kernels are off by default on some
# x86 CPUs and train this network about 1.5x faster. A value the user set is kept.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_alexnet.models.alexnet import AlexNet  # noqa: E402
from keras_alexnet.models.labels import ClassNames  # noqa: E402
from keras_alexnet.models.labels import decode_predictions  # noqa: E402
from keras_alexnet.models.layers import Dense  # noqa: E402
from keras_alexnet.models.layers import Dropout  # noqa: E402
from keras_alexnet.models.layers import GroupedConv2D  # noqa: E402
from keras_alexnet.models.layers import LocalResponseNormalization  # noqa: E402
from keras_alexnet.models.variants import VARIANTS  # noqa: E402
from keras_alexnet.weights.pretrained import preprocess_input  # noqa: E402

__all__ = [
    "AlexNet",
    "ClassNames",
    "Dense",
    "Dropout",
    "GroupedConv2D",
    "LocalResponseNormalization",
    "VARIANTS",
    "decode_predictions",
    "preprocess_input",
]
__version__ = "0.1.0"
