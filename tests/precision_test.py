"""Mixed precision: training steps, loss scaling, checkpoints across precisions, export."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny

import keras_alexnet
from keras_alexnet import config
from keras_alexnet import export
from keras_alexnet import run_dir
from keras_alexnet import steps
from keras_alexnet import train


def one_step(policy, weights, images, labels):
    model = keras_alexnet.AlexNet(4, dropout=0.0, dtype_policy=policy)
    model.set_weights(weights)
    optimizer = keras.optimizers.SGD(0.001, momentum=0.9)
    if policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    step = steps.make_train_step(model, optimizer, len(labels))
    loss = float(step(images, labels)[0])
    return loss, [w.numpy() for w in model.trainable_weights], model


@pytest.fixture(scope="module")
def float32_step():
    keras.utils.set_random_seed(0)
    weights = keras_alexnet.AlexNet(4, dropout=0.0).get_weights()
    rng = np.random.default_rng(0)
    images = rng.normal(0, 40, (4, 227, 227, 3)).astype(np.float32)
    labels = np.arange(4) % 4
    loss, new, _ = one_step(None, weights, images, labels)
    return weights, images, labels, loss, new


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_step_matches_float32(float32_step, policy):
    weights, images, labels, loss32, new32 = float32_step
    loss, new, model = one_step(policy, weights, images, labels)
    assert model.get_layer("conv2").kernel.dtype == "float32"  # variables stay float32
    assert np.isfinite(loss)
    # bfloat16 keeps 8 bits of mantissa, float16 11: the tolerances follow. The update of
    # each weight, relative to its float32 update, is compared as a whole (relative norm).
    tolerance = 0.02 if policy == "mixed_float16" else 0.1
    assert loss == pytest.approx(loss32, rel=tolerance)
    errors = []
    for before, a, b in zip(weights, new, new32):
        update, update32 = a - before, b - before
        norm = np.linalg.norm(update32)
        if norm > 0:
            errors.append(np.linalg.norm(update - update32) / norm)
    # Measured here: at most 0.19 (float16) and 0.49 (bfloat16), largest in conv1, whose
    # gradient sums 55x55 positions of large activations; the fc layers agree far better.
    assert max(errors) < (0.3 if policy == "mixed_float16" else 0.75)
    assert errors[-1] < 3 * tolerance  # fc8's bias


def test_loss_scale_drops_after_an_overflow():
    keras.utils.set_random_seed(0)
    model = keras_alexnet.AlexNet(4, dtype_policy="mixed_float16")
    # A loss scale of 2^30 makes the float16 gradients overflow: the step must be skipped
    # and the scale halved.
    optimizer = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(0.001), initial_scale=2.0**30
    )
    optimizer.build(model.trainable_variables)
    before = optimizer.dynamic_scale.numpy()
    weights = [w.numpy() for w in model.trainable_weights]
    images = np.random.default_rng(0).normal(0, 40, (2, 227, 227, 3)).astype(np.float32)
    step = steps.make_train_step(model, optimizer, 2)
    step(images, np.array([0, 1]))
    assert optimizer.dynamic_scale.numpy() == before / 2
    for a, b in zip(weights, model.trainable_weights):
        np.testing.assert_array_equal(a, b.numpy())


@pytest.mark.parametrize("first, second", [("float16", "none"), ("none", "bfloat16")])
def test_checkpoints_resume_across_precisions(tmp_path, tiny_root, first, second):
    model_dir = tmp_path / "run"
    train.train(tiny.train_config(model_dir, tiny_root, mixed_precision=first, max_steps=1))
    result = train.train(
        tiny.train_config(model_dir, tiny_root, mixed_precision=second, max_steps=2)
    )
    assert result["step"] == 2
    reader = tf.train.load_checkpoint(result["checkpoint"])
    dtypes = reader.get_variable_to_dtype_map()
    shapes = reader.get_variable_to_shape_map()
    assert [k for k in shapes if shapes[k] == [11, 11, 3, 12]]  # conv1's kernel is there
    assert not [k for k, d in dtypes.items() if d in (tf.float16, tf.bfloat16)]


def test_mixed_run_exports_float32_signatures(tmp_path, tiny_root):
    model_dir = tmp_path / "run"
    train.train(tiny.train_config(model_dir, tiny_root, mixed_precision="float16", max_steps=1))
    path = export.export_run(str(model_dir), str(tmp_path / "out"), name="m")
    served = tf.saved_model.load(path)
    fn = served.signatures["predict_pixels"]
    assert fn.structured_input_signature[1]["pixels"].dtype == tf.float32
    pixels = np.zeros((1, 227, 227, 3), np.float32)
    out = fn(pixels=tf.constant(pixels))
    assert out["probabilities"].dtype == tf.float32
    model, _ = run_dir.restore_model(str(model_dir))
    np.testing.assert_allclose(out["probabilities"].numpy(), model(pixels).numpy(), rtol=1e-5)


def test_jit_compile_is_refused_under_mirrored(tmp_path, tiny_root):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with pytest.raises(ValueError, match="jit_compile works on one device only"):
        train.train(
            tiny.train_config(tmp_path / "run", tiny_root, jit_compile=True), strategy=strategy
        )
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        config.resolve(tiny.train_config(tmp_path / "run", tiny_root, mixed_precision="float8"))


def test_jit_compiled_step_matches_the_plain_step(float32_step):
    weights, images, labels, loss32, new32 = float32_step
    model = keras_alexnet.AlexNet(4, dropout=0.0)
    model.set_weights(weights)
    optimizer = keras.optimizers.SGD(0.001, momentum=0.9)
    step = steps.make_train_step(model, optimizer, len(labels), jit_compile=True)
    assert float(step(images, labels)[0]) == pytest.approx(loss32, rel=1e-4)
    for a, b in zip(model.trainable_weights, new32):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-3, atol=1e-6)
