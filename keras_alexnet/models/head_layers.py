"""The classifier head's layers: Keras' Dropout and Dense with a TensorFlow twist.

- `ReplicaDropout`: `keras.layers.Dropout` that draws its own masks on every replica.
- `FastInputGradientDense`: `keras.layers.Dense` whose training-time input gradient is a
  fast GEMM on CPU.

Both are Keras' own layers, with the same weights, configs and outputs; only their
TensorFlow training paths differ. TensorFlow is imported only where the TensorFlow backend
runs: this module imports under any backend.
"""

import keras


def _tensorflow():
    """TensorFlow, imported only by the TensorFlow backend's code paths."""
    import tensorflow as tf

    return tf


def _on_tensorflow():
    return keras.backend.backend() == "tensorflow"


@keras.saving.register_keras_serializable(package="keras_alexnet")
class ReplicaDropout(keras.layers.Dropout):
    """`keras.layers.Dropout` that draws its own masks on every replica (section 4.2).

    The paper drops each hidden unit of every example independently. Under `tf.distribute`
    every replica runs the layer with the same random state, so `keras.layers.Dropout` drops
    the same units for example j of every replica and worker: a step of R replicas has
    only batch / R distinct masks. This layer folds the replica's index over all workers
    (`replica_id_in_sync_group`) into the seed, so each replica draws its own masks. The
    state advances once per call as in Keras, so a run stays reproducible and resumes
    exactly; on one replica the masks are those of `keras.layers.Dropout`.

    The masks are drawn in float32 whatever the compute dtype: TensorFlow's random
    numbers in bfloat16 or float16 come from other bits than float32's, so a mixed-precision
    run would otherwise drop other units than the same run in float32.

    Args:
        rate, noise_shape, seed, **kwargs: as in `keras.layers.Dropout`.
    """

    def call(self, inputs, training=False):
        if not _on_tensorflow():
            return super().call(inputs, training=training)
        tf = _tensorflow()
        if training and self.rate and inputs.dtype != tf.float32:
            # float32's masks and scaling, rounded once to the compute dtype.
            dropped = self.call(tf.cast(inputs, tf.float32), training=training)
            return tf.cast(dropped, inputs.dtype)
        context = tf.distribute.get_replica_context()
        if not training or self.rate == 0 or context is None or context.num_replicas_in_sync == 1:
            return super().call(inputs, training=training)
        seed = tf.random.experimental.stateless_fold_in(
            tf.cast(self.seed_generator.next(), tf.int64), context.replica_id_in_sync_group
        )
        return tf.nn.experimental.stateless_dropout(
            inputs, self.rate, seed=seed, noise_shape=self.noise_shape
        )


@keras.saving.register_keras_serializable(package="keras_alexnet")
class FastInputGradientDense(keras.layers.Dense):
    """`keras.layers.Dense` whose training-time input gradient is a fast GEMM on CPU.

    The same layer, weights and outputs as `keras.layers.Dense`. TensorFlow's gradient of
    `inputs @ kernel` with respect to the inputs is `upstream @ transpose(kernel)`, a
    product that TensorFlow's oneDNN CPU kernel runs about 3x slower than the same numbers
    computed as `transpose(kernel @ transpose(upstream))`: for fc6 (9216 x 4096) that
    product alone took longer than fc6's forward and weight gradient together. In training
    (training=True, TensorFlow backend, rank-2 inputs) the layer computes its gradient that
    way; elsewhere, and in every inference or exported graph, it is `keras.layers.Dense`.

    Args:
        units, activation, ..., **kwargs: as in `keras.layers.Dense`.
    """

    def call(self, inputs, training=None):
        if (
            not training
            or not _on_tensorflow()
            or len(inputs.shape) != 2
            or self.lora_enabled
            or self.quantization_mode is not None
        ):
            return super().call(inputs, training=training)
        tf = _tensorflow()
        x = _matmul_with_fast_input_gradient(inputs, tf.convert_to_tensor(self.kernel))
        if self.bias is not None:
            x = keras.ops.add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x


def _matmul_with_fast_input_gradient(x, kernel):
    """x @ kernel, with the gradient of x computed as transpose(kernel @ transpose(dy))."""
    tf = _tensorflow()

    @tf.custom_gradient
    def matmul(x, kernel):
        def grad(dy):
            return (
                tf.transpose(tf.linalg.matmul(kernel, dy, transpose_b=True)),
                tf.linalg.matmul(x, dy, transpose_a=True),
            )

        return tf.linalg.matmul(x, kernel), grad

    return matmul(x, kernel)


# Version 0.1.0 saved these two layers as `keras_alexnet>Dense` and `keras_alexnet>Dropout`.
# A .keras file stores a layer's weights under its class name in snake case ("dense",
# "dense_1", ...), so such a file loads its weights only into classes of those names: they
# remain, for loading, and the builder makes the classes above.
@keras.saving.register_keras_serializable(package="keras_alexnet", name="Dense")
class Dense(FastInputGradientDense):
    """`FastInputGradientDense` under its 0.1.0 name, for .keras files saved by 0.1.0."""


@keras.saving.register_keras_serializable(package="keras_alexnet", name="Dropout")
class Dropout(ReplicaDropout):
    """`ReplicaDropout` under its 0.1.0 name, for .keras files saved by 0.1.0."""
