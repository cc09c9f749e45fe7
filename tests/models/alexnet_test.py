"""The AlexNet builder: shapes, parameter counts, init, errors, saving, training."""

import dataclasses
import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tiny

import keras_alexnet
from keras_alexnet.models import alexnet as model_lib
from keras_alexnet.models import inspection
from keras_alexnet.models import layers
from keras_alexnet.models import variants
from keras_alexnet.paper import numbers as paper

# Output shapes of every layer as the issue lists them, for a 227x227 input.
PAPER_SHAPES = {
    "conv1": (55, 55, 96),
    "lrn1": (55, 55, 96),
    "pool1": (27, 27, 96),
    "conv2": (27, 27, 256),
    "lrn2": (27, 27, 256),
    "pool2": (13, 13, 256),
    "conv3": (13, 13, 384),
    "conv4": (13, 13, 384),
    "conv5": (13, 13, 256),
    "pool5": (6, 6, 256),
    "flatten": (9216,),
    "fc6": (4096,),
    "dropout6": (4096,),
    "fc7": (4096,),
    "dropout7": (4096,),
    "fc8": (1000,),
}


def conv_params(k, cin, cout, groups=1):
    return k * k * cin // groups * cout + cout


# Parameter counts computed from each source's layer table, independently of the builder.
EXPECTED_PARAMS = {
    "paper": {
        "conv1": conv_params(11, 3, 96),
        "conv2": conv_params(5, 96, 256, 2),
        "conv3": conv_params(3, 256, 384),
        "conv4": conv_params(3, 384, 384, 2),
        "conv5": conv_params(3, 384, 256, 2),
        "fc6": 9216 * 4096 + 4096,
        "fc7": 4096 * 4096 + 4096,
        "fc8": 4096 * 1000 + 1000,
    },
    "one_weird_trick": {
        "conv1": conv_params(11, 3, 64),
        "conv2": conv_params(5, 64, 192),
        "conv3": conv_params(3, 192, 384),
        "conv4": conv_params(3, 384, 256),
        "conv5": conv_params(3, 256, 256),
        "fc6": 9216 * 4096 + 4096,
        "fc7": 4096 * 4096 + 4096,
        "fc8": 4096 * 1000 + 1000,
    },
}
EXPECTED_PARAMS["caffe"] = EXPECTED_PARAMS["paper"]
TOTALS = {"paper": 60_965_224, "caffe": 60_965_224, "one_weird_trick": 61_100_840}

# A network of AlexNet's shape small enough to build, save and train in moments: the
# paper's kernels, strides, LRN and pooling with 12-32-48-48-32 channels and fc6, fc7 of 64.
# Tests register it in variants.VARIANTS (with monkeypatch, which removes it afterwards).
TINY = tiny.VARIANT


def test_paper_layer_names_and_shapes(paper_model):
    names = [layer.name for layer in paper_model.layers[1:]]
    assert names == list(PAPER_SHAPES)
    for name, shape in PAPER_SHAPES.items():
        assert tuple(paper_model.get_layer(name).output.shape[1:]) == shape, name


@pytest.mark.parametrize("variant", sorted(variants.VARIANTS))
def test_parameter_counts(variant):
    model = keras_alexnet.AlexNet(variant=variant)
    assert model.count_params() == TOTALS[variant]
    assert sum(EXPECTED_PARAMS[variant].values()) == TOTALS[variant]
    for name, count in EXPECTED_PARAMS[variant].items():
        assert model.get_layer(name).count_params() == count, name
    # The paper's per-layer figures in paper.py agree with the arithmetic above.
    if variant == "paper":
        for spec in paper.LAYERS:
            assert spec.params == count_params_of(model, spec.name), spec.name
        assert paper.TOTAL_PARAMS == TOTALS["paper"]


def count_params_of(model, name):
    return model.get_layer(name).count_params()


def test_towers_are_grouped_layers(paper_model):
    grouped = {
        layer.name: layer.groups
        for layer in paper_model.layers
        if isinstance(layer, layers.GroupedConv2D)
    }
    assert grouped == {"conv2": 2, "conv4": 2, "conv5": 2}
    assert paper_model.get_layer("conv2").kernel.shape == (5, 5, 48, 256)
    assert paper_model.get_layer("conv3").kernel.shape == (3, 3, 256, 384)
    assert paper_model.get_layer("conv4").kernel.shape == (3, 3, 192, 384)
    assert paper_model.get_layer("conv5").kernel.shape == (3, 3, 192, 256)


def test_paper_lrn_and_pool_settings(paper_model):
    for name in ("lrn1", "lrn2"):
        lrn = paper_model.get_layer(name)
        assert (lrn.depth_radius, lrn.bias, lrn.alpha, lrn.beta) == (2, 2.0, 1e-4, 0.75)
    for name in ("pool1", "pool2", "pool5"):
        pool = paper_model.get_layer(name)
        assert tuple(pool.pool_size) == (3, 3) and tuple(pool.strides) == (2, 2)
    for name in ("dropout6", "dropout7"):
        assert paper_model.get_layer(name).rate == 0.5


def test_paper_init_statistics(paper_model):
    ones = {"conv2", "conv4", "conv5", "fc6", "fc7"}
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        layer = paper_model.get_layer(name)
        kernel = layer.kernel.numpy()
        tolerance = 5 * 0.01 / math.sqrt(2 * kernel.size)
        assert abs(kernel.std() - 0.01) < tolerance, name
        assert abs(kernel.mean()) < 5 * 0.01 / math.sqrt(kernel.size), name
        np.testing.assert_array_equal(layer.bias.numpy(), 1.0 if name in ones else 0.0)


def test_caffe_init_and_lrn():
    keras.utils.set_random_seed(1)
    model = keras_alexnet.AlexNet(variant="caffe")
    lrn = model.get_layer("lrn1")
    assert (lrn.bias, lrn.alpha * 5) == (1.0, pytest.approx(1e-4))
    for name in ("conv2", "conv4", "conv5", "fc6", "fc7"):
        np.testing.assert_allclose(model.get_layer(name).bias.numpy(), 0.1)
    for name, std in (("fc6", 0.005), ("fc7", 0.005), ("fc8", 0.01), ("conv1", 0.01)):
        assert model.get_layer(name).kernel.numpy().std() == pytest.approx(std, rel=0.03)


def test_one_weird_trick_layout():
    model = keras_alexnet.AlexNet(variant="one_weird_trick")
    assert not any(
        isinstance(layer, (layers.GroupedConv2D, layers.LocalResponseNormalization))
        for layer in model.layers
    )
    assert tuple(model.get_layer("conv1").output.shape[1:]) == (56, 56, 64)
    assert tuple(model.get_layer("pool5").output.shape[1:]) == (6, 6, 256)
    names = [layer.name for layer in model.layers]
    # torchvision: Dropout, Linear, ReLU, Dropout, Linear, ReLU, Linear.
    assert names[-5:] == ["dropout6", "fc6", "dropout7", "fc7", "fc8"]
    # PyTorch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases.
    fc6 = model.get_layer("fc6")
    limit = 1 / math.sqrt(9216)
    assert np.abs(fc6.kernel.numpy()).max() <= limit
    assert fc6.kernel.numpy().std() == pytest.approx(limit / math.sqrt(3), rel=0.01)
    assert np.abs(fc6.bias.numpy()).max() <= limit and fc6.bias.numpy().std() > limit / 3


def test_include_top_false_gives_pool5():
    model = keras_alexnet.AlexNet(include_top=False, input_shape=(None, None, 3))
    assert model.output.shape[1:] == (None, None, 256)
    out = model(np.zeros((1, 227, 227, 3), np.float32))
    assert out.shape == (1, 6, 6, 256)
    small = keras_alexnet.AlexNet(include_top=False, input_shape=(224, 224, 3))
    assert small.output.shape[1:] == (5, 5, 256)


def test_pooling_reduces_the_pool5_maps_and_input_tensor_is_the_input():
    tiny.register()
    images = keras.Input((None, None, 3), name="photo")
    scaled = keras.layers.Rescaling(2.0)(images)
    maps = keras_alexnet.AlexNet(variant="tiny", include_top=False, input_tensor=scaled)
    assert maps.input is images  # the source of input_tensor, as keras.applications has it
    x = np.random.default_rng(0).uniform(0, 255, (2, 259, 227, 3)).astype(np.float32)
    pool5 = np.asarray(maps(x))
    assert pool5.shape == (2, 7, 6, 32)
    for pooling, reduce in (("avg", np.mean), ("max", np.max)):
        pooled = keras_alexnet.AlexNet(
            variant="tiny", include_top=False, pooling=pooling, input_tensor=scaled
        )
        pooled.set_weights(maps.get_weights())
        assert pooled.output.shape[1:] == (32,)
        np.testing.assert_allclose(pooled(x), reduce(pool5, axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_weight_decay_is_an_l2_penalty_of_half(paper_model):
    layer = paper_model.get_layer("fc8")
    assert layer.kernel_regularizer.l2 == pytest.approx(paper.WEIGHT_DECAY / 2)
    assert layer.bias_regularizer is None
    w = layer.kernel.numpy().astype(np.float64)
    penalty = keras.ops.convert_to_numpy(layer.kernel_regularizer(layer.kernel))
    assert penalty == pytest.approx(paper.WEIGHT_DECAY / 2 * np.sum(w**2), rel=1e-4)
    assert len(paper_model.losses) == 8
    none = keras_alexnet.AlexNet(10, weight_decay=0, include_top=True)
    assert not none.losses


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(variant="vgg"), "variant must be one of .* Received: variant='vgg'"),
        (dict(num_classes=0), "num_classes must be an integer >= 1. Received: num_classes=0"),
        (dict(input_shape=(224, 224, 3)), r"leaves a 5x5 pool5 map.*Received: input_shape"),
        (dict(input_shape=(100, 100, 3)), "pool5 map"),
        (dict(input_shape=(227, 227)), "input_shape must be"),
        (dict(input_shape=(None, None, 3)), "fixed input height"),
        (dict(dropout=1.0), "dropout must be in"),
        (dict(weight_decay=-1.0), "weight_decay"),
        (dict(implementation="cudnn"), "implementation must be one of"),
        (dict(include_top=False, input_shape=(40, 40, 3)), "too small"),
        (dict(include_top=False, pooling="mean"), "pooling must be one of"),
        (dict(pooling="avg"), "pooling applies to the pool5 maps of include_top=False"),
        (dict(include_top=False, class_names=["a"]), "class_names name fc8's classes"),
        (dict(input_tensor=np.zeros((1, 227, 227, 3))), "input_tensor must be a Keras tensor"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        keras_alexnet.AlexNet(**kwargs)


def test_implementations_share_weights_and_outputs(paper_model):
    keras_groups = keras_alexnet.AlexNet(implementation="keras_groups")
    keras_groups.set_weights(paper_model.get_weights())
    x = np.random.default_rng(0).normal(0, 50, (2, 227, 227, 3)).astype(np.float32)
    np.testing.assert_allclose(
        paper_model(x).numpy(), keras_groups(x).numpy(), rtol=1e-4, atol=1e-6
    )


def test_mixed_precision_keeps_logits_float32():
    keras.config.set_dtype_policy("mixed_float16")
    model = keras_alexnet.AlexNet(10)
    assert model.get_layer("conv2").compute_dtype == "float16"
    assert model.get_layer("fc8").compute_dtype == "float32"
    out = model(np.random.default_rng(0).normal(0, 50, (1, 227, 227, 3)).astype(np.float32))
    assert out.dtype == "float32"
    assert np.isfinite(out.numpy()).all()
    np.testing.assert_allclose(out.numpy().sum(), 1.0, rtol=1e-5)


def test_one_training_step_lowers_the_loss():
    from keras_alexnet.training import steps

    keras.utils.set_random_seed(0)
    model = keras_alexnet.AlexNet(4, dropout=0.0)
    # A small step: on 8 noise images the paper's 0.01 overshoots (the loss of a batch this
    # small is not what the paper's rate was tuned for); descent must still descend.
    optimizer = keras.optimizers.SGD(1e-3)
    rng = np.random.default_rng(0)
    images = rng.normal(0, 50, (8, 227, 227, 3)).astype(np.float32)
    labels = np.arange(8) % 4
    step = steps.make_train_step(model, optimizer, global_batch_size=8)
    before = model.get_layer("conv2").kernel.numpy().copy()
    # Each call returns the loss before its update, so losses[1] is the loss after step 1;
    # the optimised loss is the cross-entropy plus the weight decay, returned apart.
    losses = [sum(float(x) for x in step(images, labels)[:2]) for _ in range(2)]
    assert np.isfinite(losses).all()
    assert losses[1] < losses[0]
    assert not np.allclose(model.get_layer("conv2").kernel.numpy(), before)
    # The cross-entropy of the predictions, and the coupled weight decay (model.losses).
    probs = model(images, training=False).numpy()
    ce = -np.mean(np.log(probs[np.arange(8), labels]))
    reg = sum(float(x) for x in model.losses)
    assert reg > 0
    cross_entropy, decay = (float(x) for x in step(images, labels)[:2])
    assert cross_entropy == pytest.approx(ce, rel=1e-4)
    assert decay == pytest.approx(reg, rel=1e-5)


def test_keras_file_loads_in_a_fresh_process(tmp_path, paper_model):
    path = tmp_path / "alexnet.keras"
    paper_model.save(path)
    x = np.random.default_rng(5).normal(0, 50, (2, 227, 227, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "want.npy", paper_model(x, training=False).numpy())
    script = textwrap.dedent(f"""
        import keras_alexnet  # registers the custom layers; nothing else is imported
        import keras, numpy as np
        model = keras.models.load_model({str(path)!r})
        got = model(np.load({str(tmp_path / "x.npy")!r}), training=False)
        np.testing.assert_allclose(np.asarray(got), np.load({str(tmp_path / "want.npy")!r}),
                                   rtol=1e-5, atol=1e-7)
        assert type(model.get_layer("conv2")).__name__ == "GroupedConv2D"
        assert model.get_layer("lrn1").alpha == 1e-4
        print("LOADED", model.count_params())
    """)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LOADED 60965224" in result.stdout


def test_input_rescaling_equals_rescaled_inputs(paper_model):
    scale, offset = [0.5, 0.25, 2.0], [-1.0, 0.0, 3.0]
    rescaled = keras_alexnet.AlexNet(input_scale=scale, input_offset=offset)
    assert rescaled.layers[1].name == "input_rescaling"
    assert rescaled.count_params() == paper_model.count_params()
    rescaled.set_weights(paper_model.get_weights())
    x = np.random.default_rng(2).normal(0, 50, (2, 227, 227, 3)).astype(np.float32)
    want = paper_model(x * np.array(scale, np.float32) + np.array(offset, np.float32))
    np.testing.assert_allclose(rescaled(x).numpy(), want.numpy(), rtol=1e-4, atol=1e-7)
    assert "input_rescaling" not in [layer.name for layer in paper_model.layers]
    with pytest.raises(ValueError, match="input_scale must be positive"):
        keras_alexnet.AlexNet(input_scale=0.0)


def test_he_init_statistics():
    keras.utils.set_random_seed(3)
    model = keras_alexnet.AlexNet(init="he")
    for name in ("conv1", "conv2", "fc6"):
        layer = model.get_layer(name)
        fan_in = math.prod(layer.kernel.shape[:-1])
        assert layer.kernel.numpy().std() == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)
        np.testing.assert_array_equal(layer.bias.numpy(), 0.0)


def test_a_variant_registered_at_run_time_builds_saves_and_is_recognised(
    monkeypatch, tmp_path, paper_model
):
    monkeypatch.setitem(variants.VARIANTS, TINY.name, TINY)
    # The same convolutions with a wider head: only fc6 and fc7 tell the two apart.
    wide = dataclasses.replace(TINY, name="tiny_wide", dense_units=(96, 80))
    monkeypatch.setitem(variants.VARIANTS, wide.name, wide)
    keras.utils.set_random_seed(0)
    model = keras_alexnet.AlexNet(10, variant="tiny")
    expected = {
        "conv1": conv_params(11, 3, 12),
        "conv2": conv_params(5, 12, 32, 2),
        "conv3": conv_params(3, 32, 48),
        "conv4": conv_params(3, 48, 48, 2),
        "conv5": conv_params(3, 48, 32, 2),
        "fc6": 6 * 6 * 32 * 64 + 64,
        "fc7": 64 * 64 + 64,
        "fc8": 64 * 10 + 10,
    }
    for name, count in expected.items():
        assert model.get_layer(name).count_params() == count, name
    assert model.count_params() == sum(expected.values()) == 119_034
    assert tuple(model.get_layer("pool5").output.shape[1:]) == (6, 6, 32)
    assert model_lib.pool5_size(227, "tiny") == 6

    assert inspection.variant_of(model) == "tiny"
    assert inspection.variant_of(keras_alexnet.AlexNet(10, variant="tiny_wide")) == "tiny_wide"
    assert inspection.variant_of(paper_model) == "paper"

    path = tmp_path / "tiny.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(6).normal(0, 50, (2, 227, 227, 3)).astype(np.float32)
    np.testing.assert_allclose(
        loaded(x, training=False).numpy(), model(x, training=False).numpy(), rtol=1e-5, atol=1e-7
    )
    assert inspection.variant_of(loaded) == "tiny"
    assert loaded.count_params() == model.count_params()
