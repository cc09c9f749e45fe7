"""`preprocess_input` the keras.applications way: the input each variant's weights expect.

The normalisation of each file format is `weight_files.format_normalization`; a variant's
is that of the format its published weights come in.
"""

import keras
import numpy as np

from keras_alexnet.weights import weight_files

# The weights each variant's published models were trained with, and so the input
# normalisation they expect. The paper subtracts the ILSVRC-2012 training set's mean image;
# its mean pixel (Caffe's) is the standard stand-in.
_VARIANT_FORMATS = {"paper": "caffemodel", "caffe": "caffemodel", "one_weird_trick": "torch"}


def input_normalization(variant):
    """(input_scale, input_offset) per RGB channel that a variant's ImageNet weights expect."""
    if variant not in _VARIANT_FORMATS:
        raise ValueError(
            f"variant must be one of {sorted(_VARIANT_FORMATS)}. Received: variant={variant!r}"
        )
    return weight_files.format_normalization(_VARIANT_FORMATS[variant])


def preprocess_input(images, variant="caffe"):
    """Raw 0-255 RGB images -> the input a variant's ImageNet weights expect.

    "caffe" and "paper": the ILSVRC-2012 mean pixel subtracted, RGB kept (converted Caffe
    weights read RGB; unlike keras.applications' "caffe" mode there is no BGR swap);
    "one_weird_trick" (torchvision's): x / 255, minus torchvision's mean, over its std.

    Models made by `python -m keras_alexnet.convert` or `AlexNet(weights=...)` with a weight
    file apply this inside (their "input_rescaling" layer) and take raw pixels: this is for
    models built without it.

    Args:
        images: 0-255 RGB pixels, [..., 3]: a NumPy array (or list) or a tensor.
        variant: "caffe", "paper" or "one_weird_trick".

    Returns:
        float32 images of the same shape; a NumPy array for NumPy input, else a tensor.
    """
    scale, offset = input_normalization(variant)
    if keras.ops.is_tensor(images):
        images = keras.ops.cast(images, "float32")
        return images * keras.ops.array(scale, "float32") + keras.ops.array(offset, "float32")
    images = np.asarray(images, np.float32)
    if images.shape[-1:] != (3,):
        raise ValueError(f"images must be RGB, [..., 3]. Received: shape {images.shape}")
    return images * np.asarray(scale, np.float32) + np.asarray(offset, np.float32)
