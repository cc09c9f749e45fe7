"""The converter: each source convention undone, checked against the ORIGINAL layouts.

The Caffe files are real protobuf bytes written with caffe.proto's field numbers (by
caffe_proto_test's encoder); the references are computed from the Caffe-layout arrays with
NumPy, per Caffe's own rules (BGR, mean pixel, (out, in, h, w) kernels, groups,
channel-first flattening of pool5).
"""

import dataclasses
import os

import fresh_process
import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny
from caffe_files import BVLC_ALEXNET_SHAPES
from caffe_files import SMALL_SHAPES
from caffe_files import random_weights
from caffe_files import write_caffemodel

from keras_alexnet.models import inspection
from keras_alexnet.models import variants
from keras_alexnet.weights import conversion as convert
from keras_alexnet.weights import weight_files


def max_rel_diff(actual, expected):
    """max |actual - expected|, relative to max |expected|."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def random_image(seed=0, size=227):
    """Raw RGB pixels in 0-255, batch of one."""
    return np.random.default_rng(seed).uniform(0, 255, (1, size, size, 3)).astype(np.float32)


# ------------------------------------------------------------------------------------------
# A full-size bvlc_alexnet .caffemodel, converted once for the class.
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="class")
def caffe(tmp_path_factory):
    """Random Caffe-layout weights, written as a legacy V1 .caffemodel (as bvlc_alexnet's
    is) and converted with `convert.convert`."""
    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("caffe")
    weights = random_weights(BVLC_ALEXNET_SHAPES, seed=0)
    src = folder / "bvlc_alexnet.caffemodel"
    write_caffemodel(src, weights, layout="layers", blob_kwargs={"legacy_shape": True})
    output = folder / "converted" / "alexnet.keras"
    model = convert.convert(src, output, classifier_activation=None)
    return {"weights": weights, "model": model, "src": src, "output": output, "dir": folder}


def caffe_input(image_rgb):
    """Caffe's preprocessing of raw RGB pixels: to BGR, minus the BGR mean pixel."""
    return image_rgb[..., ::-1] - np.asarray(weight_files.CAFFE_MEAN_BGR, np.float32)


def outputs(model, names, image):
    sub = keras.Model(model.input, {n: model.get_layer(n).output for n in names})
    results = sub(image, training=False)
    return [np.asarray(results[n]) for n in names]


class TestCaffemodel:
    def test_model_is_caffes_variant_with_its_preprocessing(self, caffe):
        model = caffe["model"]
        assert os.path.exists(caffe["output"])
        assert model.get_layer("fc8").units == 1000
        assert model.get_layer("lrn1").alpha == pytest.approx(1e-4 / 5)  # the caffe variant
        rescaling = model.get_layer("input_rescaling")
        np.testing.assert_allclose(rescaling.scale, 1.0)
        np.testing.assert_allclose(
            rescaling.offset, [-122.6789143406786, -116.66876761696767, -104.0069879317889]
        )

    def test_conv1_on_rgb_equals_caffes_kernel_on_bgr(self, caffe):
        kernel, bias = caffe["weights"]["conv1"]  # (96, 3, 11, 11), BGR input channels
        image = random_image(seed=1)
        (conv1,) = outputs(caffe["model"], ["conv1"], image)

        # Caffe: every 11x11 patch at stride 4 of the BGR, mean-subtracted image.
        bgr = caffe_input(image)[0].astype(np.float64)
        windows = np.lib.stride_tricks.sliding_window_view(bgr, (11, 11), axis=(0, 1))
        patches = windows[::4, ::4]  # (55, 55, 3, 11, 11): [y, x, c, i, j]
        expected = np.einsum("yxcij,ocij->yxo", patches, kernel.astype(np.float64)) + bias
        expected = np.maximum(expected, 0.0)  # conv1 includes its ReLU

        assert conv1.shape == (1, 55, 55, 96)
        assert np.mean(expected > 0) > 0.3
        assert max_rel_diff(conv1[0], expected) < 1e-5

    def test_conv2_groups_are_caffes_groups(self, caffe):
        kernel, bias = caffe["weights"]["conv2"]  # (256, 48, 5, 5), group: 2
        pool1, conv2 = outputs(caffe["model"], ["pool1", "conv2"], random_image(seed=2))

        def per_group(order):
            towers = []
            for g in order:  # Caffe: filters g*128:(g+1)*128 see channels g*48:(g+1)*48
                x = pool1[..., g * 48 : (g + 1) * 48]
                k = kernel[g * 128 : (g + 1) * 128].transpose(2, 3, 1, 0)
                towers.append(tf.nn.conv2d(x, k, 1, "SAME").numpy())
            return np.maximum(np.concatenate(towers, axis=-1) + bias, 0.0)

        assert max_rel_diff(conv2, per_group([0, 1])) < 1e-5
        assert max_rel_diff(conv2, per_group([1, 0])) > 0.1  # the check sees a group swap

    def test_fc6_equals_caffes_matrix_on_channel_first_pool5(self, caffe):
        kernel, bias = caffe["weights"]["fc6"]  # (4096, 9216) over (channel, row, column)
        pool5, fc6 = outputs(caffe["model"], ["pool5", "fc6"], random_image(seed=3))

        chw = pool5.transpose(0, 3, 1, 2).reshape(1, -1).astype(np.float64)
        expected = np.maximum(chw @ kernel.T.astype(np.float64) + bias, 0.0)

        assert pool5.shape == (1, 6, 6, 256)
        assert np.mean(expected > 0) > 0.3
        assert max_rel_diff(fc6, expected) < 1e-5
        # Keras' own (row, column, channel) flattening with Caffe's rows would be wrong.
        hwc = pool5.reshape(1, -1).astype(np.float64)
        assert max_rel_diff(fc6, np.maximum(hwc @ kernel.T + bias, 0.0)) > 0.1

    def test_fc7_and_fc8_are_transposed(self, caffe):
        fc6, fc7, fc8 = outputs(caffe["model"], ["fc6", "fc7", "fc8"], random_image(seed=4))
        kernel7, bias7 = caffe["weights"]["fc7"]
        kernel8, bias8 = caffe["weights"]["fc8"]
        expected7 = np.maximum(fc6.astype(np.float64) @ kernel7.T + bias7, 0.0)
        assert max_rel_diff(fc7, expected7) < 1e-5
        assert max_rel_diff(fc8, expected7 @ kernel8.T + bias8) < 1e-5  # logits

    def test_shape_mismatch_names_the_layer_and_both_shapes(self, caffe):
        pretrained = weight_files.read_caffemodel(caffe["src"])
        model = caffe["model"]
        before = model.get_layer("conv1").get_weights()[0].copy()
        layers = dict(pretrained.layers)
        layers["conv4"] = (np.zeros((384, 384, 3, 3), np.float32), layers["conv4"][1])
        bad = dataclasses.replace(pretrained, layers=layers)
        with pytest.raises(ValueError) as error:
            convert.load_pretrained(model, bad)
        message = str(error.value)
        assert "conv4" in message
        assert "(3, 3, 384, 384)" in message and "(3, 3, 192, 384)" in message
        # Nothing was set: conv1 comes before conv4 but is untouched.
        np.testing.assert_array_equal(model.get_layer("conv1").get_weights()[0], before)

        layers = dict(pretrained.layers)
        layers["fc6"] = (np.zeros((4096, 9000), np.float32), layers["fc6"][1])
        with pytest.raises(ValueError, match=r"fc6.*\(9000, 4096\).*6x6x256.*\(4096, 9000\)"):
            convert.load_pretrained(model, dataclasses.replace(pretrained, layers=layers))

    def test_npy_dict_converted_in_a_fresh_process_matches(self, caffe):
        # caffe-tensorflow's layout of the same weights: kernels (h, w, in, out) still BGR,
        # dense (in, out), fc6 re-wired to (row, column, channel) rows, as its
        # DataReshaper does; a list [weights, biases] per layer, pickled by np.save.
        net_data = {}
        for name, (kernel, bias) in caffe["weights"].items():
            if name.startswith("conv"):
                kernel = kernel.transpose(2, 3, 1, 0)
            elif name == "fc6":
                kernel = kernel.reshape(4096, 256, 6, 6).transpose(2, 3, 1, 0).reshape(-1, 4096)
            else:
                kernel = kernel.T
            net_data[name] = [np.ascontiguousarray(kernel), bias]
        src = caffe["dir"] / "bvlc_alexnet.npy"
        np.save(src, net_data, allow_pickle=True)
        del net_data
        output = caffe["dir"] / "from_npy.keras"

        # Side by side: without --allow_pickle, refused; with it, converted; onto a file
        # that exists (the class fixture's), refused.
        not_written = caffe["dir"] / "refused.keras"
        refused, result, again = fresh_process.run_together(
            fresh_process.command("convert", src, f"--output={not_written}"),
            fresh_process.command("convert", src, f"--output={output}", "--allow_pickle"),
            fresh_process.command("convert", src, f"--output={caffe['output']}", "--allow_pickle"),
        )
        assert refused.returncode == 2 and "allow_pickle" in refused.stderr
        assert not not_written.exists()
        assert again.returncode == 1 and "refusing to overwrite" in again.stderr

        assert result.returncode == 0, result.stderr
        assert "1000 classes" in result.stdout
        assert "arbitrary code" in result.stderr  # the warning

        loaded = keras.models.load_model(output, compile=False)
        for name in weight_files.LAYER_NAMES:
            got = [np.asarray(w) for w in loaded.get_layer(name).weights]
            want = [np.asarray(w) for w in caffe["model"].get_layer(name).weights]
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w, err_msg=name)
        np.testing.assert_allclose(
            loaded.get_layer("input_rescaling").offset,
            caffe["model"].get_layer("input_rescaling").offset,
        )
        # The saved model outputs probabilities; the class fixture's, logits.
        image = random_image(seed=5)
        probs = np.asarray(loaded(image, training=False))
        logits = np.asarray(caffe["model"](image, training=False))
        np.testing.assert_allclose(probs, tf.nn.softmax(logits).numpy(), rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------------
# torchvision: a PyTorch AlexNet of torchvision's layout against the converted model.
# ------------------------------------------------------------------------------------------


def torchvision_alexnet(num_classes):
    """torchvision.models.AlexNet's layers and state-dict keys (torchvision not needed)."""
    from torch import nn

    class AlexNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
                nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
                nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
                nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
                nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
            )  # fmt: skip
            self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
            self.classifier = nn.Sequential(
                nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(),
                nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(),
                nn.Linear(4096, num_classes),
            )  # fmt: skip

        def forward(self, x):
            x = self.avgpool(self.features(x))
            return self.classifier(x.flatten(1))

    return AlexNet()


def test_torchvision_state_dict_matches_torch_model(tmp_path):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (an optional extra)")
    torch.manual_seed(0)
    torch_model = torchvision_alexnet(num_classes=10).eval()
    with torch.no_grad():  # He-scaled weights: PyTorch's default init fades the activations.
        for module in torch_model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5)
                module.bias.normal_(0.0, 0.1)
    src = tmp_path / "alexnet-owt-test.pth"
    torch.save(torch_model.state_dict(), src)

    model = convert.convert(src, tmp_path / "alexnet.keras", classifier_activation=None)

    assert model.get_layer("pad1").padding == ((2, 2), (2, 2))
    assert model.get_layer("fc8").units == 10
    image = random_image(seed=6, size=227)
    mean = np.asarray(weight_files.TORCHVISION_MEAN_RGB, np.float32)
    std = np.asarray(weight_files.TORCHVISION_STD_RGB, np.float32)
    nchw = ((image / 255.0 - mean) / std).transpose(0, 3, 1, 2)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(np.ascontiguousarray(nchw))).numpy()
        features = torch_model.features(torch.from_numpy(np.ascontiguousarray(nchw))).numpy()
    logits = np.asarray(model(image, training=False))
    (pool5,) = outputs(model, ["pool5"], image)

    assert max_rel_diff(pool5, features.transpose(0, 2, 3, 1)) < 1e-4
    assert max_rel_diff(logits, expected) < 1e-4
    assert np.argmax(logits) == np.argmax(expected)


# ------------------------------------------------------------------------------------------
# A variant registered at run time: a small Caffe net of AlexNet's shape.
# ------------------------------------------------------------------------------------------


def test_a_registered_variant_converts_like_bvlc_alexnet(tmp_path, monkeypatch):
    monkeypatch.setitem(variants.VARIANTS, tiny.VARIANT.name, tiny.VARIANT)
    shapes = {
        "conv1": (12, 3, 11, 11),
        "conv2": (32, 6, 5, 5),
        "conv3": (48, 32, 3, 3),
        "conv4": (48, 24, 3, 3),
        "conv5": (32, 24, 3, 3),
        "fc6": (64, 32 * 6 * 6),
        "fc7": (64, 64),
        "fc8": (10, 64),
    }
    weights = random_weights(shapes, seed=8)
    src = tmp_path / "tiny.caffemodel"
    write_caffemodel(src, weights)
    pretrained = dataclasses.replace(weight_files.read_caffemodel(src), variant="tiny")

    model = convert.build_model(pretrained, classifier_activation=None)

    assert inspection.variant_of(model) == "tiny"
    assert model.get_layer("fc8").units == 10
    image = random_image(seed=9)
    conv1, pool5, fc6 = outputs(model, ["conv1", "pool5", "fc6"], image)
    kernel, bias = weights["conv1"]  # Caffe's (12, 3, 11, 11) on BGR minus the mean pixel
    windows = np.lib.stride_tricks.sliding_window_view(
        caffe_input(image)[0].astype(np.float64), (11, 11), axis=(0, 1)
    )
    expected = np.einsum("yxcij,ocij->yxo", windows[::4, ::4], kernel.astype(np.float64)) + bias
    assert max_rel_diff(conv1[0], np.maximum(expected, 0.0)) < 1e-5
    kernel, bias = weights["fc6"]  # (64, 1152) over (channel, row, column)
    chw = pool5.transpose(0, 3, 1, 2).reshape(1, -1).astype(np.float64)
    assert max_rel_diff(fc6, np.maximum(chw @ kernel.T.astype(np.float64) + bias, 0.0)) < 1e-5


# ------------------------------------------------------------------------------------------
# Arguments.
# ------------------------------------------------------------------------------------------


def test_existing_output_is_refused_before_reading(tmp_path):
    output = tmp_path / "alexnet.keras"
    output.write_bytes(b"keep me")
    with pytest.raises(ValueError, match="refusing to overwrite.*alexnet.keras"):
        convert.convert(tmp_path / "missing.caffemodel", output)
    assert output.read_bytes() == b"keep me"
    with pytest.raises(ValueError, match=r"output must be a \.keras file"):
        convert.convert(tmp_path / "missing.caffemodel", tmp_path / "alexnet.h5")


def test_num_classes_must_match_fc8(tmp_path):
    weights = random_weights(SMALL_SHAPES, seed=6)
    path = tmp_path / "small.caffemodel"
    write_caffemodel(path, weights)
    pretrained = weight_files.read_caffemodel(path)
    with pytest.raises(ValueError, match=r"fc8: the weights have 5 classes.*num_classes=1000"):
        convert.build_model(pretrained, num_classes=1000)
