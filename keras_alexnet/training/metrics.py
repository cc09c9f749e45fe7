"""Top-1 and top-5 hits, the paper's measures (section 6), and the ten-patch average."""

import tensorflow as tf


def top_k_correct(labels, probs, k, weights=None):
    """Number of examples whose label is among the k most probable classes.

    Ties do not count for the model: the classes are ranked by `tf.math.top_k`, which puts
    the lower class index first among equal probabilities, and an example is a hit only
    if its label is among the k indices it returns. A network whose output is constant is
    right only for the classes 0 ... k-1, never for every label (`tf.math.in_top_k` would
    count any label tied at the k-th place, e.g. every label of a uniform output, or every
    probability that underflowed to 0 among the top 5).

    Args:
        labels: int [b].
        probs: [b, classes].
        k: how many of the most probable classes count.
        weights: float [b], each example's weight (0 for padding), or None for 1 each.
    """
    k = min(k, probs.shape[-1])
    _, top = tf.math.top_k(tf.cast(probs, tf.float32), k)
    hits = tf.reduce_any(tf.equal(top, tf.cast(labels, tf.int32)[:, None]), axis=-1)
    hits = tf.cast(hits, tf.float32)
    if weights is not None:
        hits *= weights
    return tf.reduce_sum(hits)


def average_crops(model, images):
    """Softmax averaged over the crops of each image: [b, crops, h, w, c] -> [b, classes]."""
    shape = tf.shape(images)
    flat = tf.reshape(images, tf.concat([[shape[0] * shape[1]], shape[2:]], 0))
    probs = tf.cast(model(flat, training=False), tf.float32)
    return tf.reduce_mean(tf.reshape(probs, [shape[0], shape[1], -1]), axis=1)


def epoch_metrics(totals):
    """The epoch's training metrics from its running sums.

    Args:
        totals: [cross-entropy sum, weight-decay sum (each a step's value times its
            examples), top-1 hits, top-5 hits, examples].

    Returns:
        A dict: cross_entropy (the mean over the epoch's examples, the quantity validation
        reports), weight_decay (the L2 term the optimised loss adds, `sum(model.losses)`),
        total_loss (their sum, the loss the gradients are of), top1_error and
        top5_error (fractions).
    """
    cross_entropy, decay, top1, top5, count = totals
    return dict(
        cross_entropy=cross_entropy / count,
        weight_decay=decay / count,
        total_loss=(cross_entropy + decay) / count,
        top1_error=1 - top1 / count,
        top5_error=1 - top5 / count,
    )
