"""LocalResponseNormalization and GroupedConv2D against independent references."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_alexnet.models import layers


def lrn_reference(a, depth_radius, bias, alpha, beta):
    """The paper's formula (section 3.3) in float64 NumPy, one channel at a time."""
    a = np.asarray(a, np.float64)
    channels = a.shape[-1]
    out = np.empty_like(a)
    for i in range(channels):
        lo, hi = max(0, i - depth_radius), min(channels - 1, i + depth_radius)
        window = np.sum(a[..., lo : hi + 1] ** 2, axis=-1)
        out[..., i] = a[..., i] / (bias + alpha * window) ** beta
    return out


@pytest.mark.parametrize(
    "depth_radius, bias, alpha, beta",
    [(2, 2.0, 1e-4, 0.75), (2, 1.0, 2e-5, 0.75), (1, 0.5, 1e-2, 0.5), (0, 2.0, 1e-3, 1.0)],
)
def test_lrn_matches_numpy(depth_radius, bias, alpha, beta):
    rng = np.random.default_rng(0)
    # Activations of the size conv1 produces after its ReLU, so alpha * sum is not negligible.
    x = np.maximum(rng.normal(0, 60, (2, 5, 4, 11)), 0).astype(np.float32)
    layer = layers.LocalResponseNormalization(depth_radius, bias, alpha, beta)
    got = keras.ops.convert_to_numpy(layer(x))
    want = lrn_reference(x, depth_radius, bias, alpha, beta)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    # What exported LiteRT and ONNX files compute instead (graph_for_conversion).
    from_ops = layers.lrn_from_ops(tf.constant(x), depth_radius, bias, alpha, beta).numpy()
    np.testing.assert_allclose(from_ops, want, rtol=1e-5)
    # The normalisation must actually act on these inputs, or the test proves nothing.
    assert np.max(np.abs(want - x / bias**beta)) > 1e-2


def test_lrn_alpha_is_not_divided_by_n():
    x = np.full((1, 1, 1, 5), 10.0, np.float32)
    out = keras.ops.convert_to_numpy(layers.LocalResponseNormalization()(x))
    # Middle channel: the window holds all five maps, sum of squares 500.
    np.testing.assert_allclose(out[0, 0, 0, 2], 10.0 / (2.0 + 1e-4 * 500.0) ** 0.75, rtol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_lrn_reduced_precision_does_not_overflow(policy):
    keras.config.set_dtype_policy(policy)
    layer = layers.LocalResponseNormalization()
    rng = np.random.default_rng(1)
    # Window sums of squares near 5 * 300^2 = 450,000, far above float16's 65504.
    x = rng.uniform(200, 300, (2, 3, 3, 8)).astype(np.float32)
    got = layer(x)
    assert got.dtype == layer.compute_dtype
    want = lrn_reference(x, 2, 2.0, 1e-4, 0.75)
    got = keras.ops.convert_to_numpy(tf.cast(got, tf.float32))
    assert np.all(got > 1.0), "float16 overflow would have zeroed the output"
    np.testing.assert_allclose(got, want, rtol=1e-2)
    # The plain TF op in float16 is what this layer guards against.
    naive = tf.nn.local_response_normalization(tf.cast(x, tf.float16), 2, 2.0, 1e-4, 0.75)
    if policy == "mixed_float16":
        assert not np.allclose(naive.numpy().astype(np.float32), want, rtol=1e-2)


LRN_CASES = [(2, 2.0, 1e-4, 0.75), (2, 1.0, 2e-5, 0.75), (1, 0.5, 1e-2, 0.5), (0, 2.0, 1e-3, 1.0)]


def lrn_input_gradient_reference(a, upstream, depth_radius, bias, alpha, beta, h=1e-3):
    """d(sum(upstream * LRN(a)))/da by central finite differences of `lrn_reference`."""
    a = np.asarray(a, np.float64)
    grad = np.empty_like(a)
    for k in np.ndindex(a.shape):
        step = np.zeros_like(a)
        step[k] = h
        plus = lrn_reference(a + step, depth_radius, bias, alpha, beta)
        minus = lrn_reference(a - step, depth_radius, bias, alpha, beta)
        grad[k] = np.sum(upstream * (plus - minus)) / (2 * h)
    return grad


def _lrn_gradient_inputs(seed):
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.normal(0, 60, (2, 2, 3, 11)), 0).astype(np.float32)
    # Mostly zeros, as the gradients that reach an LRN through a ReLU and a max-pool are.
    upstream = (rng.normal(size=x.shape) * (rng.uniform(size=x.shape) < 0.3)).astype(np.float32)
    return x, upstream


@pytest.mark.parametrize("depth_radius, bias, alpha, beta", LRN_CASES)
def test_lrn_in_training_matches_numpy(depth_radius, bias, alpha, beta):
    # In training the layer computes LRN with XLA instead of TensorFlow's op: the same
    # numbers to the tolerance of the op itself.
    x = np.maximum(np.random.default_rng(0).normal(0, 60, (2, 5, 4, 11)), 0).astype(np.float32)
    layer = layers.LocalResponseNormalization(depth_radius, bias, alpha, beta)
    want = lrn_reference(x, depth_radius, bias, alpha, beta)
    for call in (layer, tf.function(layer)):
        got = keras.ops.convert_to_numpy(call(x, training=True))
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("depth_radius, bias, alpha, beta", LRN_CASES)
def test_lrn_gradient_matches_finite_differences_and_tensorflow(depth_radius, bias, alpha, beta):
    x, upstream = _lrn_gradient_inputs(8)
    want = lrn_input_gradient_reference(x, upstream, depth_radius, bias, alpha, beta)
    # TensorFlow's own gradient of its LRN op (LRNGrad), a second, independent reference.
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = tf.nn.local_response_normalization(xt, depth_radius, bias, alpha, beta)
    tensorflow_grad = tape.gradient(y, xt, output_gradients=upstream).numpy()
    np.testing.assert_allclose(tensorflow_grad, want, rtol=2e-5, atol=1e-6)
    layer = layers.LocalResponseNormalization(depth_radius, bias, alpha, beta)

    def gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
        return tape.gradient(y, x, output_gradients=upstream)

    for call in (gradient, tf.function(gradient)):
        got = call(xt).numpy()
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(got, tensorflow_grad, rtol=2e-5, atol=1e-6)
    # The normalisation's own term must count, or the gradient would be upstream / k^beta.
    assert np.max(np.abs(want - upstream / bias**beta)) > 1e-3


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_lrn_gradient_under_mixed_precision(policy):
    keras.config.set_dtype_policy(policy)
    rng = np.random.default_rng(9)
    # Window sums of squares far above float16's 65504: the layer must compute in float32.
    x = rng.uniform(200, 300, (1, 2, 2, 7)).astype(np.float32)
    upstream = rng.normal(size=x.shape).astype(np.float32)
    want = lrn_input_gradient_reference(x, upstream, 2, 2.0, 1e-4, 0.75)
    layer = layers.LocalResponseNormalization()

    @tf.function
    def gradient(x):
        # In a model the layer's input is the previous layer's output, in the compute dtype.
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
        return y, tape.gradient(y, x, output_gradients=tf.cast(upstream, y.dtype))

    y, got = gradient(tf.cast(x, layer.compute_dtype))
    assert y.dtype == layer.compute_dtype and got.dtype == layer.compute_dtype
    y, got = tf.cast(y, tf.float32).numpy(), tf.cast(got, tf.float32).numpy()
    np.testing.assert_allclose(y, lrn_reference(x, 2, 2.0, 1e-4, 0.75), rtol=1e-2)
    assert np.all(np.isfinite(got))
    # The input and the upstream gradient are rounded to the compute dtype: the tolerance
    # of the forward pass, against the largest component.
    np.testing.assert_allclose(got, want, atol=1e-2 * np.max(np.abs(want)))


def test_lrn_training_graph_is_xla_and_inference_graph_is_the_op():
    layer = layers.LocalResponseNormalization()
    spec = tf.TensorSpec((None, 5, 5, 8))

    def ops(training):
        graph = tf.function(lambda x: layer(x, training=training)).get_concrete_function(spec)
        definition = graph.graph.as_graph_def()
        nodes = list(definition.node) + [n for f in definition.library.function for n in f.node_def]
        return {node.op for node in nodes}, nodes

    inference, nodes = ops(False)
    assert "LRN" in inference
    assert not any("_XlaMustCompile" in node.attr for node in nodes)
    training, _ = ops(True)
    assert "LRN" not in training


def test_lrn_config_round_trip():
    layer = layers.LocalResponseNormalization(3, 1.5, 2e-4, 0.6, name="lrn9")
    clone = layers.LocalResponseNormalization.from_config(layer.get_config())
    assert (clone.depth_radius, clone.bias, clone.alpha, clone.beta) == (3, 1.5, 2e-4, 0.6)
    assert clone.name == "lrn9"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(depth_radius=-1), "depth_radius"),
        (dict(depth_radius=2.5), "depth_radius"),
        (dict(bias=0.0), "bias"),
        (dict(alpha=-1.0), "alpha"),
        (dict(beta=-0.5), "beta"),
    ],
)
def test_lrn_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        layers.LocalResponseNormalization(**kwargs)


def block_diagonal(kernel, groups):
    """The dense kernel equivalent to a grouped one: zero where towers do not connect."""
    kh, kw, cin_group, filters = kernel.shape
    f = filters // groups
    dense = np.zeros((kh, kw, cin_group * groups, filters), kernel.dtype)
    for g in range(groups):
        dense[:, :, g * cin_group : (g + 1) * cin_group, g * f : (g + 1) * f] = kernel[
            :, :, :, g * f : (g + 1) * f
        ]
    return dense


CASES = [
    # (input shape, filters, kernel, groups, strides, padding): conv2, conv4, odd cases.
    ((2, 13, 13, 8), 12, 5, 2, 1, "same"),
    ((2, 9, 11, 12), 6, 3, 3, 1, "valid"),
    ((1, 19, 19, 4), 8, 11, 2, 4, "valid"),
    ((2, 10, 10, 6), 4, 3, 2, 2, "same"),
]


def _grouped(shape, filters, k, groups, strides, padding, implementation="towers"):
    layer = layers.GroupedConv2D(
        filters,
        k,
        groups=groups,
        strides=strides,
        padding=padding,
        bias_initializer="random_normal",
        implementation=implementation,
    )
    layer.build(shape)
    return layer


@pytest.mark.parametrize("shape, filters, k, groups, strides, padding", CASES)
def test_grouped_conv_matches_block_diagonal_conv(shape, filters, k, groups, strides, padding):
    layer = _grouped(shape, filters, k, groups, strides, padding)
    kernel = layer.kernel.numpy()
    bias = layer.bias.numpy()
    x = tf.constant(np.random.default_rng(2).normal(size=shape).astype(np.float32))
    dense = tf.constant(block_diagonal(kernel, groups))

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        tape.watch(dense)
        got = layer(x)
        want = tf.nn.conv2d(x, dense, strides, padding.upper()) + bias
        loss_got = tf.reduce_sum(tf.sin(got))
        loss_want = tf.reduce_sum(tf.sin(want))
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        tape.gradient(loss_got, x).numpy(), tape.gradient(loss_want, x).numpy(), atol=1e-4
    )
    # The kernel gradient equals the dense kernel's gradient restricted to the towers.
    grad_dense = tape.gradient(loss_want, dense).numpy()
    grad_kernel = tape.gradient(loss_got, layer.kernel).numpy()
    mask = block_diagonal(np.ones_like(kernel), groups)
    np.testing.assert_allclose(block_diagonal(grad_kernel, groups), grad_dense * mask, atol=1e-3)


def test_group_g_sees_only_its_own_maps():
    layer = _grouped((1, 7, 7, 4), 6, 3, 2, 1, "same")
    x = np.zeros((1, 7, 7, 4), np.float32)
    x[..., 2:] = 1.0  # only the second tower's input maps are non-zero
    out = layer(x).numpy() - layer.bias.numpy()
    assert np.allclose(out[..., :3], 0.0)
    assert not np.allclose(out[..., 3:], 0.0)


@pytest.mark.parametrize("shape, filters, k, groups, strides, padding", CASES[:2])
def test_grouped_conv_matches_keras_conv2d_groups(shape, filters, k, groups, strides, padding):
    layer = _grouped(shape, filters, k, groups, strides, padding)
    reference = keras.layers.Conv2D(filters, k, strides, padding, groups=groups)
    reference.build(shape)
    reference.set_weights(layer.get_weights())  # same kernel layout, loaded as is
    x = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    np.testing.assert_allclose(layer(x).numpy(), reference(x).numpy(), rtol=1e-4, atol=1e-4)


def test_native_implementation_gives_the_same_outputs():
    shape = (2, 13, 13, 8)
    towers = _grouped(shape, 12, 3, 2, 1, "same")
    native = _grouped(shape, 12, 3, 2, 1, "same", implementation="native")
    native.set_weights(towers.get_weights())
    x = np.random.default_rng(4).normal(size=shape).astype(np.float32)
    # TensorFlow's CPU kernels run the grouped forward pass (not its gradient).
    np.testing.assert_allclose(towers(x).numpy(), native(x).numpy(), rtol=1e-4, atol=1e-4)


def test_grouped_conv_graph_has_no_xla_ops():
    layer = _grouped((1, 9, 9, 4), 4, 3, 2, 1, "same")
    fn = tf.function(layer).get_concrete_function(tf.TensorSpec((None, 9, 9, 4)))
    graph = fn.graph.as_graph_def()
    # The graph and the functions it calls (the convolution runs in a tf.cond branch).
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    ops = {node.op for node in nodes}
    assert "Conv2D" in ops
    assert not any(op.startswith("Xla") for op in ops)
    assert not any("_XlaMustCompile" in node.attr or "_XlaCompile" in node.attr for node in nodes)


@pytest.mark.parametrize("implementation", ["towers", "native"])
@pytest.mark.parametrize("groups", [1, 2])
def test_grouped_conv_on_an_empty_batch_and_a_batch_of_one(implementation, groups):
    layer = _grouped((3, 9, 9, 4), 6, 3, groups, 2, "valid", implementation=implementation)
    x = np.random.default_rng(5).normal(size=(3, 9, 9, 4)).astype(np.float32)
    whole = layer(x).numpy()
    graph_call = tf.function(layer)
    for call in (layer, graph_call):
        # TensorFlow's oneDNN CPU convolution returns an empty batch unchanged, with the
        # input's channels; the layer must give the convolution's shape.
        assert tuple(call(x[:0]).shape) == (0, 4, 4, 6)
        np.testing.assert_allclose(call(x[1:2]).numpy(), whole[1:2], rtol=1e-5, atol=1e-5)


def _grouped_model(name):
    """A model with a GroupedConv2D inside a nested model."""
    inputs = keras.Input((9, 9, 4))
    inner = keras.Sequential([layers.GroupedConv2D(4, 3, groups=2)], name=f"{name}_inner")
    return keras.Model(inputs, inner(inputs), name=name)


def _has_cond(model):
    fn = tf.function(model).get_concrete_function(tf.TensorSpec((None, 9, 9, 4)))
    return any(node.op in ("If", "StatelessIf") for node in fn.graph.as_graph_def().node)


def test_graph_for_conversion_drops_the_guard_of_its_model_only():
    converted, other = _grouped_model("converted"), _grouped_model("other")
    grouped = [m.layers[-1].layers[0] for m in (converted, other)]
    x = np.random.default_rng(6).normal(size=(2, 9, 9, 4)).astype(np.float32)
    want = converted(x).numpy()
    assert _has_cond(converted)
    with layers.graph_for_conversion(converted):
        assert [layer.empty_batch_guard for layer in grouped] == [False, True]
        assert not _has_cond(converted) and _has_cond(other)
        np.testing.assert_array_equal(converted(x).numpy(), want)
    assert [layer.empty_batch_guard for layer in grouped] == [True, True]
    assert _has_cond(converted)
    assert "empty_batch_guard" not in grouped[0].get_config()


def _lrn_model(name):
    inputs = keras.Input((3, 3, 8))
    outputs = layers.LocalResponseNormalization(name=f"{name}_lrn")(keras.layers.ReLU()(inputs))
    return keras.Model(inputs, outputs, name=name)


def _graph_ops(model):
    fn = tf.function(model).get_concrete_function(tf.TensorSpec((None, 3, 3, 8)))
    return {node.op for node in fn.graph.as_graph_def().node}


def test_graph_for_conversion_decomposes_the_lrn_of_its_model_only():
    converted, other = _lrn_model("converted"), _lrn_model("other")
    lrns = [m.layers[-1] for m in (converted, other)]
    x = np.random.default_rng(7).normal(0, 80, size=(2, 3, 3, 8)).astype(np.float32)
    want = converted(x).numpy()
    assert "LRN" in _graph_ops(converted)
    with layers.graph_for_conversion(converted):
        assert [layer.decomposed for layer in lrns] == [True, False]
        ops = _graph_ops(converted)
        assert "LRN" not in ops and {"Conv2D", "Log", "Exp"} <= ops
        assert "LRN" in _graph_ops(other)
        np.testing.assert_allclose(converted(x).numpy(), want, rtol=1e-5)
    with layers.graph_for_conversion(converted, decompose_lrn=False):
        assert "LRN" in _graph_ops(converted)
    assert [layer.decomposed for layer in lrns] == [False, False]
    assert "LRN" in _graph_ops(converted)
    assert "decomposed" not in lrns[0].get_config()


def test_grouped_conv_config_round_trip():
    layer = layers.GroupedConv2D(
        8,
        (3, 5),
        groups=4,
        strides=2,
        padding="same",
        activation="relu",
        kernel_regularizer=keras.regularizers.L2(1e-3),
        name="conv9",
    )
    clone = layers.GroupedConv2D.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.kernel_size == (3, 5) and clone.groups == 4 and clone.strides == (2, 2)
    assert clone.kernel_regularizer.l2 == pytest.approx(1e-3)


def test_grouped_conv_bad_arguments():
    with pytest.raises(ValueError, match=r"groups must divide filters \(10\). Received: groups=3"):
        layers.GroupedConv2D(10, 3, groups=3)
    with pytest.raises(ValueError, match=r"input channels \(96\). Received: groups=5"):
        layers.GroupedConv2D(10, 3, groups=5)(keras.Input((8, 8, 96)))
    with pytest.raises(ValueError, match="padding"):
        layers.GroupedConv2D(4, 3, padding="full")
    with pytest.raises(ValueError, match="implementation"):
        layers.GroupedConv2D(4, 3, implementation="xla")
    with pytest.raises(ValueError, match="kernel_size"):
        layers.GroupedConv2D(4, (3, 3, 3))
    with pytest.raises(ValueError, match="filters"):
        layers.GroupedConv2D(0, 3)


@pytest.fixture
def keras_ops_path(monkeypatch):
    """The layers take their `keras.ops` path, the one JAX and PyTorch run, under TensorFlow."""
    monkeypatch.setattr(layers, "_on_tensorflow", lambda: False)


@pytest.mark.parametrize(
    "depth_radius, bias, alpha, beta", [(2, 2.0, 1e-4, 0.75), (1, 0.5, 1e-2, 0.5)]
)
def test_lrn_keras_ops_path_matches_numpy(keras_ops_path, depth_radius, bias, alpha, beta):
    x = np.maximum(np.random.default_rng(6).normal(0, 60, (2, 5, 4, 11)), 0).astype(np.float32)
    layer = layers.LocalResponseNormalization(depth_radius, bias, alpha, beta)
    got = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(got, lrn_reference(x, depth_radius, bias, alpha, beta), rtol=2e-5)


def test_lrn_keras_ops_path_in_float16_does_not_overflow(keras_ops_path):
    keras.config.set_dtype_policy("mixed_float16")
    x = np.random.default_rng(1).uniform(200, 300, (2, 3, 3, 8)).astype(np.float32)
    got = keras.ops.convert_to_numpy(layers.LocalResponseNormalization()(x)).astype(np.float32)
    np.testing.assert_allclose(got, lrn_reference(x, 2, 2.0, 1e-4, 0.75), rtol=1e-2)


@pytest.mark.parametrize("implementation", ["towers", "native"])
@pytest.mark.parametrize("shape, filters, k, groups, strides, padding", CASES)
def test_grouped_conv_keras_ops_path_matches_block_diagonal_conv(
    keras_ops_path, implementation, shape, filters, k, groups, strides, padding
):
    layer = _grouped(shape, filters, k, groups, strides, padding, implementation)
    x = np.random.default_rng(7).normal(size=shape).astype(np.float32)
    dense = block_diagonal(layer.kernel.numpy(), groups)
    want = tf.nn.conv2d(x, dense, strides, padding.upper()).numpy() + layer.bias.numpy()
    got = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
