"""TrainState: what a run checkpoints, restores, and refuses to save."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_alexnet.training import schedule
from keras_alexnet.training import state as train_state


def small_model(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dropout(0.5, seed=seed)(keras.layers.Dense(8)(inputs))
    return keras.Model(inputs, keras.layers.Dense(2)(hidden))


def make_state(tmp_path, seed=0, float16=False):
    model = small_model(seed)
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    if float16:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    rule = schedule.PlateauSchedule(patience=2, max_reductions=3, base_learning_rate=0.1)
    return train_state.TrainState(model, optimizer, rule, str(tmp_path / "checkpoints"), 2)


def test_restore_brings_back_every_part(tmp_path):
    state = make_state(tmp_path, float16=True)
    for _ in range(3):
        state.advance()
    state.end_epoch()
    state.advance()
    state.schedule.reductions.assign(2)
    state.model.layers[1].kernel.assign(tf.fill((4, 8), 0.25))
    state.base_optimizer.momentums[0].assign(tf.fill((4, 8), 0.5))
    state.optimizer.dynamic_scale.assign(64.0)
    state.model(tf.ones((2, 4)), training=True)  # advances dropout's seed
    rng = [v.numpy() for v in state.model.non_trainable_variables]
    path = state.save("test")
    assert path.endswith("ckpt-4")

    other = make_state(tmp_path / "other", seed=1, float16=True)
    other.restore(path)
    assert (other.step, other.epoch, other.step_in_epoch) == (4, 1, 1)
    assert int(other.schedule.reductions) == 2 and other.loss_scale == 64.0
    np.testing.assert_array_equal(other.model.layers[1].kernel.numpy(), np.full((4, 8), 0.25))
    np.testing.assert_array_equal(other.base_optimizer.momentums[0].numpy(), np.full((4, 8), 0.5))
    for a, b in zip(rng, other.model.non_trainable_variables):
        np.testing.assert_array_equal(a, b.numpy())
    # A float32 run resumes a float16 run's checkpoint: the loss scale is left out.
    plain = make_state(tmp_path / "plain", seed=1)
    plain.restore(path)
    assert plain.step == 4 and plain.loss_scale is None


def test_a_checkpoint_of_the_layout_before_the_train_state_module_restores(tmp_path):
    # The layout train.py wrote before TrainState existed, spelled out independently.
    model = small_model(2)
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build(model.trainable_variables)
    old_schedule = tf.Module()
    old_schedule.best_error = tf.Variable(0.25, dtype=tf.float64)
    old_schedule.epochs_without_gain = tf.Variable(1, dtype=tf.int64)
    old_schedule.reductions = tf.Variable(1, dtype=tf.int64)
    state = tf.train.Checkpoint(
        model=model,
        optimizer=optimizer,
        schedule=old_schedule,
        step=tf.Variable(7, dtype=tf.int64),
        epoch=tf.Variable(1, dtype=tf.int64),
        step_in_epoch=tf.Variable(1, dtype=tf.int64),
        rng_state=[v for v in model.non_trainable_variables if "seed_generator" in v.path],
    )
    old = tf.train.Checkpoint(state=state, loss_scale=tf.train.Checkpoint())
    manager = tf.train.CheckpointManager(old, str(tmp_path / "old"), max_to_keep=3)
    path = manager.save(checkpoint_number=7)
    new = make_state(tmp_path)
    new.restore(path)
    assert (new.step, new.epoch, new.step_in_epoch) == (7, 1, 1)
    assert float(new.schedule.best_error) == 0.25 and int(new.schedule.reductions) == 1
    for a, b in zip(model.weights, new.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_weights_that_are_not_finite_are_not_saved(tmp_path):
    state = make_state(tmp_path)
    state.advance()
    good = state.save("first")
    state.advance()
    state.model.layers[1].kernel.assign(tf.fill((4, 8), np.nan))
    with pytest.raises(FloatingPointError, match=f"step 2; not saving them .*{good}"):
        state.save("second")
    assert state.manager.checkpoints == [good]
