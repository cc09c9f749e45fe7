"""Learning-rate schedules: the paper's divide-by-10 on a plateau, and cosine decay."""

import math

import tensorflow as tf

from keras_alexnet.paper import numbers as paper


class PlateauSchedule(tf.Module):
    """The paper's schedule: divide the learning rate by 10 when validation error stalls.

    Its state (best error, epochs without gain, reductions so far) is made of variables,
    saved in the training checkpoint so that a resumed run goes on with it. The rate is
    always `learning_rate()`, base * 0.1 ** reductions computed one way, so a resumed run
    sets the very float32 value the uninterrupted run had (multiplying a float32 rate by
    0.1 each time gives another value from the second reduction on).

    Args:
        patience: epochs without a better validation error before the rate is lowered.
        max_reductions: the rate is lowered at most this many times.
        base_learning_rate: the rate before any reduction.
    """

    def __init__(self, patience, max_reductions, base_learning_rate):
        super().__init__(name="schedule")
        self.patience = patience
        self.max_reductions = max_reductions
        self.base_learning_rate = base_learning_rate
        self.best_error = tf.Variable(math.inf, dtype=tf.float64, trainable=False)
        self.epochs_without_gain = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.reductions = tf.Variable(0, dtype=tf.int64, trainable=False)

    def learning_rate(self):
        """The rate after the reductions so far: base * 0.1 ** reductions."""
        return self.base_learning_rate * paper.LR_DECAY_FACTOR ** int(self.reductions)

    def update(self, error, optimizer):
        """Records an epoch's validation error; returns True when it lowered the rate."""
        if error < self.best_error.numpy():
            self.best_error.assign(error)
            self.epochs_without_gain.assign(0)
            return False
        self.epochs_without_gain.assign_add(1)
        if self.epochs_without_gain.numpy() >= self.patience and (
            self.reductions.numpy() < self.max_reductions
        ):
            self.reductions.assign_add(1)
            self.epochs_without_gain.assign(0)
            optimizer.learning_rate.assign(self.learning_rate())
            return True
        return False


def cosine_learning_rate(base, step, total_steps):
    """The learning rate of step `step` (0-based) of `total_steps` under cosine decay.

    base * (1 + cos(pi * step / total_steps)) / 2: `base` at the first step, falling to 0
    at the end (Loshchilov and Hutter, SGDR, 2017, without restarts). A function of the
    step alone, so a resumed run continues the same curve.
    """
    return base * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
