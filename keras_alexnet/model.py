"""The AlexNet builder: the paper's network and two well-known variants of it."""

import dataclasses
import math
import os

import keras

from keras_alexnet import layers
from keras_alexnet import paper


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """One convolution block: conv (+ ReLU), then optional LRN and max-pooling."""

    name: str
    filters: int
    kernel_size: int
    strides: int = 1
    padding: int = 0
    groups: int = 1
    bias_init: float = 0.0
    stddev: float = paper.INIT_WEIGHT_STDDEV
    lrn: bool = False
    pool: bool = False


@dataclasses.dataclass(frozen=True)
class Variant:
    """A complete description of one network: its layers, constants and sources.

    Attributes:
        name: the variant's name, as passed to `AlexNet(variant=...)`.
        source: where this layout comes from.
        convs: the five convolution blocks, in order.
        lrn: LocalResponseNormalization arguments, or None for no LRN.
        dense_bias_init: initial biases of fc6, fc7 and fc8.
        dense_stddev: weight init std of fc6, fc7 and fc8.
        dropout_before_dense: True for torchvision's order (dropout, fc, ReLU) instead of
            the paper's (fc, ReLU, dropout).
        torch_init: PyTorch's default init (uniform within 1/sqrt(fan_in) for weights
            and biases) instead of the Gaussian weights and constant biases above.
        departures: the topics of the conformance report ("layout", "lrn", "init",
            "dropout") in which this variant knowingly parts from the paper; the report
            flags any other difference as a failure.
    """

    name: str
    source: str
    convs: tuple
    lrn: dict = None
    dense_bias_init: tuple = (1.0, 1.0, 0.0)
    dense_stddev: tuple = (paper.INIT_WEIGHT_STDDEV,) * 3
    dropout_before_dense: bool = False
    torch_init: bool = False
    departures: tuple = ()


def _paper_convs(**overrides):
    """The paper's five convolution blocks, with per-layer field overrides."""
    convs = []
    for spec in paper.LAYERS:
        if spec.kind != "conv":
            continue
        conv = ConvSpec(
            name=spec.name,
            filters=spec.filters,
            kernel_size=spec.kernel_size,
            strides=spec.strides,
            padding=spec.padding,
            groups=spec.groups,
            bias_init=spec.bias_init,
            lrn=any(step.startswith("lrn") for step in spec.followed_by),
            pool=any(step.startswith("pool") for step in spec.followed_by),
        )
        convs.append(dataclasses.replace(conv, **overrides.get(spec.name, {})))
    return tuple(convs)


VARIANTS = {
    "paper": Variant(
        name="paper",
        source=paper.CITATION + " Sections 3.1-3.5 and 5.",
        convs=_paper_convs(),
        lrn=dict(
            depth_radius=paper.LRN_N // 2,
            bias=paper.LRN_K,
            alpha=paper.LRN_ALPHA,
            beta=paper.LRN_BETA,
        ),
        dense_bias_init=tuple(paper.LAYERS_BY_NAME[n].bias_init for n in ("fc6", "fc7", "fc8")),
    ),
    "caffe": Variant(
        name="caffe",
        source="Caffe's models/bvlc_alexnet (deploy.prototxt and train_val.prototxt), the "
        "BVLC reference weights of the grouped, LRN network.",
        convs=_paper_convs(
            conv2={"bias_init": 0.1}, conv4={"bias_init": 0.1}, conv5={"bias_init": 0.1}
        ),
        # Caffe's LRN: k=1, alpha=1e-4 divided by local_size=5 on the plain sum.
        lrn=dict(depth_radius=2, bias=1.0, alpha=1e-4 / 5, beta=0.75),
        dense_bias_init=(0.1, 0.1, 0.0),
        dense_stddev=(0.005, 0.005, 0.01),
        departures=("lrn", "init"),
    ),
    "one_weird_trick": Variant(
        name="one_weird_trick",
        source="torchvision.models.alexnet, after A. Krizhevsky, 'One weird trick for "
        "parallelizing convolutional neural networks', arXiv:1404.5997, 2014.",
        convs=(
            ConvSpec("conv1", 64, 11, strides=4, padding=2, pool=True),
            ConvSpec("conv2", 192, 5, padding=2, pool=True),
            ConvSpec("conv3", 384, 3, padding=1),
            ConvSpec("conv4", 256, 3, padding=1),
            ConvSpec("conv5", 256, 3, padding=1, pool=True),
        ),
        dropout_before_dense=True,
        torch_init=True,
        departures=("layout", "lrn", "init", "dropout"),
    ),
}

IMPLEMENTATIONS = ("towers", "native", "keras_groups")
INITS = ("paper", "he")
# --mixed_precision values of the entry points and the Keras dtype policies they set.
PRECISIONS = {"none": None, "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


def pool5_size(input_size, variant="paper"):
    """The spatial side of pool5 for a square `input_size` input, or 0 if it vanishes."""
    size = input_size
    for conv in _get_variant(variant).convs:
        if conv.padding and conv.strides == 1:
            pass  # "same": the size is kept
        else:
            size = (size + 2 * conv.padding - conv.kernel_size) // conv.strides + 1
        if conv.pool:
            size = (size - paper.POOL_SIZE) // paper.POOL_STRIDE + 1
        if size < 1:
            return 0
    return size


def _get_variant(variant):
    if variant not in VARIANTS:
        raise ValueError(
            f"variant must be one of {sorted(VARIANTS)}. Received: variant={variant!r}"
        )
    return VARIANTS[variant]


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


def AlexNet(
    num_classes=1000,
    *,
    variant="paper",
    input_shape=(227, 227, 3),
    dropout=paper.DROPOUT_RATE,
    weight_decay=paper.WEIGHT_DECAY,
    include_top=True,
    classifier_activation="softmax",
    implementation="towers",
    init="paper",
    input_scale=1.0,
    input_offset=0.0,
    weights=None,
    dtype_policy=None,
    name="alexnet",
):
    """Builds AlexNet as a `keras.Model`, after Krizhevsky, Sutskever and Hinton (2012).

    The default is the network of the paper: conv1 (96 11x11 kernels, stride 4), ReLU,
    LRN, overlapping max-pool; conv2 (256 5x5 kernels in two towers of 128), ReLU, LRN,
    pool; conv3 (384, connected across towers); conv4 (384, two towers); conv5 (256, two
    towers), pool; fc6 and fc7 (4096, ReLU, dropout); fc8 (num_classes, softmax). Layers
    are named as in the paper (conv1 ... conv5, lrn1, lrn2, pool1, pool2, pool5, flatten,
    fc6, dropout6, fc7, dropout7, fc8). Grouped layers are `layers.GroupedConv2D`, whose
    single kernel holds both towers. `python -m keras_alexnet.verify` checks this network
    against the paper layer by layer.

    Variants:
      - "paper": the paper. Init: weights N(0, 0.01); biases 1 in conv2, conv4, conv5,
        fc6 and fc7, 0 elsewhere. LRN k=2, n=5, alpha=1e-4 on the plain sum, beta=0.75.
        60,965,224 parameters with 1000 classes.
      - "caffe": Caffe's bvlc_alexnet, the layout of the BVLC pretrained weights. LRN
        k=1 with alpha=1e-4 divided by n=5; biases 0.1 where the paper has 1; fc6 and fc7
        weights N(0, 0.005). Same parameters as "paper".
      - "one_weird_trick": torchvision's alexnet (Krizhevsky 2014): 64-192-384-256-256
        channels, conv1 padded by 2, no LRN, no groups, dropout before fc6 and fc7,
        PyTorch's default init. 61,100,840 parameters. torchvision's adaptive 6x6 average
        pool is the identity at this input size and is left out.

    Weight decay: the paper's update v <- 0.9 v - wd * lr * w - lr * dL/dw couples the
    decay into the momentum, which is exactly SGD with momentum on the loss plus an L2
    penalty of wd/2 * |w|^2. This builder therefore puts `keras.regularizers.L2(wd / 2)`
    on every kernel (not on biases, as in Caffe; the paper does not say), and the
    training loop adds `model.losses` to the loss. Keras optimizers' `weight_decay=`
    argument is decoupled (AdamW-style, not scaled through the momentum) and would not
    match the paper's update, so it is not used.

    Args:
        num_classes: the number of classes of fc8.
        variant: "paper", "caffe" or "one_weird_trick".
        input_shape: (height, width, channels). The paper's 224x224 does not fit its own
            conv1 arithmetic; 227x227 does (see `paper.DISCREPANCIES`).
        dropout: the dropout rate after fc6 and fc7.
        weight_decay: the paper's coupled weight decay; 0 or None for none.
        include_top: whether to include fc6-fc8; without them the output is pool5.
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
        weights: None, or the path of a .keras file saved from an AlexNet (a converted
            pretrained model from `python -m keras_alexnet.convert`, or an exported one):
            its weights are loaded layer by layer, by name; with include_top=False only
            up to pool5. The file's input normalisation (input_scale, input_offset) is kept
            unless other values are passed.
        dtype_policy: a Keras dtype policy for the layers, e.g. "mixed_float16" or
            "mixed_bfloat16"; default: Keras' global policy. Under a mixed policy the
            variables stay float32, LRN computes in float32, and fc8 (logits and softmax)
            is float32, so the model takes and returns float32.
        name: the model's name.

    Returns:
        A `keras.Model` from images (float32, mean subtracted) to class probabilities,
        or to the pool5 maps when include_top is False.

    Raises:
        ValueError: for an unknown variant or implementation, num_classes < 1, a dropout
            rate outside [0, 1), an input shape that is not (H, W, C), or an input too small
            to leave a 6x6 pool5 map when include_top is True.
    """
    spec = _get_variant(variant)
    source = None
    if weights is not None:
        source = _load_weights_file(weights)
        rescaling = layer_or_none(source, "input_rescaling")
        if rescaling is not None and input_scale == 1.0 and input_offset == 0.0:
            input_scale = rescaling.get_config()["scale"]
            input_offset = rescaling.get_config()["offset"]
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
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(
            f"input_shape must be (height, width, channels). Received: input_shape={input_shape}"
        )
    height, width, channels = input_shape
    if channels is None or channels < 1:
        raise ValueError(
            f"input_shape must have a known number of channels. Received: input_shape={input_shape}"
        )
    input_scale = _per_channel("input_scale", input_scale, channels)
    input_offset = _per_channel("input_offset", input_offset, channels)
    if any(v <= 0 for v in input_scale):
        raise ValueError(f"input_scale must be positive. Received: input_scale={input_scale}")
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

    policy = keras.dtype_policies.get(dtype_policy or keras.config.dtype_policy())
    mixed = policy.compute_dtype != policy.variable_dtype
    regularizer = keras.regularizers.L2(weight_decay / 2) if weight_decay else None
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if set(input_scale) != {1.0} or set(input_offset) != {0.0}:
        scale = input_scale[0] if len(set(input_scale)) == 1 else list(input_scale)
        offset = input_offset[0] if len(set(input_offset)) == 1 else list(input_offset)
        x = keras.layers.Rescaling(scale, offset, dtype=policy, name="input_rescaling")(x)
    in_channels = channels
    for conv in spec.convs:
        fan_in = conv.kernel_size**2 * in_channels // conv.groups
        kernel_init, bias_init = _initializers(spec, conv.stddev, conv.bias_init, fan_in, init)
        if conv.padding and conv.strides == 1:
            padding = "same"
        else:
            padding = "valid"
            if conv.padding:
                x = keras.layers.ZeroPadding2D(
                    conv.padding, dtype=policy, name=f"pad{conv.name[-1]}"
                )(x)
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
            x = layers.GroupedConv2D(
                groups=conv.groups, implementation=implementation, **conv_args
            )(x)
        in_channels = conv.filters
        index = conv.name[-1]
        if conv.lrn and spec.lrn:
            x = layers.LocalResponseNormalization(**spec.lrn, dtype=policy, name=f"lrn{index}")(x)
        if conv.pool:
            x = keras.layers.MaxPooling2D(
                paper.POOL_SIZE, paper.POOL_STRIDE, dtype=policy, name=f"pool{index}"
            )(x)
    if not include_top:
        return _finish(keras.Model(inputs, x, name=name), source)

    x = keras.layers.Flatten(dtype=policy, name="flatten")(x)
    dense_names = ("fc6", "fc7", "fc8")
    for i, dense_name in enumerate(dense_names):
        last = dense_name == "fc8"
        units = num_classes if last else paper.LAYERS_BY_NAME[dense_name].filters
        kernel_init, bias_init = _initializers(
            spec, spec.dense_stddev[i], spec.dense_bias_init[i], x.shape[-1], init
        )
        dropout_layer = keras.layers.Dropout(dropout, dtype=policy, name=f"dropout{dense_name[2:]}")
        if spec.dropout_before_dense and not last:
            x = dropout_layer(x)
        x = keras.layers.Dense(
            units,
            activation=classifier_activation if last else "relu",
            kernel_initializer=kernel_init,
            bias_initializer=bias_init,
            kernel_regularizer=regularizer,
            # Under a mixed-precision policy the logits and the softmax stay float32.
            dtype="float32" if last and mixed else policy,
            name=dense_name,
        )(x)
        if not spec.dropout_before_dense and not last:
            x = dropout_layer(x)
    return _finish(keras.Model(inputs, x, name=name), source)


def _load_weights_file(path):
    if not str(path).endswith(".keras"):
        raise ValueError(f"weights must be the path of a .keras file. Received: weights={path!r}")
    if not os.path.exists(path):
        raise ValueError(f"weights file does not exist. Received: weights={path!r}")
    return keras.models.load_model(path, compile=False)


def layer_or_none(model, name):
    """The model's layer of that name, or None."""
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def _finish(model, source):
    if source is not None:
        copy_weights(source, model)
    return model


def copy_weights(source, target, skip=()):
    """Copies weights from one AlexNet to another, layer by layer, by name.

    Args:
        source: the model to copy from.
        target: the model to copy into; every one of its layers with weights, except those
            in `skip`, must exist in `source` with the same weight shapes.
        skip: names of target layers to leave as they are (e.g. a new fc8).

    Raises:
        ValueError: naming the layer and both shapes, before any weight is changed.
    """
    pairs = []
    for layer in target.layers:
        if not layer.weights or layer.name in skip:
            continue
        other = layer_or_none(source, layer.name)
        if other is None:
            raise ValueError(
                f"The weights have no layer {layer.name!r}; they hold "
                f"{[other.name for other in source.layers if other.weights]}."
            )
        want = [tuple(w.shape) for w in layer.weights]
        have = [tuple(w.shape) for w in other.weights]
        if want != have:
            raise ValueError(
                f"Layer {layer.name!r}: the model needs weights of shapes {want}, the file "
                f"holds {have}."
            )
        pairs.append((layer, other))
    for layer, other in pairs:
        layer.set_weights(other.get_weights())


def variant_of(model):
    """The name of the variant whose layout a model has (conv filters, towers, LRN), or None."""
    for name, spec in VARIANTS.items():
        layers_ok = all(
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
        if layers_ok and lrn_ok:
            return name
    return None


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
