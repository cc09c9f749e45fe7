"""Strategies: MirroredStrategy over logical CPUs trains like one device."""

import os
import subprocess
import sys
import textwrap

import pytest

from keras_alexnet import distribute

MIRRORED_SCRIPT = textwrap.dedent("""
    import sys
    import keras_alexnet
    from keras_alexnet import distribute, steps, train
    import keras, numpy as np, tensorflow as tf
    import tiny

    tiny.register()

    mirrored = distribute.make_strategy("mirrored", cpu_replicas=2)
    assert mirrored.num_replicas_in_sync == 2, mirrored.num_replicas_in_sync
    one = tf.distribute.OneDeviceStrategy("/cpu:0")
    rng = np.random.default_rng(0)
    images = rng.normal(0, 40, (8, 227, 227, 3)).astype(np.float32)
    labels = (np.arange(8) % 4).astype(np.int32)
    weights = {}
    for name, strategy in (("one", one), ("mirrored", mirrored)):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = keras_alexnet.AlexNet(4, dropout=0.0, variant="tiny")
            opt = keras.optimizers.SGD(0.001, momentum=0.9)
            opt.build(model.trainable_variables)
        initial = [v.numpy() for v in model.trainable_variables]
        step = steps.make_train_step(model, opt, 8)
        data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
        batch = next(iter(strategy.experimental_distribute_dataset(data)))
        tf.function(lambda x, y: strategy.run(step, args=(x, y)))(*batch)
        weights[name] = [v.numpy() for v in model.trainable_variables]
        assert any(not np.allclose(a, b) for a, b in zip(initial, weights[name]))
    for a, b in zip(weights["one"], weights["mirrored"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    print("SAME_WEIGHTS", len(weights["one"]))
    # A few steps of the full loop on the built-in set under the mirrored strategy.
    cfg = tiny.train_config(sys.argv[2], sys.argv[1], max_steps=3)
    result = train.train(cfg, strategy=mirrored)
    assert result["step"] == 3 and np.isfinite(result["train"]["loss"]), result
    print("MIRRORED_TRAINED", result["step"])
""")


def test_mirrored_step_equals_one_device_step(tmp_path, tiny_root):
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, tiny_root, str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, PYTHONPATH=os.path.dirname(__file__)),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "SAME_WEIGHTS 16" in result.stdout
    assert "MIRRORED_TRAINED 3" in result.stdout


def test_multi_worker_refuses_cpu_replicas():
    with pytest.raises(ValueError, match="one CPU device per worker"):
        distribute.make_strategy("multi_worker", cpu_replicas=2)
