"""What a built AlexNet is: a layer by name, its variant, its input normalisation, its cost.

These read any AlexNet, built by `alexnet.AlexNet` or loaded from a file, by its layer
names (conv1 ... conv5, lrn1, fc6 ... fc8, input_rescaling).
"""

import math

import keras

from keras_alexnet.models import layers
from keras_alexnet.models import variants


def layer_or_none(model, name):
    """The model's layer of that name, or None."""
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def variant_of(model):
    """The name of the variant whose layout a model has, or None.

    Every variant of `variants.VARIANTS` is tried, in order: the layout is the filters and
    towers of conv1 ... conv5, the LRN settings and, when the model has them, the units of
    fc6 and fc7.
    """
    for name, spec in variants.VARIANTS.items():
        if _has_layout(model, spec):
            return name
    return None


def _has_layout(model, spec):
    convs_ok = all(
        (layer := layer_or_none(model, conv.name)) is not None
        and layer.filters == conv.filters
        and getattr(layer, "groups", 1) == conv.groups
        for conv in spec.convs
    )
    lrn = layer_or_none(model, "lrn1")
    if spec.lrn is None:
        lrn_ok = lrn is None
    else:
        lrn_ok = lrn is not None and all(
            math.isclose(getattr(lrn, key), value) for key, value in spec.lrn.items()
        )
    dense_ok = all(
        (layer := layer_or_none(model, name)) is None or layer.units == units
        for name, units in zip(("fc6", "fc7"), spec.dense_units)
    )
    return convs_ok and lrn_ok and dense_ok


def normalizes_input(model):
    """Whether a model subtracts its own input mean (converted pretrained weights do).

    Such a model takes raw 0-255 RGB pixels: the input pipeline must not subtract a mean
    image as well.
    """
    rescaling = layer_or_none(model, "input_rescaling")
    if rescaling is None:
        return False
    offset = rescaling.get_config()["offset"]
    return any(o != 0 for o in (offset if isinstance(offset, (list, tuple)) else [offset]))


def multiply_adds(model):
    """Multiply-adds of one forward pass for one image, over conv and dense layers.

    Args:
        model: a built AlexNet (any variant or implementation).

    Returns:
        A dict from layer name to multiply-adds; the network's total is their sum. A
        training step costs about three times the forward pass.
    """
    counts = {}
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None or not isinstance(
            layer, (keras.layers.Conv2D, keras.layers.Dense, layers.GroupedConv2D)
        ):
            continue
        # Each output value needs one multiply-add per kernel weight feeding it.
        fan_in = math.prod(kernel.shape[:-1])
        outputs = math.prod(layer.output.shape[1:])
        counts[layer.name] = fan_in * outputs
    return counts
