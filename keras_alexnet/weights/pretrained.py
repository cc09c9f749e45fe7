"""Pretrained weights the keras.applications way: `preprocess_input` and weight files.

`AlexNet(weights=PATH)` takes a .keras file, or one of the public weight files that
`python -m keras_alexnet.convert` reads (bvlc_alexnet.caffemodel, the caffe-tensorflow
bvlc_alexnet.npy, torchvision's alexnet-owt-*.pth), converted here on the fly with the same
rules: a pickled .npy only with allow_pickle=True, a .pth with `torch.load(weights_only=True)`.
"""

import os

import keras
import numpy as np

from keras_alexnet.models import imagenet_classes
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
    return weight_files.input_normalization(_VARIANT_FORMATS[variant])


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


def is_weight_file(path):
    """Whether a path names a weight file `convert` reads (by its extension)."""
    return os.path.splitext(os.fspath(path))[1].lower() in weight_files.EXTENSIONS


def converted_model(path, allow_pickle=False, variant=None):
    """The AlexNet a public weight file holds, converted as `convert` converts it.

    Args:
        path: a .caffemodel, .npy or .pth/.pt file.
        allow_pickle: allow unpickling a .npy dict (only for files you trust).
        variant: the variant the weights belong to; default: the format's.

    Returns:
        A `keras.Model` taking raw 0-255 RGB pixels, carrying the ILSVRC-2012 class names
        when fc8 has 1000 classes.

    Raises:
        ValueError: from the reader (a pickle without allow_pickle, a foreign file).
        ImportError: for a torch file when PyTorch is not installed.
    """
    # convert imports model.py, which calls this: imported here, when it is needed.
    from keras_alexnet.weights import conversion as convert

    if not os.path.exists(path):
        raise ValueError(f"weights file does not exist. Received: weights={path!r}")
    pretrained = weight_files.read_weights(path, allow_pickle=allow_pickle)
    return convert.build_model(pretrained, variant=variant)


def default_class_names(num_classes):
    """The class names of converted weights: ILSVRC-2012's for 1000 classes, else None."""
    if num_classes == imagenet_classes.NUM_CLASSES:
        return list(imagenet_classes.class_names())
    return None
