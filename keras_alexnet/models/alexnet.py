"""The AlexNet builder: the network a variant describes, layer by layer (see variants.py)."""

import math

import keras

from keras_alexnet.models import head_layers
from keras_alexnet.models import labels
from keras_alexnet.models import layers
from keras_alexnet.models import variants
from keras_alexnet.paper import numbers as paper

IMPLEMENTATIONS = ("towers", "native", "keras_groups")
INITS = ("paper", "he")
# --mixed_precision values of the entry points and the Keras dtype policies they set.
PRECISIONS = {"none": None, "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


def pool5_size(input_size, variant="paper"):
    """The spatial side of pool5 for a square `input_size` input, or 0 if it vanishes."""
    size = input_size
    for conv in variants.get(variant).convs:
        if conv.padding and conv.strides == 1:
            pass  # "same": the size is kept
        else:
            size = (size + 2 * conv.padding - conv.kernel_size) // conv.strides + 1
        if conv.pool:
            size = (size - paper.POOL_SIZE) // paper.POOL_STRIDE + 1
        if size < 1:
            return 0
    return size


def _initializers(variant, stddev, bias_init, fan_in, init):
    if init == "he":
        # He et al. 2015: variance 2 / fan_in keeps the ReLU activations' scale from layer
        # to layer; biases start at 0.
        return (
            keras.initializers.VarianceScaling(2.0, "fan_in", "truncated_normal"),
            keras.initializers.Zeros(),
        )
    if variant.torch_init:
        # PyTorch's default for Conv2d and Linear: kaiming_uniform(a=sqrt(5)) for the
        # weights, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same range for biases.
        limit = 1.0 / math.sqrt(fan_in)
        return (
            keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
            keras.initializers.RandomUniform(-limit, limit),
        )
    return (
        keras.initializers.RandomNormal(0.0, stddev),
        keras.initializers.Constant(bias_init),
    )


POOLINGS = (None, "avg", "max")


def AlexNet(
    num_classes=1000,
    *,
    variant=None,
    input_shape=(227, 227, 3),
    input_tensor=None,
    dropout=paper.DROPOUT_RATE,
    weight_decay=paper.WEIGHT_DECAY,
    include_top=True,
    pooling=None,
    classifier_activation="softmax",
    implementation="towers",
    init="paper",
    input_scale=1.0,
    input_offset=0.0,
    class_names=None,
    dtype_policy=None,
    name="alexnet",
):
    """Builds AlexNet as a `keras.Model`, after Krizhevsky, Sutskever and Hinton (2012).

    The architecture only: `keras_alexnet.AlexNet` (weights/applications.py) is this
    builder with `weights=`, a saved or a public pretrained weight file.

    The default is the network of the paper: conv1 (96 11x11 kernels, stride 4), ReLU,
    LRN, overlapping max-pool; conv2 (256 5x5 kernels in two towers of 128), ReLU, LRN,
    pool; conv3 (384, connected across towers); conv4 (384, two towers); conv5 (256, two
    towers), pool; fc6 and fc7 (4096, ReLU, dropout); fc8 (num_classes, softmax). Layers
    are named as in the paper (conv1 ... conv5, lrn1, lrn2, pool1, pool2, pool5, flatten,
    fc6, dropout6, fc7, dropout7, fc8). Grouped layers are `layers.GroupedConv2D`, whose
    single kernel holds both towers. `python -m keras_alexnet.verify` checks this network
    against the paper layer by layer.

    Weight decay: the paper's update v <- 0.9 v - wd * lr * w - lr * dL/dw couples the
    decay into the momentum, which is exactly SGD with momentum on the loss plus an L2
    penalty of wd/2 * |w|^2. This builder therefore puts `keras.regularizers.L2(wd / 2)`
    on every kernel (not on biases, as in Caffe; the paper does not say), and the
    training loop adds `model.losses` to the loss. Keras optimizers' `weight_decay=`
    argument is decoupled (AdamW-style, not scaled through the momentum) and would not
    match the paper's update, so it is not used.

    Args:
        num_classes: the number of classes of fc8.
        variant: "paper", "caffe" (Caffe's bvlc_alexnet) or "one_weird_trick"
            (torchvision's), described in variants.py, or the name of any other
            `variants.Variant` put in `variants.VARIANTS`. Default (None): "paper".
        input_shape: (height, width, channels). The paper's 224x224 does not fit its own
            conv1 arithmetic; 227x227 does (see `paper.DISCREPANCIES`). Ignored when
            input_tensor is given.
        input_tensor: a Keras tensor (the output of `keras.Input()` or of a layer) to use
            as the image input instead of a new `keras.Input`, as keras.applications has
            it; the model's inputs are then the sources of that tensor.
        dropout: the dropout rate after fc6 and fc7.
        weight_decay: the paper's coupled weight decay; 0 or None for none.
        include_top: whether to include fc6-fc8; without them the output is pool5.
        pooling: with include_top=False: None for the pool5 maps, "avg" or "max" for one
            feature per pool5 channel, pooled over rows and columns (a layer "avg_pool"
            or "max_pool").
        classifier_activation: the activation of fc8, "softmax" or None for logits.
        implementation: how grouped convolutions run: "towers" (one convolution per
            tower; trains on CPU and exports standard ops), "native" (one grouped
            `tf.nn.conv2d`; GPU only), or "keras_groups" (`keras.layers.Conv2D(groups=)`,
            which Keras compiles with XLA; kept to compare against). The weights are
            the same in all three.
        init: "paper" for the variant's own initialisation (the paper's, Caffe's or
            PyTorch's), or "he" for He et al.'s (2015) normal init with zero biases, which
            trains from scratch far sooner than the paper's; the built-in demo uses it.
        input_scale, input_offset: the model first computes input * input_scale +
            input_offset, in a Rescaling layer named "input_rescaling" that exists only when
            they are not 1 and 0; each is a number or one value per channel. The paper feeds
            raw pixels minus the mean image (1 and 0). He init wants inputs of unit
            variance, so the demo recipe passes 1 / (the training set's pixel std); converted
            pretrained weights carry their own normalisation here.
        class_names: the names of the num_classes classes, carried inside the model (a
            `labels.ClassNames` layer after fc8) for `decode_predictions`, export and
            predict; default: none.
        dtype_policy: a Keras dtype policy for the layers, e.g. "mixed_float16" or
            "mixed_bfloat16"; default: Keras' global policy. Under a mixed policy the
            variables stay float32, LRN computes in float32, and fc8 (logits and softmax)
            is float32, so the model takes and returns float32.
        name: the model's name.

    Returns:
        A `keras.Model` from images (float32, mean subtracted) to class probabilities,
        or to the pool5 maps when include_top is False (one value per channel with
        pooling).

    Raises:
        ValueError: for an unknown variant or implementation, num_classes < 1, a dropout
            rate outside [0, 1), an input shape that is not (H, W, C), or an input too small
            to leave a 6x6 pool5 map when include_top is True; pooling with
            include_top=True, or class_names with include_top=False; an input_tensor that
            is not a Keras tensor.
    """
    check_top(pooling, class_names, include_top)
    variant = variant or "paper"
    spec = variants.get(variant)
    _check_options(num_classes, include_top, dropout, weight_decay, implementation, init)
    if input_tensor is not None:
        input_shape = tuple(input_tensor.shape[1:])
    input_shape = _check_input_shape(input_shape)
    input_scale, input_offset = _check_normalization(input_scale, input_offset, input_shape[-1])
    _check_pool5_size(input_shape, variant, include_top)

    policy = keras.dtype_policies.get(dtype_policy or keras.config.dtype_policy())
    regularizer = keras.regularizers.L2(weight_decay / 2) if weight_decay else None
    shared = dict(init=init, regularizer=regularizer, policy=policy)
    if input_tensor is None:
        inputs = x = keras.Input(shape=input_shape, name="image")
    elif keras.backend.is_keras_tensor(input_tensor):
        inputs, x = keras.utils.get_source_inputs(input_tensor), input_tensor
        inputs = inputs[0] if len(inputs) == 1 else inputs
    else:
        raise ValueError(
            "input_tensor must be a Keras tensor (from keras.Input or a layer). "
            f"Received: input_tensor={input_tensor!r}"
        )
    x = _input_rescaling(x, input_scale, input_offset, policy)
    in_channels = input_shape[-1]
    for conv in spec.convs:
        x = _conv_block(x, spec, conv, in_channels, implementation=implementation, **shared)
        in_channels = conv.filters
    if include_top:
        x = keras.layers.Flatten(dtype=policy, name="flatten")(x)
        x = dense_head(x, spec, num_classes, dropout, classifier_activation, **shared)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(dtype=policy, name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(dtype=policy, name="max_pool")(x)
    model = keras.Model(inputs, x, name=name)
    if class_names is not None:
        model = labels.with_class_names(model, class_names)
    return model


def check_top(pooling, class_names, include_top):
    """Raises unless pooling and class_names agree with include_top (see `AlexNet`)."""
    if class_names is not None and not include_top:
        raise ValueError(
            "class_names name fc8's classes: they need include_top=True. "
            f"Received: include_top={include_top!r}"
        )
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}. Received: pooling={pooling!r}")
    if pooling is not None and include_top:
        raise ValueError(
            "pooling applies to the pool5 maps of include_top=False; fc6 takes them whole. "
            f"Received: pooling={pooling!r} with include_top=True"
        )


def _check_options(num_classes, include_top, dropout, weight_decay, implementation, init):
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"implementation must be one of {IMPLEMENTATIONS}. "
            f"Received: implementation={implementation!r}"
        )
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}. Received: init={init!r}")
    if include_top and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise ValueError(
            f"num_classes must be an integer >= 1. Received: num_classes={num_classes!r}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
    if weight_decay is not None and weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0. Received: weight_decay={weight_decay!r}")


def _check_input_shape(input_shape):
    """input_shape as a tuple (height, width, channels) with a known number of channels."""
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(
            f"input_shape must be (height, width, channels). Received: input_shape={input_shape}"
        )
    channels = input_shape[-1]
    if channels is None or channels < 1:
        raise ValueError(
            f"input_shape must have a known number of channels. Received: input_shape={input_shape}"
        )
    return input_shape


def _check_normalization(input_scale, input_offset, channels):
    """input_scale and input_offset as tuples of one float per channel."""
    input_scale = _per_channel("input_scale", input_scale, channels)
    input_offset = _per_channel("input_offset", input_offset, channels)
    if any(v <= 0 for v in input_scale):
        raise ValueError(f"input_scale must be positive. Received: input_scale={input_scale}")
    return input_scale, input_offset


def _check_pool5_size(input_shape, variant, include_top):
    """Raises unless pool5 is at least 6x6 (with the top) or not empty (without it)."""
    height, width, _ = input_shape
    if include_top:
        if height is None or width is None:
            raise ValueError(
                "include_top=True needs a fixed input height and width (fc6 sees the whole "
                f"pool5 map). Received: input_shape={input_shape}"
            )
        smallest = min(pool5_size(height, variant), pool5_size(width, variant))
        if smallest < paper.POOL5_SHAPE[0]:
            raise ValueError(
                f"input_shape {input_shape} leaves a {smallest}x{smallest} pool5 map; fc6 needs "
                f"at least {paper.POOL5_SHAPE[0]}x{paper.POOL5_SHAPE[1]} "
                "(227x227 is the paper's). Pass a larger input_shape, or include_top=False. "
                f"Received: input_shape={input_shape}"
            )
    elif (
        height is not None
        and width is not None
        and min(pool5_size(height, variant), pool5_size(width, variant)) < 1
    ):
        raise ValueError(
            f"input_shape {input_shape} is too small: pool5 would be empty. "
            f"Received: input_shape={input_shape}"
        )


def _input_rescaling(x, input_scale, input_offset, policy):
    """x * input_scale + input_offset in a layer "input_rescaling", unless it is x."""
    if set(input_scale) == {1.0} and set(input_offset) == {0.0}:
        return x
    scale = input_scale[0] if len(set(input_scale)) == 1 else list(input_scale)
    offset = input_offset[0] if len(set(input_offset)) == 1 else list(input_offset)
    return keras.layers.Rescaling(scale, offset, dtype=policy, name="input_rescaling")(x)


def _conv_block(x, spec, conv, in_channels, *, implementation, init, regularizer, policy):
    """One of conv1 ... conv5 (with its ReLU and padding), then its LRN and max-pool if any."""
    index = conv.name[-1]
    fan_in = conv.kernel_size**2 * in_channels // conv.groups
    kernel_init, bias_init = _initializers(spec, conv.stddev, conv.bias_init, fan_in, init)
    if conv.padding and conv.strides == 1:
        padding = "same"
    else:
        padding = "valid"
        if conv.padding:
            x = keras.layers.ZeroPadding2D(conv.padding, dtype=policy, name=f"pad{index}")(x)
    conv_args = dict(
        filters=conv.filters,
        kernel_size=conv.kernel_size,
        strides=conv.strides,
        padding=padding,
        activation="relu",
        kernel_initializer=kernel_init,
        bias_initializer=bias_init,
        kernel_regularizer=regularizer,
        dtype=policy,
        name=conv.name,
    )
    if conv.groups == 1:
        x = keras.layers.Conv2D(**conv_args)(x)
    elif implementation == "keras_groups":
        x = keras.layers.Conv2D(groups=conv.groups, **conv_args)(x)
    else:
        x = layers.GroupedConv2D(groups=conv.groups, implementation=implementation, **conv_args)(x)
    if conv.lrn and spec.lrn:
        x = layers.LocalResponseNormalization(**spec.lrn, dtype=policy, name=f"lrn{index}")(x)
    if conv.pool:
        x = keras.layers.MaxPooling2D(
            paper.POOL_SIZE, paper.POOL_STRIDE, dtype=policy, name=f"pool{index}"
        )(x)
    return x


def dense_head(x, spec, num_classes, dropout, activation, *, init, regularizer, policy):
    """fc6 and fc7 (ReLU and dropout, in the variant's order), then fc8, on the flat pool5
    tensor `x` of a variant `spec`; `init` as AlexNet's, `regularizer` on the kernels,
    `policy` a Keras dtype policy. Returns fc8's output."""
    mixed = policy.compute_dtype != policy.variable_dtype
    units = (*spec.dense_units, num_classes)
    for i, dense_name in enumerate(("fc6", "fc7", "fc8")):
        last = dense_name == "fc8"
        kernel_init, bias_init = _initializers(
            spec, spec.dense_stddev[i], spec.dense_bias_init[i], x.shape[-1], init
        )
        dropout_layer = head_layers.ReplicaDropout(
            dropout, dtype=policy, name=f"dropout{dense_name[2:]}"
        )
        if spec.dropout_before_dense and not last:
            x = dropout_layer(x)
        x = head_layers.FastInputGradientDense(
            units[i],
            activation=activation if last else "relu",
            kernel_initializer=kernel_init,
            bias_initializer=bias_init,
            kernel_regularizer=regularizer,
            # Under a mixed-precision policy the logits and the softmax stay float32.
            dtype="float32" if last and mixed else policy,
            name=dense_name,
        )(x)
        if not spec.dropout_before_dense and not last:
            x = dropout_layer(x)
    return x


def precision_policy(mixed_precision):
    """The Keras dtype policy of a --mixed_precision value (None for float32)."""
    if mixed_precision not in PRECISIONS:
        raise ValueError(
            f"mixed_precision must be one of {list(PRECISIONS)}. "
            f"Received: mixed_precision={mixed_precision!r}"
        )
    return PRECISIONS[mixed_precision]


def _per_channel(name, value, channels):
    """A number or one number per channel, as a tuple of `channels` floats."""
    values = (value,) * channels if isinstance(value, (int, float)) else tuple(value)
    if len(values) != channels or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    ):
        raise ValueError(
            f"{name} must be a number or {channels} numbers, one per channel. "
            f"Received: {name}={value!r}"
        )
    return tuple(float(v) for v in values)
