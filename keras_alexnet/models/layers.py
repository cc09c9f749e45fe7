"""The layers AlexNet needs beyond stock Keras: LRN and grouped convolution (fc6 ... fc8's
Dense and Dropout with a TensorFlow twist are in head_layers.py).

They compute with TensorFlow's ops under the TensorFlow backend (its fused LRN kernel, and
convolutions that export as standard SavedModel ops) and with `keras.ops` under any other
backend, so a saved model loads and predicts under JAX and PyTorch too. In training
(training=True) LRN takes a faster path on TensorFlow (XLA) that gives the same numbers;
inference and SavedModels keep the standard op, and LiteRT and ONNX files get LRN from
operations that quantize (`graph_for_conversion`). TensorFlow is imported only where the
TensorFlow backend runs: this module imports under any backend.
"""

import contextlib
import functools

import keras
import numpy as np


def _tensorflow():
    """TensorFlow, imported only by the TensorFlow backend's code paths."""
    import tensorflow as tf

    return tf


def _on_tensorflow():
    return keras.backend.backend() == "tensorflow"


@contextlib.contextmanager
def graph_for_conversion(model, decompose_lrn=True):
    """Traces a model for converters: grouped convolutions without their empty-batch guard,
    and LRN from operations that have integer and fast kernels.

    The guard of GroupedConv2D is a `tf.cond` that only TensorFlow's own oneDNN kernels
    need. In a LiteRT or ONNX graph it would put each convolution, and its weights, inside
    an If subgraph, where the LiteRT converter keeps the weights as variables that no
    quantization reaches.

    LRN becomes `lrn_from_ops` (a product, a 1x1 convolution, a log, an exp and two more
    products) instead of one LRN op: TFLite's LOCAL_RESPONSE_NORMALIZATION has float
    kernels only and calls `pow` per activation, so in an int8 file each LRN ran in float32
    between a DEQUANTIZE and a QUANTIZE and took most of the file's time; its operations
    here all have int8 kernels in TFLite (LOG and EXP as lookup tables) and float ones that
    XNNPACK runs. The outputs are the same to float32 rounding.

    Trace the functions to convert inside this context. Each layer holds its own switch
    (`GroupedConv2D.empty_batch_guard`, `LocalResponseNormalization.decomposed`), so other
    models are untouched while this one is converted.

    Args:
        model: the model to trace; its layers, nested models' included, are switched
            inside the context and switched back after.
        decompose_lrn: whether LRN layers compute `lrn_from_ops`; False keeps the LRN op.
    """
    switches = []
    for layer in _layers_within(model):
        if isinstance(layer, GroupedConv2D):
            switches.append((layer, "empty_batch_guard", False))
        elif isinstance(layer, LocalResponseNormalization) and decompose_lrn:
            switches.append((layer, "decomposed", True))
    previous = [getattr(layer, name) for layer, name, _ in switches]
    for layer, name, value in switches:
        setattr(layer, name, value)
    try:
        yield
    finally:
        for (layer, name, _), value in zip(switches, previous):
            setattr(layer, name, value)


def _layers_within(layer):
    """The layer and, for a model, every layer inside it, nested models' too."""
    yield layer
    for inner in getattr(layer, "layers", ()):
        yield from _layers_within(inner)


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
    return value


def _pair(name, value):
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints. Received: {name}={value!r}")
    for v in value:
        _positive_int(name, v)
    return value


@keras.saving.register_keras_serializable(package="keras_alexnet")
class LocalResponseNormalization(keras.layers.Layer):
    """Local response normalisation across channels (Krizhevsky et al. 2012, section 3.3).

    For the activity a[x, y, i] of channel i at position (x, y), with N channels:

        b[x,y,i] = a[x,y,i] / (k + alpha * sum_{j=max(0, i-r)}^{min(N-1, i+r)} a[x,y,j]^2) ^ beta

    where r = depth_radius, so the window holds n = 2r + 1 channels. As the paper prints
    it, alpha multiplies the plain sum of squares: it is NOT divided by n. The paper's
    constants are k=2, n=5, alpha=1e-4, beta=0.75, the defaults here. Caffe and PyTorch
    divide alpha by n, so their `alpha=1e-4` is `alpha=2e-5` here.

    The sum of squares is computed in float32 whatever the dtype policy: in float16 the
    window sum overflows above 65504 and the result collapses to zero. The output is in
    the layer's compute dtype.

    Under the TensorFlow backend it runs `tf.nn.local_response_normalization` (one fused
    kernel, and the LRN op of exported SavedModels; LiteRT and ONNX files get
    `lrn_from_ops`, see `graph_for_conversion`), but in training
    (training=True), where it computes the same formula and its exact gradient with XLA,
    three times faster on CPU (the outputs agree to float32 rounding); under any other
    backend (JAX, PyTorch) the same formula in `keras.ops`.

    Args:
        depth_radius: r, half the window width; the window holds 2r+1 channels.
        bias: k, the additive constant; must be positive.
        alpha: the scale of the sum of squares.
        beta: the exponent.
        **kwargs: base layer arguments (name, dtype, ...).

    Attributes:
        decomposed: whether `call` computes `lrn_from_ops` instead of the LRN op under the
            TensorFlow backend (False). Not an argument and not saved: only
            `graph_for_conversion` turns it on, for the duration of a conversion.
    """

    def __init__(self, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        if isinstance(depth_radius, bool) or not isinstance(depth_radius, int) or depth_radius < 0:
            raise ValueError(
                "depth_radius must be a non-negative integer. "
                f"Received: depth_radius={depth_radius!r}"
            )
        if not bias > 0:
            raise ValueError(f"bias must be positive. Received: bias={bias!r}")
        if not alpha >= 0:
            raise ValueError(f"alpha must be non-negative. Received: alpha={alpha!r}")
        if not beta >= 0:
            raise ValueError(f"beta must be non-negative. Received: beta={beta!r}")
        self.depth_radius = depth_radius
        self.bias = float(bias)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.decomposed = False

    def call(self, inputs, training=None):
        if _on_tensorflow():
            tf = _tensorflow()
            if training:
                lrn = _lrn_for_training
            elif self.decomposed and len(inputs.shape) == 4:
                lrn = lrn_from_ops
            else:
                lrn = tf.nn.local_response_normalization
            outputs = lrn(
                tf.cast(inputs, tf.float32),
                depth_radius=self.depth_radius,
                bias=self.bias,
                alpha=self.alpha,
                beta=self.beta,
            )
            return tf.cast(outputs, self.compute_dtype)
        ops = keras.ops
        x = ops.cast(inputs, "float32")
        squares = ops.square(x)
        channels = squares.shape[-1]
        r = self.depth_radius
        # The window sum over channels i-r ... i+r, zeros beyond the edges: 2r+1 shifted
        # slices of the zero-padded squares.
        padded = ops.pad(squares, [[0, 0]] * (len(squares.shape) - 1) + [[r, r]])
        window = padded[..., 0:channels]
        for d in range(1, 2 * r + 1):
            window = window + padded[..., d : d + channels]
        outputs = x / ops.power(self.bias + self.alpha * window, self.beta)
        return ops.cast(outputs, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha, beta=self.beta
        )
        return config


def lrn_from_ops(x, depth_radius, bias, alpha, beta):
    """LRN of float32 NHWC activations from operations that quantize, for exported files.

    With s = bias + alpha * (the window sum of squares), LRN is x * s^-beta, computed as

        squares = x * x
        s = conv2d(squares, W) + bias    a 1x1 convolution, W[j, i] = alpha if |i - j| <= r
        y = x * exp(-beta * log(s))

    The window sum over channels i-r ... i+r is a 1x1 convolution with a fixed banded
    kernel (alpha folded into it, bias as the convolution's bias), and the power is a log
    and an exp, which TFLite runs in int8 as lookup tables (s >= bias > 0, so the log is
    defined). In float32 it equals `tf.nn.local_response_normalization` to about 1e-7
    relative (tested on real activations).

    Args:
        x: float32 activations [batch, height, width, channels].
        depth_radius, bias, alpha, beta: as in `LocalResponseNormalization`.

    Returns:
        float32 [batch, height, width, channels].
    """
    tf = _tensorflow()
    channels = x.shape[-1]
    offsets = abs(np.arange(channels)[:, None] - np.arange(channels)[None, :])
    band = np.where(offsets <= depth_radius, alpha, 0.0).astype(np.float32)
    s = tf.nn.conv2d(x * x, band[None, None], strides=1, padding="VALID")
    s = tf.nn.bias_add(s, np.full(channels, bias, np.float32))  # a vector: tf2onnx folds it
    return x * tf.exp(-beta * tf.math.log(s))


def _lrn_for_training(x, depth_radius, bias, alpha, beta):
    """LRN computed by XLA, with its exact gradient, for training on the TensorFlow backend.

    TensorFlow's LRN op sums each window as a product with a (channels x channels) band
    matrix and takes a log and an exp per activation; its gradient, LRNGrad, loops with a
    scalar `pow`. On CPU the two LRN layers cost as much as a convolution layer. The same
    formula as a few fused XLA loops takes a third of that. The outputs agree with the op's
    to float32 rounding (about 4e-7 relative); inference and exported graphs keep the op.
    """
    tf = _tensorflow()
    forward, gradient = _xla_lrn()

    @tf.custom_gradient
    def lrn(x):
        def grad(dy):
            return gradient(x, dy, depth_radius, bias, alpha, beta)

        return forward(x, depth_radius, bias, alpha, beta), grad

    return lrn(x)


@functools.cache
def _xla_lrn():
    """The XLA-compiled forward pass and input gradient of LRN, as (forward, gradient).

    With the window W(i) of channel i, s_i = bias + alpha * sum_{j in W(i)} x_j^2 and
    y_i = x_i * s_i^-beta. The window is symmetric (j in W(i) iff i in W(j)), so

        dx_j = dy_j * s_j^-beta - 2 * alpha * beta * x_j * sum_{i in W(j)} dy_i * y_i / s_i

    The gradient recomputes s from x rather than keeping it from the forward pass: writing
    and reading it back costs more than the few fused operations that make it.
    """
    tf = _tensorflow()

    def window_sum(v, r):
        # 2r+1 shifted slices of the zero-padded channels; XLA fuses them into one loop.
        channels = v.shape[-1]
        padded = tf.pad(v, [[0, 0]] * (len(v.shape) - 1) + [[r, r]])
        return tf.add_n([padded[..., d : d + channels] for d in range(2 * r + 1)])

    def norm_and_power(x, depth_radius, bias, alpha, beta):
        s = bias + alpha * window_sum(tf.square(x), depth_radius)
        if beta == 0.75:
            # The paper's exponent: s^-0.75 = 1 / sqrt(s * sqrt(s)), two square roots
            # instead of the log and exp of a general power.
            return s, tf.math.rsqrt(s * tf.sqrt(s))
        return s, tf.pow(s, -beta)

    @tf.function(jit_compile=True, autograph=False)
    def forward(x, depth_radius, bias, alpha, beta):
        _, power = norm_and_power(x, depth_radius, bias, alpha, beta)
        return x * power

    @tf.function(jit_compile=True, autograph=False)
    def gradient(x, dy, depth_radius, bias, alpha, beta):
        s, power = norm_and_power(x, depth_radius, bias, alpha, beta)
        window = window_sum(dy * x * power / s, depth_radius)
        return dy * power - (2.0 * alpha * beta) * x * window

    return forward, gradient


@keras.saving.register_keras_serializable(package="keras_alexnet")
class GroupedConv2D(keras.layers.Layer):
    """2D convolution in `groups` independent towers (Krizhevsky et al. 2012, section 3.2).

    The input channels and the filters are both split into `groups` equal parts; the
    filters of part g see only the input channels of part g. This is the paper's two-GPU
    layout of conv2, conv4 and conv5: conv2 has 256 kernels of 5x5x48, 128 on each GPU,
    each seeing only the 48 maps of its own GPU.

    There is ONE kernel variable, in the grouped layout (kh, kw, in_channels // groups,
    filters), the layout of `keras.layers.Conv2D(groups=...)` and of Caffe's `group`.
    The filters of group g are kernel[..., g*f:(g+1)*f] with f = filters // groups, and
    output channels g*f:(g+1)*f come from input channels g*c:(g+1)*c with
    c = in_channels // groups. Weights are therefore the same whichever way the
    convolution is computed:

    - implementation="towers" (default) slices input and kernel and runs one plain
      convolution per group. It trains everywhere, including on CPUs where TensorFlow has
      no gradient for grouped convolution, and exports SavedModels with standard ops only.
    - implementation="native" passes the whole grouped kernel to one `tf.nn.conv2d`,
      which cuDNN runs as a grouped convolution on GPUs. TensorFlow's CPU kernels compute
      its forward pass but not its gradient: use it on GPUs only.

    Both give the same outputs (tested). Under backends other than TensorFlow (JAX,
    PyTorch) the same two ways run in `keras.ops.conv`, and a saved model predicts the same
    probabilities there. `keras.layers.Conv2D(groups=...)` is avoided because Keras
    compiles every grouped call with XLA, which is slower here and puts XLA-only ops into
    exported SavedModels.

    Args:
        filters: the total number of filters over all groups; divisible by `groups`.
        kernel_size: an int or (height, width).
        groups: the number of towers; must divide `filters` and the input channels.
        strides: an int or (height, width).
        padding: "valid" or "same".
        activation: applied to the concatenated output.
        use_bias: whether to add a bias per filter.
        kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer:
            as in `keras.layers.Conv2D`.
        implementation: "towers" or "native" (see above).
        **kwargs: base layer arguments (name, dtype, ...).

    Attributes:
        empty_batch_guard: whether `call` skips the convolution of an empty batch (True;
            see `call`). Not an argument and not saved: only `graph_for_conversion` turns
            it off, for the duration of a conversion.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        groups=2,
        strides=1,
        padding="valid",
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        implementation="towers",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = _positive_int("filters", filters)
        self.groups = _positive_int("groups", groups)
        if filters % groups:
            raise ValueError(f"groups must divide filters ({filters}). Received: groups={groups}")
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.strides = _pair("strides", strides)
        padding = str(padding).lower()
        if padding not in ("valid", "same"):
            raise ValueError(f'padding must be "valid" or "same". Received: padding={padding!r}')
        self.padding = padding
        if implementation not in ("towers", "native"):
            raise ValueError(
                'implementation must be "towers" or "native". '
                f"Received: implementation={implementation!r}"
            )
        self.implementation = implementation
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.input_spec = keras.layers.InputSpec(ndim=4)
        self.empty_batch_guard = True

    def build(self, input_shape):
        in_channels = input_shape[-1]
        if in_channels is None or in_channels % self.groups:
            raise ValueError(
                f"groups must divide the input channels ({in_channels}). "
                f"Received: groups={self.groups}"
            )
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: in_channels})
        self.kernel = self.add_weight(
            name="kernel",
            shape=(*self.kernel_size, in_channels // self.groups, self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
            )
        else:
            self.bias = None

    def call(self, inputs):
        if not _on_tensorflow():
            return self._convolve_keras_ops(inputs)
        if not self.empty_batch_guard:
            return self._convolve(inputs)
        tf = _tensorflow()
        # TensorFlow's oneDNN CPU kernels return an empty batch unchanged, with the input's
        # height, width and channels, and a replica's share of a last, partial batch can be
        # empty: an empty batch skips the convolution for an empty output of the right shape.
        return tf.cond(
            tf.shape(inputs)[0] > 0,
            lambda: self._convolve(inputs),
            lambda: tf.zeros(self._output_shape(inputs), self.compute_dtype),
        )

    def _convolve(self, inputs):
        tf = _tensorflow()
        kernel = tf.convert_to_tensor(self.kernel)
        strides = (1, *self.strides, 1)
        padding = self.padding.upper()
        if self.implementation == "native" or self.groups == 1:
            outputs = tf.nn.conv2d(inputs, kernel, strides, padding)
        else:
            towers = zip(
                tf.split(inputs, self.groups, axis=-1), tf.split(kernel, self.groups, axis=-1)
            )
            outputs = tf.concat([tf.nn.conv2d(x, k, strides, padding) for x, k in towers], -1)
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias)
        return self.activation(outputs)

    def _output_shape(self, inputs):
        shape = _tensorflow().shape(inputs)
        return [
            shape[0],
            _conv_output_length(shape[1], self.kernel_size[0], self.strides[0], self.padding),
            _conv_output_length(shape[2], self.kernel_size[1], self.strides[1], self.padding),
            self.filters,
        ]

    def _convolve_keras_ops(self, inputs):
        ops = keras.ops
        kernel = ops.convert_to_tensor(self.kernel)
        if self.implementation == "native" or self.groups == 1:
            # keras.ops.conv runs a grouped convolution when the kernel has
            # in_channels // groups input channels.
            outputs = ops.conv(inputs, kernel, self.strides, self.padding)
        else:
            towers = zip(
                ops.split(inputs, self.groups, axis=-1), ops.split(kernel, self.groups, axis=-1)
            )
            outputs = ops.concatenate(
                [ops.conv(x, k, self.strides, self.padding) for x, k in towers], axis=-1
            )
        if self.use_bias:
            outputs = outputs + ops.cast(self.bias, outputs.dtype)
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        return (
            batch,
            _conv_output_length(height, self.kernel_size[0], self.strides[0], self.padding),
            _conv_output_length(width, self.kernel_size[1], self.strides[1], self.padding),
            self.filters,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            groups=self.groups,
            strides=self.strides,
            padding=self.padding,
            activation=keras.activations.serialize(self.activation),
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=keras.regularizers.serialize(self.bias_regularizer),
            implementation=self.implementation,
        )
        return config


def _conv_output_length(length, kernel, stride, padding):
    if length is None:
        return None
    if padding == "same":
        return -(-length // stride)
    return (length - kernel) // stride + 1
