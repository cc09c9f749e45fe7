"""Top-1 and top-5 hits, the paper's measures (section 6), and the ten-patch average."""

import tensorflow as tf


def top_k_correct(labels, probs, k, weights=None):
    """Number of examples whose label is among the k most probable classes.

    Args:
        labels: int [b].
        probs: [b, classes].
        k: how many of the most probable classes count.
        weights: float [b], each example's weight (0 for padding), or None for 1 each.
    """
    k = min(k, probs.shape[-1])
    hits = tf.cast(
        tf.math.in_top_k(tf.cast(labels, tf.int32), tf.cast(probs, tf.float32), k), tf.float32
    )
    if weights is not None:
        hits *= weights
    return tf.reduce_sum(hits)


def average_crops(model, images):
    """Softmax averaged over the crops of each image: [b, crops, h, w, c] -> [b, classes]."""
    shape = tf.shape(images)
    flat = tf.reshape(images, tf.concat([[shape[0] * shape[1]], shape[2:]], 0))
    probs = tf.cast(model(flat, training=False), tf.float32)
    return tf.reduce_mean(tf.reshape(probs, [shape[0], shape[1], -1]), axis=1)
