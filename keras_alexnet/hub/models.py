"""AlexNet's KerasHub classes: backbone, image converter, preprocessor, image classifier.

    AlexNetBackbone      raw 227x227 RGB pixels (as the converter leaves them) -> pool5: the
                         layers `keras_alexnet.AlexNet(include_top=False)` builds, after a
                         `SubtractMean` layer when the weights were trained on a mean image
                         (a training run's), which the backbone's weights then hold
    AlexNetImageConverter  raw images of any size -> the paper's central patch: the central
                         square, resized to 256x256 as `predict` resizes it, its central
                         227x227 window; then the per-channel normalisation converted
                         weights need (their mean pixel, as `scale` and `offset`)
    AlexNetImageClassifierPreprocessor  the converter, for `fit`, `predict`, `evaluate`
    AlexNetImageClassifier  the backbone, then flatten, fc6, fc7 (ReLU, `ReplicaDropout`)
                         and fc8, named and initialised as `keras_alexnet.AlexNet` names
                         and initialises them; the class names are carried in its config

All four are registered with Keras as `keras_alexnet>NAME`, so that
`keras_hub.models.ImageClassifier.from_preset(FOLDER)` finds them (see `__init__.py`).
"""

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from keras_alexnet.data import preprocessing
from keras_alexnet.models import alexnet
from keras_alexnet.models import labels
from keras_alexnet.models import mean_image
from keras_alexnet.models import variants
from keras_alexnet.paper import numbers as paper

PACKAGE = "keras_alexnet"


@keras.saving.register_keras_serializable(package=PACKAGE)
class AlexNetBackbone(keras_hub.models.Backbone):
    """AlexNet up to pool5 as a KerasHub `Backbone`, any variant of `keras_alexnet.VARIANTS`.

    Args:
        variant: the variant's name ("paper", "caffe", "one_weird_trick", ...).
        image_shape: (height, width, 3): the paper's 227x227 by default.
        mean_image_size: the side of the training set's mean image that a first
            `SubtractMean` layer subtracts (its central window), or None for none.
        input_scale, input_offset: the model's "input_rescaling" after the mean image
            (`keras_alexnet.AlexNet`'s): a number or one per channel.
        implementation, init, weight_decay: as in `keras_alexnet.AlexNet`.
        dtype: a Keras dtype policy for the layers (default: Keras' global one).
        **kwargs: name, trainable.
    """

    def __init__(
        self,
        variant="paper",
        image_shape=(paper.INPUT_SIZE, paper.INPUT_SIZE, 3),
        mean_image_size=None,
        input_scale=1.0,
        input_offset=0.0,
        implementation="towers",
        init="paper",
        weight_decay=paper.WEIGHT_DECAY,
        dtype=None,
        **kwargs,
    ):
        image_shape = tuple(image_shape)
        network = alexnet.AlexNet(
            variant=variant,
            input_shape=image_shape,
            include_top=False,
            implementation=implementation,
            init=init,
            weight_decay=weight_decay,
            input_scale=_plain(input_scale),
            input_offset=_plain(input_offset),
            dtype_policy=dtype,
        )
        if mean_image_size:
            zeros = np.zeros((mean_image_size, mean_image_size, 3), np.float32)
            network = mean_image.with_mean(network, zeros)
        super().__init__(inputs=network.input, outputs=network.output, dtype=dtype, **kwargs)
        self.variant = variant
        self.image_shape = image_shape
        self.mean_image_size = mean_image_size
        self.input_scale = input_scale
        self.input_offset = input_offset
        self.implementation = implementation
        self.init = init
        self.weight_decay = weight_decay

    def get_config(self):
        config = super().get_config()
        config.update(
            variant=self.variant,
            image_shape=list(self.image_shape),
            mean_image_size=self.mean_image_size,
            input_scale=self.input_scale,
            input_offset=self.input_offset,
            implementation=self.implementation,
            init=self.init,
            weight_decay=self.weight_decay,
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class AlexNetImageConverter(keras_hub.layers.ImageConverter):
    """Raw images -> the paper's central patch, normalised as the weights need.

    The central square of each image (its shorter side), resized to `resize_size` squared
    as the package's preprocessing resizes (bilinear; with the antialiasing filter beyond a
    2x shrink), then its central `image_size` window, then `x * scale + offset` (per
    channel) when they are given. These are `python -m keras_alexnet.predict`'s
    preprocessing of a decoded image, number for number; the mean image, when there is
    one, is the backbone's first layer.

    Args:
        image_size: (height, width) of the patch, (227, 227).
        resize_size: the side of the square the patch is cut from, 256 (the paper's).
        scale, offset: None, a number or one number per channel.
        **kwargs: the other `keras_hub.layers.ImageConverter` arguments; its resizing
            options (crop_to_aspect_ratio, interpolation, ...) are stored but not used.
    """

    backbone_cls = AlexNetBackbone

    def __init__(
        self,
        image_size=(paper.INPUT_SIZE, paper.INPUT_SIZE),
        resize_size=paper.RESIZE_SIZE,
        scale=None,
        offset=None,
        **kwargs,
    ):
        super().__init__(image_size=image_size, scale=scale, offset=offset, **kwargs)
        if self.image_size is None or max(self.image_size) > resize_size:
            raise ValueError(
                f"image_size must fit in the {resize_size}x{resize_size} square. "
                f"Received: image_size={image_size!r}"
            )
        self.resize_size = resize_size

    def call(self, inputs):
        if isinstance(inputs, dict):
            raise ValueError("AlexNetImageConverter takes images only (no bounding boxes).")
        images = _to_tf(inputs)
        if isinstance(images, list):  # images of different sizes, each a patch, stacked
            patches = tf.stack([self._patch(image) for image in images])
        else:
            patches = self._patch(images)
        if tf.inside_function():
            return patches
        return keras.ops.convert_to_tensor(patches.numpy())

    def _patch(self, images):
        images = preprocessing.central_square(images, self.resize_size)
        height, width = self.image_size
        top, left = (self.resize_size - height) // 2, (self.resize_size - width) // 2
        patches = images[..., top : top + height, left : left + width, :]
        if self.scale is not None:
            patches = patches * tf.constant(self.scale, tf.float32)
        if self.offset is not None:
            patches = patches + tf.constant(self.offset, tf.float32)
        return patches

    def get_config(self):
        config = super().get_config()
        config.update(resize_size=self.resize_size)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class AlexNetImageClassifierPreprocessor(keras_hub.models.ImageClassifierPreprocessor):
    """`AlexNetImageConverter` on the images of `fit`, `predict` and `evaluate`."""

    backbone_cls = AlexNetBackbone
    image_converter_cls = AlexNetImageConverter


@keras.saving.register_keras_serializable(package=PACKAGE)
class AlexNetImageClassifier(keras_hub.models.ImageClassifier):
    """AlexNet as a KerasHub `ImageClassifier`: the backbone, then fc6, fc7 and fc8.

    fc6 and fc7 (ReLU and `ReplicaDropout`, in the variant's order) and fc8 are the
    layers of `keras_alexnet.AlexNet`, with its names, its initialisation and its weight
    decay. `from_preset(FOLDER, num_classes=N)` gives a new fc6-fc8 (KerasHub loads no
    head weights then), the backbone's weights kept.

    Args:
        backbone: an `AlexNetBackbone`.
        num_classes: fc8's units.
        preprocessor: an `AlexNetImageClassifierPreprocessor`, or None.
        activation: fc8's, "softmax" (probabilities, as the package's models) or None.
        dropout: the rate after (or before) fc6 and fc7.
        class_names: one name per class, carried in the config (`decode_predictions`).
        init, weight_decay: as in `keras_alexnet.AlexNet`.
        head_dtype: the head's dtype policy (default: the backbone's).
        **kwargs: name, compile.
    """

    backbone_cls = AlexNetBackbone
    preprocessor_cls = AlexNetImageClassifierPreprocessor

    def __init__(
        self,
        backbone,
        num_classes,
        preprocessor=None,
        activation="softmax",
        dropout=paper.DROPOUT_RATE,
        class_names=None,
        init="paper",
        weight_decay=paper.WEIGHT_DECAY,
        head_dtype=None,
        **kwargs,
    ):
        if class_names is not None:
            class_names = list(class_names)
            if len(class_names) != num_classes:
                raise ValueError(
                    f"class_names must name the {num_classes} classes. Received: "
                    f"{len(class_names)} class_names"
                )
        policy = keras.dtype_policies.get(head_dtype or backbone.dtype_policy)
        self.backbone = backbone
        self.preprocessor = preprocessor
        inputs = backbone.input
        x = keras.layers.Flatten(dtype=policy, name="flatten")(backbone(inputs))
        regularizer = keras.regularizers.L2(weight_decay / 2) if weight_decay else None
        outputs = alexnet.dense_head(
            x,
            variants.get(backbone.variant),
            num_classes,
            dropout,
            activation,
            init=init,
            regularizer=regularizer,
            policy=policy,
        )
        compile_now = kwargs.pop("compile", True)
        keras_hub.models.Task.__init__(
            self, inputs=inputs, outputs=outputs, compile=False, **kwargs
        )
        self.num_classes = num_classes
        self.activation = activation
        self.dropout = dropout
        self.class_names = class_names
        self.init = init
        self.weight_decay = weight_decay
        if compile_now:
            # After `activation` is set: ImageClassifier.compile picks the loss from it.
            self.compile()

    def decode_predictions(self, probs, top=5):
        """`keras_alexnet.decode_predictions` with this classifier's class names."""
        return labels.decode_predictions(np.asarray(probs), top, class_names=self.class_names)

    def get_config(self):
        config = keras_hub.models.Task.get_config(self)
        config.update(
            num_classes=self.num_classes,
            activation=self.activation,
            dropout=self.dropout,
            class_names=self.class_names,
            init=self.init,
            weight_decay=self.weight_decay,
        )
        return config

    @classmethod
    def from_config(cls, config):
        # from_preset(FOLDER, num_classes=N) puts N in the preset's config: a new head,
        # whose classes the preset's names do not name.
        names = config.get("class_names")
        if names is not None and len(names) != config.get("num_classes"):
            config = {**config, "class_names": None}
        return super().from_config(config)


def _to_tf(inputs):
    """Images as float32 TensorFlow tensors: one tensor, or a list for different sizes."""
    if tf.is_tensor(inputs):
        return tf.cast(inputs, tf.float32)
    if isinstance(inputs, (list, tuple)):
        arrays = [np.asarray(keras.ops.convert_to_numpy(x), np.float32) for x in inputs]
        if len({a.shape for a in arrays}) > 1:
            return [tf.constant(a) for a in arrays]
        return tf.constant(np.stack(arrays))
    return tf.constant(np.asarray(keras.ops.convert_to_numpy(inputs), np.float32))


def _plain(value):
    """A number, or a list from JSON, as `keras_alexnet.AlexNet` takes it."""
    return tuple(value) if isinstance(value, (list, tuple)) else value
