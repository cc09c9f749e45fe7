"""The training set's mean image inside a model, so that the model takes raw pixels.

The paper subtracts "the mean activity over the training set from each pixel" (section 2)
of the 256x256 image; a 227x227 input is that image's central patch, so the central
227x227 window of the mean image is what comes off it, as evaluation does for the
central patch. An exported `model.keras` starts with a `SubtractMean` layer holding the
256x256 mean image: it takes raw RGB 0-255 pixels, as converted weights do (their
"input_rescaling" layer). `split` takes the layer out again for the tools, whose
preprocessing subtracts the right window of the mean image for each of the paper's ten
patches.
"""

import keras
import numpy as np

LAYER_NAME = "subtract_mean"
# The largest mean image a layer may hold: 16 times the paper's 256x256 (a 4096x4096x3
# float32 weight is 192 MiB). A model file's config is read before its weights: a file of
# a few KB claiming a far larger size would otherwise allocate gigabytes when it is built.
MAX_SIZE = 4096


@keras.saving.register_keras_serializable(package="keras_alexnet")
class SubtractMean(keras.layers.Layer):
    """Subtracts the central window of a mean image from raw pixels.

    The mean image is a non-trainable weight (saved with the model's weights, not in its
    config); an input of side `crop` loses the window at ((size - crop) // 2, (size -
    crop) // 2), as `preprocessing.center_crop` takes the patch.

    Args:
        size: side of the square mean image, e.g. 256; at most `MAX_SIZE`.
        **kwargs: base layer arguments (name, ...); the layer computes in float32.
    """

    def __init__(self, size, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_SIZE:
            raise ValueError(
                f"SubtractMean layer {kwargs.get('name', LAYER_NAME)!r}: size must be an "
                f"integer from 1 to {MAX_SIZE} (the side of its mean image). Received: "
                f"size={size!r}"
            )
        self.size = size

    def build(self, input_shape):
        height, width = input_shape[1], input_shape[2]
        if height is None or width is None or height > self.size or width > self.size:
            raise ValueError(
                f"The input must be at most {self.size}x{self.size}, the mean image's size. "
                f"Received: input_shape={input_shape}"
            )
        self.mean_image = self.add_weight(
            shape=(self.size, self.size, 3),
            initializer="zeros",
            trainable=False,
            name="mean_image",
        )

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        top, left = (self.size - height) // 2, (self.size - width) // 2
        mean = keras.ops.convert_to_tensor(self.mean_image)
        window = mean[top : top + height, left : left + width]
        return keras.ops.cast(inputs, "float32") - window

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size)
        config.pop("dtype", None)
        return config


def with_mean(model, mean_image):
    """The model with the mean image subtracted inside: raw pixels in.

    The layers are shared with `model`, which must be a chain of layers (an AlexNet is).

    Args:
        model: a functional model from mean-subtracted pixels [batch, crop, crop, 3].
        mean_image: [size, size, 3], size >= crop: the training set's mean image, 0-255.

    Returns:
        A `keras.Model` from raw 0-255 RGB pixels to the model's output.

    Raises:
        ValueError: the model already subtracts a mean, or is not a chain of layers.
    """
    if find(model) is not None:
        raise ValueError(f"The model already subtracts a mean image. Received: {model.name}")
    chain = model.layers
    if not _is_chain(model):
        raise ValueError(f"The model must be a chain of layers. Received: {model.name}")
    mean_image = np.asarray(mean_image, np.float32)
    inputs = keras.Input(model.input_shape[1:], name=chain[0].name)
    subtract = SubtractMean(mean_image.shape[0], name=LAYER_NAME)
    x = subtract(inputs)
    subtract.set_weights([mean_image])
    for layer in chain[1:]:
        x = layer(x)
    return keras.Model(inputs, x, name=model.name)


def _is_chain(model):
    """Whether each layer of a functional model takes the previous layer's output alone.

    Read from the model's own graph (its config), not from `layer.input`: a model that
    shares its layers with another (as `split` makes) has the first model's tensors there.
    """
    try:
        config = model.get_config()
    except NotImplementedError:
        return False
    layers = config.get("layers") if isinstance(config, dict) else None
    inputs = config.get("input_layers") if layers else None
    # One input is written as [name, node, tensor], several as a list of those.
    if not inputs or not (isinstance(inputs[0], str) or len(inputs) == 1):
        return False
    for before, layer in zip(layers, layers[1:]):
        nodes = layer.get("inbound_nodes", [])
        if len(nodes) != 1:
            return False
        sources = [
            arg["config"]["keras_history"][0]
            for arg in nodes[0].get("args", [])
            if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__"
        ]
        if sources != [before["name"]]:
            return False
    return True


def find(model):
    """The model's `SubtractMean` layer, or None."""
    for layer in model.layers:
        if isinstance(layer, SubtractMean):
            return layer
    return None


def split(model):
    """Takes the mean image out of a model that subtracts it.

    Args:
        model: a model, with or without a `SubtractMean` layer.

    Returns:
        (the model from mean-subtracted pixels, sharing its layers; the mean image
        [size, size, 3]), or (model, None) if it subtracts no mean.
    """
    layer = find(model)
    if layer is None:
        return model, None
    inner = keras.Model(layer.output, model.output, name=model.name)
    return inner, np.asarray(layer.mean_image.numpy(), np.float32)
