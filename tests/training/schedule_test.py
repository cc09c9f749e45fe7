"""The learning-rate schedules: the paper's plateau rule and cosine decay."""

import math

import keras
import numpy as np
import pytest

from keras_alexnet.training import schedule


def test_plateau_lowers_by_ten_after_patience_and_at_most_max_reductions():
    optimizer = keras.optimizers.SGD(0.01)
    rule = schedule.PlateauSchedule(patience=2, max_reductions=2, base_learning_rate=0.01)
    # (validation error, lowered?) epoch by epoch.
    epochs = [
        (0.5, False),
        (0.4, False),
        (0.45, False),  # 1 epoch without gain
        (0.4, True),  # 2: lowered, the count starts over
        (0.41, False),
        (0.42, True),  # lowered again
        (0.43, False),
        (0.44, False),  # no third reduction: max_reductions=2
        (0.45, False),
    ]
    for error, lowered in epochs:
        assert rule.update(error, optimizer) == lowered, error
    assert int(rule.reductions) == 2 and float(rule.best_error) == pytest.approx(0.4)
    assert float(optimizer.learning_rate) == pytest.approx(0.0001)


def test_cosine_starts_at_the_base_and_ends_at_zero():
    steps = np.arange(11)
    got = [schedule.cosine_learning_rate(0.1, int(s), 10) for s in steps]
    np.testing.assert_allclose(got, 0.1 * (1 + np.cos(np.pi * steps / 10)) / 2, atol=1e-15)
    assert got[0] == 0.1 and got[5] == pytest.approx(0.05) and got[-1] == pytest.approx(0.0)
    # Past the end it stays at 0 (a run extended without a new schedule).
    assert schedule.cosine_learning_rate(0.1, 12, 10) == pytest.approx(0.0)
    assert math.isclose(schedule.cosine_learning_rate(1.0, 1, 4), (1 + math.cos(math.pi / 4)) / 2)


def test_the_lowered_rate_is_the_one_a_resumed_run_sets_to_the_bit():
    # Multiplying the float32 rate by 0.1 twice does not give float32(0.01 * 0.1**2): a
    # resumed run, which computes the rate from the count, would go on with another rate.
    assert np.float32(np.float32(np.float32(0.01) * np.float32(0.1)) * np.float32(0.1)) != (
        np.float32(0.01 * 0.1**2)
    )
    optimizer = keras.optimizers.SGD(0.01)
    rule = schedule.PlateauSchedule(patience=1, max_reductions=3, base_learning_rate=0.01)
    for error in (0.5, 0.5, 0.5):
        rule.update(error, optimizer)
    assert int(rule.reductions) == 2
    running = np.float32(optimizer.learning_rate.numpy())
    resumed = keras.optimizers.SGD(0.01)
    resumed.learning_rate.assign(rule.learning_rate())  # what trainer.resume sets
    assert running == np.float32(resumed.learning_rate.numpy()) == np.float32(1e-4)
