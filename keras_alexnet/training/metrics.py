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


def patch_of_batch(images, index, crop):
    """The index-th of the paper's ten patches of every image of a batch.

    The patches are those of `preprocessing.ten_crop`, in its order: centre, top-left,
    top-right, bottom-left, bottom-right (index 0-4), then the same mirrored (5-9).

    Args:
        images: [b, H, W, c], H, W >= crop.
        index: int32 scalar (a tensor in a loop), 0-9.
        crop: side of the patches.

    Returns:
        [b, crop, crop, c].
    """
    shape = tf.shape(images)
    bottom, right = shape[1] - crop, shape[2] - crop
    tops = tf.stack([bottom // 2, 0, 0, bottom, bottom])
    lefts = tf.stack([right // 2, 0, right, 0, right])
    corner = index % 5
    patch = tf.slice(
        images, tf.stack([0, tops[corner], lefts[corner], 0]), tf.stack([-1, crop, crop, -1])
    )
    return tf.cond(index >= 5, lambda: tf.reverse(patch, axis=[2]), lambda: patch)


def average_crops(model, images):
    """The paper's ten-patch prediction: the softmax averaged over the ten patches of each
    image (section 4.1), [b, H, W, c] -> [b, classes].

    The batch holds each image once (the 256x256 image, mean subtracted); the patches, of
    the model's input size, are cut here one at a time and the model runs on one patch of
    every image, each after the previous (a loop with one iteration in flight). Memory is
    then a batch's worth, as for the central patch: run on all b * 10 patches at once, the
    model's activations took ten times that (6.5 GB instead of 1.8 GB at a batch of 64 for
    the paper's network), and batches of ten patches per image four times the input's.
    """
    crop = model.input_shape[1]

    def body(i, total):
        patches = patch_of_batch(images, i, crop)
        return i + 1, total + tf.cast(model(patches, training=False), tf.float32)

    zeros = tf.zeros([tf.shape(images)[0], model.output_shape[-1]], tf.float32)
    _, total = tf.while_loop(
        lambda i, _: i < 10, body, (tf.constant(0), zeros), parallel_iterations=1
    )
    return total / 10.0


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
