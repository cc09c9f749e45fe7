"""keras_alexnet: the AlexNet of Krizhevsky, Sutskever and Hinton (2012) in Keras 3."""

import os

# TensorFlow reads this once, at import: oneDNN's CPU kernels are off by default on some
# x86 CPUs and train this network about 1.5x faster. A value the user set is kept.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_alexnet import startup  # noqa: E402

# Before anything imports Keras: TensorFlow's load-time INFO lines stay off stderr.
startup.import_keras()

from keras_alexnet import hub as _hub  # noqa: E402
from keras_alexnet.models.features import feature_extractor  # noqa: E402
from keras_alexnet.models.head_layers import FastInputGradientDense  # noqa: E402
from keras_alexnet.models.head_layers import ReplicaDropout  # noqa: E402
from keras_alexnet.models.labels import ClassNames  # noqa: E402
from keras_alexnet.models.labels import decode_predictions  # noqa: E402
from keras_alexnet.models.layers import GroupedConv2D  # noqa: E402
from keras_alexnet.models.layers import LocalResponseNormalization  # noqa: E402
from keras_alexnet.models.mean_image import SubtractMean  # noqa: E402
from keras_alexnet.models.variants import VARIANTS  # noqa: E402
from keras_alexnet.weights.applications import AlexNet  # noqa: E402
from keras_alexnet.weights.pretrained import preprocess_input  # noqa: E402

# The KerasHub classes are registered when keras_hub is imported (never imported here).
_hub.register()

__all__ = [
    "AlexNet",
    "ClassNames",
    "FastInputGradientDense",
    "GroupedConv2D",
    "LocalResponseNormalization",
    "ReplicaDropout",
    "SubtractMean",
    "VARIANTS",
    "decode_predictions",
    "feature_extractor",
    "preprocess_input",
]
__version__ = "0.1.0"
