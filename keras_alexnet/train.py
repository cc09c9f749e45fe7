"""Training AlexNet: the training step (the full loop lands with the training issue)."""

import keras
import tensorflow as tf


def make_train_step(model, optimizer, global_batch_size):
    """Returns a `tf.function` that runs one SGD step on one replica's batch.

    The loss is the mean cross-entropy over the GLOBAL batch plus the model's
    regularisation losses (the paper's coupled weight decay), scaled so that summing the
    replicas' gradients, as every `tf.distribute` strategy does, gives the gradient of
    the global batch. Under no strategy it is the ordinary mean loss.

    Args:
        model: a Keras model that returns class probabilities.
        optimizer: a Keras optimizer.
        global_batch_size: examples per step over all replicas.

    Returns:
        step(images, labels) -> (loss, probabilities), to call directly or with
        `strategy.run`.
    """

    @tf.function
    def step(images, labels):
        with tf.GradientTape() as tape:
            probs = model(images, training=True)
            per_example = keras.losses.sparse_categorical_crossentropy(labels, probs)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, probs

    return step
