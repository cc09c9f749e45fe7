"""Pretrained AlexNet weights into this package's model, the work of the convert tool:

    python -m keras_alexnet.convert bvlc_alexnet.caffemodel --output alexnet_caffe.keras
    python -m keras_alexnet.convert bvlc_alexnet.npy --allow_pickle --output alexnet_npy.keras
    python -m keras_alexnet.convert alexnet-owt-7be5be79.pth --output alexnet_torch.keras

Three sources are read by `weight_files`, each into a `PretrainedWeights`: the layer arrays
exactly as the file holds them, and the conventions they follow (the table in
weight_files.py). Here each convention is undone.

Keras kernels are (h, w, in, out) and (in, out), and Keras flattens pool5 as (row, column,
channel). Grouped kernels need nothing beyond the transpose: Caffe's `group: 2` blob of
conv2, (256, 48, 5, 5), holds the filters of group g in rows g*128:(g+1)*128, each seeing
input channels g*48:(g+1)*48, which is `layers.GroupedConv2D`'s layout after the transpose.

The converted model takes raw RGB pixels in 0-255 (227x227 crops, no mean subtracted by the
caller): the normalisation the weights expect is put in the model's "input_rescaling" layer
(`AlexNet(input_scale=..., input_offset=...)`), from the constants of `weight_files`.
"""

import dataclasses
import os

import numpy as np
from absl import logging

from keras_alexnet.models import alexnet as model_lib
from keras_alexnet.models import imagenet_classes
from keras_alexnet.models import labels
from keras_alexnet.models import layer_weights
from keras_alexnet.weights import weight_files


def keras_weights(pretrained, pool5_shape):
    """Converts the source layouts into this package's Keras layouts (NumPy only).

    Args:
        pretrained: a `weight_files.PretrainedWeights`.
        pool5_shape: (rows, columns, channels) of the model's pool5, whose flattening
            fc6 sees.

    Returns:
        {layer name: (kernel, bias)}: conv kernels (h, w, in, out) with conv1 reading RGB,
        dense kernels (in, out) with fc6's rows in Keras' (row, column, channel) order;
        float32.

    Raises:
        ValueError: if an array has the wrong number of dimensions, or fc6's inputs do not
            match pool5; the message names the layer and the shapes.
    """
    converted = {}
    for name in weight_files.LAYER_NAMES:
        kernel, bias = pretrained.layers[name]
        kernel = np.asarray(kernel)
        if name.startswith("conv"):
            if kernel.ndim != 4:
                raise ValueError(
                    f"{name}: a convolution kernel must have 4 dimensions. "
                    f"Received: {name} weights of shape {kernel.shape}"
                )
            if pretrained.kernel_layout == "oihw":
                kernel = kernel.transpose(2, 3, 1, 0)
            if name == "conv1" and pretrained.channel_order == "bgr":
                # The model reads RGB: conv1's input channels are re-ordered to match.
                kernel = kernel[:, :, ::-1, :]
        else:
            if kernel.ndim != 2:
                raise ValueError(
                    f"{name}: a dense kernel must have 2 dimensions. "
                    f"Received: {name} weights of shape {kernel.shape}"
                )
            if pretrained.dense_layout == "oi":
                kernel = kernel.T
            if name == "fc6" and pretrained.fc6_rows == "chw":
                rows, cols, channels = (int(d) for d in pool5_shape)
                if kernel.shape[0] != rows * cols * channels:
                    raise ValueError(
                        f"fc6: its kernel (in, out) {kernel.shape} does not take pool5's "
                        f"{rows}x{cols}x{channels} = {rows * cols * channels} values. "
                        f"Received: fc6 weights of shape {pretrained.layers[name][0].shape}"
                    )
                # Row c*rows*cols + r*cols + w (Caffe, PyTorch) -> r*cols*channels + w*channels + c.
                kernel = kernel.reshape(channels, rows, cols, -1).transpose(1, 2, 0, 3)
                kernel = kernel.reshape(rows * cols * channels, -1)
        converted[name] = (
            np.ascontiguousarray(kernel, dtype=np.float32),
            np.asarray(bias, dtype=np.float32).reshape(-1),
        )
    return converted


def load_pretrained(model, pretrained):
    """Sets an AlexNet's conv and dense weights from pretrained ones.

    Every shape is checked before any weight is set, so a mismatch leaves the model as
    it was.

    Args:
        model: an `AlexNet` of the pretrained weights' variant and number of classes.
        pretrained: a `weight_files.PretrainedWeights`.

    Returns:
        The model.

    Raises:
        ValueError: if a layer's converted weights do not have the model's shapes; the
            message names the layer and both shapes.
    """
    pool5_shape = model.get_layer("pool5").output.shape[1:]
    layer_weights.set_weights_checked(
        model,
        keras_weights(pretrained, pool5_shape).items(),
        lambda name, expected, received: (
            f"{name}: the converted (kernel, bias) shapes {received} do not match the "
            f"model's {expected} (a {pretrained.variant!r} AlexNet). Is the file "
            f"{pretrained.format!r} weights of that network?"
        ),
    )
    return model


def build_model(pretrained, num_classes=None, classifier_activation="softmax", variant=None):
    """Builds the AlexNet that the pretrained weights belong to, and sets them.

    Args:
        pretrained: a `weight_files.PretrainedWeights`.
        num_classes: the number of classes fc8 must have, or None to take fc8's.
        classifier_activation: fc8's activation, "softmax" or None for logits.
        variant: the variant the weights belong to (any of `variants.VARIANTS`); default:
            the format's ("caffe" for Caffe's files, "one_weird_trick" for torchvision's).

    Returns:
        A `keras.Model` from raw RGB pixels in 0-255 (227x227) to class probabilities (or
        logits), carrying the weights' normalisation in its "input_rescaling" layer and,
        for 1000 classes, the ILSVRC-2012 class names (`labels.ClassNames`).

    Raises:
        ValueError: if num_classes does not match fc8, or from `load_pretrained`.
    """
    if num_classes is not None and num_classes != pretrained.num_classes:
        raise ValueError(
            f"fc8: the weights have {pretrained.num_classes} classes (bias shape "
            f"{np.shape(pretrained.layers['fc8'][1])}), not the {num_classes} asked for. "
            f"Received: num_classes={num_classes!r}"
        )
    for note in pretrained.notes:
        logging.warning("%s", note)
    if variant is not None:
        pretrained = dataclasses.replace(pretrained, variant=variant)
    model = model_lib.AlexNet(
        pretrained.num_classes,
        variant=pretrained.variant,
        classifier_activation=classifier_activation,
        input_scale=pretrained.input_scale,
        input_offset=pretrained.input_offset,
        name=f"alexnet_{pretrained.format}",
    )
    load_pretrained(model, pretrained)
    class_names = imagenet_classes.class_names()
    if pretrained.num_classes == len(class_names):
        model = labels.with_class_names(model, class_names)
    return model


def check_output(output):
    """The output path of `convert`, checked: a .keras file that does not exist yet."""
    output = os.fspath(output)
    if not output.endswith(".keras"):
        raise ValueError(f"output must be a .keras file. Received: output={output!r}")
    if os.path.exists(output):
        raise ValueError(f"output already exists; refusing to overwrite it. Received: {output=}")
    return output


def convert(
    src,
    output,
    fmt=None,
    allow_pickle=False,
    num_classes=None,
    classifier_activation="softmax",
    variant=None,
):
    """Converts a pretrained AlexNet into this package's model and saves it.

    Args:
        src: the source file: a .caffemodel, a caffe-tensorflow .npy dict, or torchvision's
            .pth state dict.
        output: the .keras file to write; it must not exist.
        fmt: "caffemodel", "npy", "torch", or None to detect it from src's extension.
        allow_pickle: allow reading a pickled .npy (see `weight_files.read_npy_dict`).
        num_classes: the number of classes fc8 must have, or None to take fc8's.
        classifier_activation: fc8's activation, "softmax" or None for logits.
        variant: the variant the weights belong to; default: the format's.

    Returns:
        The converted `keras.Model`, also saved to output: variant "caffe" for .caffemodel
        and .npy, "one_weird_trick" for torchvision. It takes raw RGB pixels in 0-255 and,
        with 1000 classes, carries the ILSVRC-2012 class names.

    Raises:
        ValueError: if output exists or is not a .keras path, and from the readers and
            `build_model`.
        ImportError: for a torch file when PyTorch is not installed.
    """
    output = check_output(output)
    pretrained = weight_files.read_weights(src, fmt, allow_pickle=allow_pickle)
    model = build_model(pretrained, num_classes, classifier_activation, variant)
    check_output(output)  # Reading and building took a while: check again.
    parent = os.path.dirname(output)
    if parent:
        os.makedirs(parent, exist_ok=True)
    model.save(output)
    return model
