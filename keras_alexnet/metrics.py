"""Top-1 and top-5 error, the paper's measures (section 6), over batches and datasets."""

import keras
import tensorflow as tf


def top_k_correct(labels, probs, k):
    """Number of examples whose label is among the k most probable classes."""
    k = min(k, probs.shape[-1])
    hits = tf.math.in_top_k(tf.cast(labels, tf.int32), tf.cast(probs, tf.float32), k)
    return tf.reduce_sum(tf.cast(hits, tf.float32))


def average_crops(model, images):
    """Softmax averaged over the crops of each image: [b, crops, h, w, c] -> [b, classes]."""
    shape = tf.shape(images)
    flat = tf.reshape(images, tf.concat([[shape[0] * shape[1]], shape[2:]], 0))
    probs = tf.cast(model(flat, training=False), tf.float32)
    return tf.reduce_mean(tf.reshape(probs, [shape[0], shape[1], -1]), axis=1)


def make_eval_step(model, crops="center"):
    """Returns step(images, labels) -> (loss sum, top-1 hits, top-5 hits, count) for a batch.

    Args:
        model: a Keras model returning class probabilities.
        crops: "center" for [b, h, w, c] batches, "ten" for [b, 10, h, w, c] (the
            probabilities of the ten patches are averaged, as in the paper).
    """

    def step(images, labels):
        if crops == "ten":
            probs = average_crops(model, images)
        else:
            probs = tf.cast(model(images, training=False), tf.float32)
        losses = keras.losses.sparse_categorical_crossentropy(labels, probs)
        count = tf.cast(tf.shape(labels)[0], tf.float32)
        return (
            tf.reduce_sum(losses),
            top_k_correct(labels, probs, 1),
            top_k_correct(labels, probs, 5),
            count,
        )

    return step


def evaluate_dataset(model, dataset, *, strategy=None, crops="center"):
    """Mean loss, top-1 and top-5 error of a model over a whole dataset.

    Args:
        model: a Keras model returning class probabilities.
        dataset: a `tf.data.Dataset` of (images, labels), or a distributed dataset of
            `strategy`.
        strategy: the `tf.distribute.Strategy` the dataset is distributed with, or None.
        crops: "center" or "ten" (see `make_eval_step`).

    Returns:
        A dict with loss, top1_error, top5_error (fractions) and count.
    """
    step = make_eval_step(model, crops)
    if strategy is None:
        run = tf.function(step)
    else:

        @tf.function
        def run(images, labels):
            results = strategy.run(step, args=(images, labels))
            return [strategy.reduce(tf.distribute.ReduceOp.SUM, r, axis=None) for r in results]

    totals = [0.0, 0.0, 0.0, 0.0]
    for images, labels in dataset:
        totals = [t + float(r) for t, r in zip(totals, run(images, labels))]
    loss, top1, top5, count = totals
    if count == 0:
        raise ValueError("The evaluation dataset is empty.")
    return dict(
        loss=loss / count,
        top1_error=1.0 - top1 / count,
        top5_error=1.0 - top5 / count,
        count=int(count),
    )
