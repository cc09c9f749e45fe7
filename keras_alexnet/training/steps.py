"""The per-replica steps every tool runs: a training step and an evaluation step.

Each step returns sums over its replica's batch (a cross-entropy, top-1 and top-5 hits, a
count), so that `distribute.run_and_sum` gives the same totals on one device and on many.
Training and evaluation report the same quantity, the cross-entropy; the training step
reports the weight-decay term it adds to it apart.
"""

import keras
import tensorflow as tf

from keras_alexnet.training import distribute
from keras_alexnet.training import metrics


def make_train_step(model, optimizer, global_batch_size, jit_compile=False, finish=None):
    """Returns a `tf.function` that runs one optimizer step on one replica's batch.

    The loss is the mean cross-entropy over the GLOBAL batch plus the model's
    regularisation losses (the paper's coupled weight decay), scaled so that summing the
    replicas' gradients, as every `tf.distribute` strategy does, gives the gradient of the
    global batch. Under no strategy it is the ordinary mean loss.

    Args:
        model: a Keras model that returns class probabilities.
        optimizer: a Keras optimizer; a `keras.optimizers.LossScaleOptimizer` scales the
            loss before the gradients (float16) and unscales them before the update.
        global_batch_size: examples per step over all replicas.
        jit_compile: compile the step with XLA.
        finish: None, or a function the step applies to its images first (e.g. the float
            work of `input_pipeline.train_dataset(raw=True)`'s batches).

    Returns:
        step(images, labels) -> (cross-entropy, weight decay, top-1 hits, top-5 hits), to
        call directly or with `strategy.run`. The optimised loss is the cross-entropy plus
        the weight decay; both are this replica's shares, which sum over the replicas to
        the global batch's mean cross-entropy and to `sum(model.losses)`, before the update
        and unscaled.
    """
    scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    @tf.function(jit_compile=jit_compile)
    def step(images, labels):
        if finish is not None:
            images = finish(images)
        with tf.GradientTape() as tape:
            probs = model(images, training=True)
            per_example = keras.losses.sparse_categorical_crossentropy(labels, probs)
            cross_entropy = tf.nn.compute_average_loss(
                per_example, global_batch_size=global_batch_size
            )
            decay = (
                tf.nn.scale_regularization_loss(tf.add_n(model.losses))
                if model.losses
                else tf.zeros_like(cross_entropy)
            )
            loss = cross_entropy + decay
            # float16: gradients of the scaled loss, unscaled by the optimizer.
            scaled_loss = optimizer.scale_loss(loss) if scaled else loss
        grads = tape.gradient(scaled_loss, model.trainable_variables)
        if scaled:
            grads = _non_finite_on_every_replica_if_on_one(grads)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return (
            cross_entropy,
            decay,
            metrics.top_k_correct(labels, probs, 1),
            metrics.top_k_correct(labels, probs, 5),
        )

    return step


def _non_finite_on_every_replica_if_on_one(grads):
    """The replica's gradients, or NaNs where any replica's gradients are not finite.

    `keras.optimizers.LossScaleOptimizer` decides to skip a step and lower the scale from
    the gradients it is given, a replica's own, before they are summed over the replicas:
    when one replica overflowed and the others did not, the replicas disagreed and the
    overflow reached the weights. One all-reduced flag makes every replica, and so the
    summed gradients, non-finite together: the step is skipped and the scale lowered as
    on one device.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return grads
    present = [g for g in grads if g is not None]
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in present])
    overflowed = context.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32))
    present = tf.cond(
        overflowed > 0,
        lambda: [tf.fill(tf.shape(g), tf.constant(float("nan"), g.dtype)) for g in present],
        lambda: present,
    )
    present = iter(present)
    return [None if g is None else next(present) for g in grads]


def make_eval_step(model, crops="center"):
    """Returns step(images, labels) -> (cross-entropy sum, top-1 hits, top-5 hits, count).

    Examples labelled `input_pipeline.PADDING_LABEL` (negative), which fill the last step
    of a distributed evaluation, count for nothing.

    Args:
        model: a Keras model returning class probabilities.
        crops: "center" for batches of patches [b, h, w, c], "10" for batches of whole
            images [b, H, W, c] whose ten patches are cut here and their probabilities
            averaged, as in the paper (`metrics.average_crops`).
    """

    def step(images, labels):
        if crops == "10":
            probs = metrics.average_crops(model, images)
        else:
            probs = tf.cast(model(images, training=False), tf.float32)
        real = labels >= 0
        weights = tf.cast(real, tf.float32)
        labels = tf.where(real, labels, tf.zeros_like(labels))
        losses = keras.losses.sparse_categorical_crossentropy(labels, probs)
        return (
            tf.reduce_sum(losses * weights),
            metrics.top_k_correct(labels, probs, 1, weights),
            metrics.top_k_correct(labels, probs, 5, weights),
            tf.reduce_sum(weights),
        )

    return step


def evaluate_dataset(model, dataset, *, strategy=None, crops="center", progress=None):
    """Mean cross-entropy, top-1 and top-5 error of a model over a whole dataset.

    Only the four sums are kept from batch to batch: nothing per image.

    Args:
        model: a Keras model returning class probabilities.
        dataset: a `tf.data.Dataset` of (images, labels), or a distributed dataset of
            `strategy`.
        strategy: the `tf.distribute.Strategy` the dataset is distributed with, or None.
        crops: "center" or "10" (see `make_eval_step`).
        progress: None, or a function called after each step with the number of images
            evaluated so far (over all replicas).

    Returns:
        A dict with cross_entropy, top1_error, top5_error (fractions) and count.
    """
    run = distribute.run_and_sum(strategy, make_eval_step(model, crops))
    totals = [0.0, 0.0, 0.0, 0.0]
    for images, labels in dataset:
        totals = [t + float(r) for t, r in zip(totals, run(images, labels))]
        if progress:
            progress(int(totals[3]))
    cross_entropy, top1, top5, count = totals
    if count == 0:
        raise ValueError("The evaluation dataset is empty.")
    return dict(
        cross_entropy=cross_entropy / count,
        top1_error=1.0 - top1 / count,
        top5_error=1.0 - top5 / count,
        count=int(count),
    )
