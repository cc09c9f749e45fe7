"""The classifier head's layers: Keras' own, with the same numbers and the names saved."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_alexnet.models import head_layers


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_dense_matches_keras_dense_with_its_gradients(policy):
    keras.config.set_dtype_policy(policy)
    rng = np.random.default_rng(10)
    x = tf.constant(rng.normal(size=(3, 17)).astype(np.float32))
    upstream = tf.constant(rng.normal(size=(3, 5)).astype(np.float32))
    ours = head_layers.FastInputGradientDense(
        5, activation="relu", bias_initializer="random_normal"
    )
    reference = keras.layers.Dense(5, activation="relu")
    ours.build(x.shape)
    reference.build(x.shape)
    reference.set_weights(ours.get_weights())

    def outputs_and_gradients(layer, training):
        # The input in the compute dtype, as a previous layer would give it.
        inputs = tf.cast(x, layer.compute_dtype)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            y = tf.cast(layer(inputs, training=training), tf.float32)
        grads = tape.gradient(y, [inputs, layer.kernel, layer.bias], output_gradients=upstream)
        return [y] + grads

    def numbers(tensors):
        return [tf.cast(t, tf.float32).numpy() for t in tensors]

    tolerance = dict(rtol=1e-5, atol=1e-6) if policy == "float32" else dict(rtol=1e-2, atol=1e-2)
    want = numbers(outputs_and_gradients(reference, True))
    assert np.any(want[0] == 0) and np.any(want[0] > 0)  # the ReLU cuts: its gradient counts
    for training in (True, False):
        for call in (outputs_and_gradients, tf.function(outputs_and_gradients)):
            for got, expected in zip(numbers(call(ours, training)), want):
                np.testing.assert_allclose(got, expected, **tolerance)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_dropout_drops_the_same_units_in_every_precision(policy):
    # Random numbers drawn in bfloat16 or float16 come from other bits than float32's:
    # the masks must not, or a mixed-precision step drops other units than float32's.
    x = np.random.default_rng(0).uniform(1, 2, (16, 512)).astype(np.float32)
    dropped = {}
    for dtype in ("float32", policy):
        layer = head_layers.ReplicaDropout(0.5, seed=3, dtype=dtype)
        # Two calls: the seed moves on between them, in every precision alike.
        dropped[dtype] = [tf.cast(layer(x, training=True), tf.float32).numpy() for _ in "ab"]
    reference = keras.layers.Dropout(0.5, seed=3)  # float32: Keras' own masks
    for want, got, ours in zip(
        [reference(x, training=True).numpy() for _ in "ab"], dropped[policy], dropped["float32"]
    ):
        assert 0.45 < np.mean(want == 0) < 0.55
        np.testing.assert_array_equal(ours, want)
        np.testing.assert_array_equal(got == 0, want == 0)
        np.testing.assert_allclose(got, want, rtol=1e-2)  # kept values: x, rounded, times 2
    assert not np.array_equal(dropped[policy][0] == 0, dropped[policy][1] == 0)


def test_dense_is_a_keras_dense_and_round_trips():
    layer = head_layers.FastInputGradientDense(
        7, activation="softmax", kernel_regularizer=keras.regularizers.L2(0.1)
    )
    clone = head_layers.FastInputGradientDense.from_config(layer.get_config())
    assert isinstance(clone, keras.layers.Dense)
    assert clone.get_config() == layer.get_config()
    # Higher-rank inputs take keras.layers.Dense's own path.
    clone.build((2, 3, 4))
    assert tuple(clone(np.ones((2, 3, 4), np.float32), training=True).shape) == (2, 3, 7)


@pytest.mark.parametrize(
    "layer, registered",
    [
        (lambda: head_layers.FastInputGradientDense(3), "keras_alexnet>FastInputGradientDense"),
        (lambda: head_layers.ReplicaDropout(0.5), "keras_alexnet>ReplicaDropout"),
    ],
)
def test_head_layers_round_trip_under_their_names(layer, registered):
    layer = layer()
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == registered
    clone = keras.saving.deserialize_keras_object(serialized)
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()


@pytest.mark.parametrize(
    "layer, old_name",
    [
        (lambda: head_layers.FastInputGradientDense(3), "Dense"),
        (lambda: head_layers.ReplicaDropout(0.5), "Dropout"),
    ],
)
def test_the_names_0_1_0_saved_still_give_the_same_layers(layer, old_name):
    # tests/compat_test.py loads a whole .keras file of 0.1.0; this is the config alone.
    layer = layer()
    serialized = keras.saving.serialize_keras_object(layer)
    serialized["registered_name"] = f"keras_alexnet>{old_name}"
    clone = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(clone, type(layer)) and type(clone).__name__ == old_name
    assert clone.get_config() == layer.get_config()
