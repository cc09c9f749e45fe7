"""The converter: each source convention undone, checked against the ORIGINAL layouts.

The Caffe files are real protobuf bytes written here with caffe.proto's field numbers; the
references are computed from the Caffe-layout arrays with NumPy, per Caffe's own rules
(BGR, mean pixel, (out, in, h, w) kernels, groups, channel-first flattening of pool5).
"""

import dataclasses
import logging
import os
import pickle
import struct
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_alexnet import convert

# bvlc_alexnet's blob shapes in Caffe's layout: (out, in / groups, h, w) and (out, in).
CAFFE_SHAPES = {
    "conv1": (96, 3, 11, 11),
    "conv2": (256, 48, 5, 5),
    "conv3": (384, 256, 3, 3),
    "conv4": (384, 192, 3, 3),
    "conv5": (256, 192, 3, 3),
    "fc6": (4096, 256 * 6 * 6),
    "fc7": (4096, 4096),
    "fc8": (1000, 4096),
}


def max_rel_diff(actual, expected):
    """max |actual - expected|, relative to max |expected|."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def random_weights(shapes, seed):
    """He-scaled random weights and small biases, so activations neither vanish nor explode."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shape[1:]))
        kernel = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        bias = rng.standard_normal(shape[0], dtype=np.float32) * np.float32(0.1)
        weights[name] = (kernel, bias)
    return weights


def random_image(seed=0, size=227):
    """Raw RGB pixels in 0-255, batch of one."""
    return np.random.default_rng(seed).uniform(0, 255, (1, size, size, 3)).astype(np.float32)


# ------------------------------------------------------------------------------------------
# A small protobuf encoder with caffe.proto's field numbers, independent of the reader.
# ------------------------------------------------------------------------------------------


def pb_varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def pb_key(field, wire):
    return pb_varint(field << 3 | wire)


def pb_bytes(field, payload):
    return pb_key(field, 2) + pb_varint(len(payload)) + payload


def pb_int(field, value):
    return pb_key(field, 0) + pb_varint(value)


def pb_blob(array, legacy_shape=False, packed=True, double=False):
    """A BlobProto: shape as BlobShape (field 7) or legacy num/channels/height/width (1-4)."""
    array = np.asarray(array)
    if legacy_shape:
        dims = (1,) * (4 - array.ndim) + array.shape
        shape = b"".join(pb_int(field, d) for field, d in zip((1, 2, 3, 4), dims))
    else:
        shape = pb_bytes(7, pb_bytes(1, b"".join(pb_varint(d) for d in array.shape)))
    flat = array.reshape(-1)
    if double:
        data = pb_bytes(8, flat.astype("<f8").tobytes())
    elif packed:
        data = pb_bytes(5, flat.astype("<f4").tobytes())
    else:  # one (tag, fixed32) record per value, as proto2 writes unpacked repeated floats
        data = b"".join(pb_key(5, 5) + struct.pack("<f", v) for v in flat.tolist())
    return data + shape  # Field order on the wire is free; put data first to prove it.


def pb_layer(name, kind, blobs=(), layout="layer", blob_kwargs=None):
    """One layer in the current LayerParameter or the legacy V1LayerParameter layout."""
    blob_kwargs = blob_kwargs or {}
    encoded = [pb_blob(b, **blob_kwargs) for b in blobs]
    if layout == "layer":  # LayerParameter: name 1, type 2, bottom 3, top 4, blobs 7
        body = pb_bytes(1, name.encode()) + pb_bytes(2, kind.encode())
        body += pb_bytes(3, b"data") + pb_bytes(4, name.encode())
        body += pb_bytes(106, pb_int(1, 7) + pb_int(4, 1))  # a convolution_param to skip
        body += b"".join(pb_bytes(7, e) for e in encoded)
        return pb_bytes(100, body)
    v1_types = {"Convolution": 4, "InnerProduct": 14, "LRN": 15, "Pooling": 17, "ReLU": 18}
    if layout == "layers":  # V1LayerParameter: bottom 2, top 3, name 4, type 5, blobs 6
        body = pb_bytes(2, b"data") + pb_bytes(3, name.encode()) + pb_bytes(4, name.encode())
        body += pb_int(5, v1_types[kind]) + b"".join(pb_bytes(6, e) for e in encoded)
        body += pb_key(7, 5) + struct.pack("<f", 1.0)  # blobs_lr, a fixed32 to skip
        return pb_bytes(2, body)
    # A V0LayerParameter (name 1, type 2, blobs 50) nested in a V1 layer's field 1.
    v0_types = {"Convolution": "conv", "InnerProduct": "innerproduct", "Pooling": "pool"}
    v0 = pb_bytes(1, name.encode()) + pb_bytes(2, v0_types.get(kind, kind.lower()).encode())
    v0 += b"".join(pb_bytes(50, e) for e in encoded)
    return pb_bytes(2, pb_bytes(1, v0) + pb_bytes(2, b"data"))


def write_caffemodel(path, weights, layout="layer", blob_kwargs=None):
    """bvlc_alexnet's layer sequence, as Caffe's Net::ToProto writes it (every layer)."""
    sequence = [
        ("data", "Input"),
        ("conv1", "Convolution"),
        ("relu1", "ReLU"),
        ("norm1", "LRN"),
        ("pool1", "Pooling"),
        ("conv2", "Convolution"),
        ("relu2", "ReLU"),
        ("norm2", "LRN"),
        ("pool2", "Pooling"),
        ("conv3", "Convolution"),
        ("conv4", "Convolution"),
        ("conv5", "Convolution"),
        ("pool5", "Pooling"),
        ("fc6", "InnerProduct"),
        ("fc7", "InnerProduct"),
        ("fc8", "InnerProduct"),
    ]
    with open(path, "wb") as f:
        f.write(pb_bytes(1, b"AlexNet"))  # NetParameter.name
        for name, kind in sequence:
            if layout != "layer" and kind == "Input":
                continue
            f.write(pb_layer(name, kind, weights.get(name, ()), layout, blob_kwargs))


# ------------------------------------------------------------------------------------------
# The Caffe reader on small nets: every layout decodes to the same arrays.
# ------------------------------------------------------------------------------------------

SMALL_SHAPES = {
    "conv1": (4, 3, 3, 3),
    "conv2": (6, 2, 3, 3),
    "conv3": (5, 6, 3, 3),
    "conv4": (4, 3, 3, 3),
    "conv5": (2, 2, 3, 3),
    "fc6": (7, 8),
    "fc7": (3, 7),
    "fc8": (5, 3),
}

ENCODINGS = {
    "layer, BlobShape, packed": ("layer", {}),
    "layer, legacy 4-D blobs (seen in AlexNet files)": ("layer", {"legacy_shape": True}),
    "V1 layers, legacy 4-D blobs": ("layers", {"legacy_shape": True}),
    "V1 layers, unpacked floats": ("layers", {"legacy_shape": True, "packed": False}),
    "V0 layers nested in V1": ("v0", {"legacy_shape": True}),
    "layer, double_data": ("layer", {"double": True}),
}


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_caffemodel_reader_decodes_every_layout_to_caffes_arrays(tmp_path, encoding):
    layout, blob_kwargs = ENCODINGS[encoding]
    weights = random_weights(SMALL_SHAPES, seed=1)
    path = tmp_path / "small.caffemodel"
    write_caffemodel(path, weights, layout, blob_kwargs)

    pretrained = convert.read_caffemodel(path)

    assert pretrained.format == "caffemodel" and pretrained.variant == "caffe"
    assert (pretrained.kernel_layout, pretrained.dense_layout) == ("oihw", "oi")
    assert (pretrained.fc6_rows, pretrained.channel_order) == ("chw", "bgr")
    assert pretrained.notes == ()
    assert list(pretrained.layers) == list(SMALL_SHAPES)
    for name, (kernel, bias) in weights.items():
        got_kernel, got_bias = pretrained.layers[name]
        assert got_kernel.shape == kernel.shape, name  # fc (1, 1, out, in) comes back 2-D
        assert got_bias.shape == bias.shape, name
        np.testing.assert_array_equal(got_kernel, kernel)
        np.testing.assert_array_equal(got_bias, bias)
    assert pretrained.num_classes == 5


def test_caffemodel_reader_undoes_inner_product_transpose(tmp_path):
    weights = random_weights(SMALL_SHAPES, seed=7)
    path = tmp_path / "transposed.caffemodel"
    write_caffemodel(path, {k: v for k, v in weights.items() if k != "fc7"})
    kernel, bias = weights["fc7"]
    inner_product_param = pb_bytes(117, pb_int(1, kernel.shape[0]) + pb_int(6, 1))
    body = pb_bytes(1, b"fc7") + pb_bytes(2, b"InnerProduct") + inner_product_param
    body += pb_bytes(7, pb_blob(kernel.T)) + pb_bytes(7, pb_blob(bias))  # stored (in, out)
    with open(path, "ab") as f:
        f.write(pb_bytes(100, body))
    np.testing.assert_array_equal(convert.read_caffemodel(path).layers["fc7"][0], kernel)


def test_caffemodel_reader_refuses_broken_files(tmp_path):
    weights = random_weights(SMALL_SHAPES, seed=2)
    path = tmp_path / "small.caffemodel"
    write_caffemodel(path, weights)
    data = path.read_bytes()

    truncated = tmp_path / "truncated.caffemodel"
    truncated.write_bytes(data[: len(data) - 10])
    with pytest.raises(ValueError, match="truncated"):
        convert.read_caffemodel(truncated)

    mixed = tmp_path / "mixed.caffemodel"
    mixed.write_bytes(data + pb_layer("extra", "ReLU", layout="layers"))
    with pytest.raises(ValueError, match="mixes"):
        convert.read_caffemodel(mixed)

    renamed = tmp_path / "renamed.caffemodel"
    write_caffemodel(renamed, {k: v for k, v in weights.items() if k != "fc8"})
    with open(renamed, "ab") as f:  # a fine-tuned net with a new last layer
        f.write(pb_layer("fc8_new", "InnerProduct", weights["fc8"]))
    with pytest.raises(ValueError, match=r"no weights for \['fc8'\].*fc8_new"):
        convert.read_caffemodel(renamed)


def test_caffemodel_reader_notes_caffenets_pool_before_lrn(tmp_path):
    weights = random_weights(SMALL_SHAPES, seed=3)
    path = tmp_path / "caffenet.caffemodel"
    with open(path, "wb") as f:
        for name, kind in [("conv1", "Convolution"), ("pool1", "Pooling"), ("norm1", "LRN")]:
            f.write(pb_layer(name, kind, weights.get(name, ()), "layers"))
        for name in list(SMALL_SHAPES)[1:]:
            kind = "InnerProduct" if name.startswith("fc") else "Convolution"
            f.write(pb_layer(name, kind, weights[name], "layers"))
    assert "CaffeNet" in convert.read_caffemodel(path).notes[0]


# ------------------------------------------------------------------------------------------
# A full-size bvlc_alexnet .caffemodel, converted once for the class.
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="class")
def caffe(tmp_path_factory):
    """Random Caffe-layout weights, written as a legacy V1 .caffemodel (as bvlc_alexnet's
    is) and converted with `convert.convert`."""
    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("caffe")
    weights = random_weights(CAFFE_SHAPES, seed=0)
    src = folder / "bvlc_alexnet.caffemodel"
    write_caffemodel(src, weights, layout="layers", blob_kwargs={"legacy_shape": True})
    output = folder / "converted" / "alexnet.keras"
    model = convert.convert(src, output, classifier_activation=None)
    return {"weights": weights, "model": model, "src": src, "output": output, "dir": folder}


def caffe_input(image_rgb):
    """Caffe's preprocessing of raw RGB pixels: to BGR, minus the BGR mean pixel."""
    return image_rgb[..., ::-1] - np.asarray(convert.CAFFE_MEAN_BGR, np.float32)


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
        pretrained = convert.read_caffemodel(caffe["src"])
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

        refused = run_convert(str(src), f"--output={output}")
        assert refused.returncode == 1 and "allow_pickle" in refused.stderr
        assert not output.exists()

        result = run_convert(str(src), f"--output={output}", "--allow_pickle")
        assert result.returncode == 0, result.stderr
        assert "1000 classes" in result.stdout
        assert "arbitrary code" in result.stderr  # the warning

        loaded = keras.models.load_model(output, compile=False)
        for name in convert.LAYER_NAMES:
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

        again = run_convert(str(src), f"--output={output}", "--allow_pickle")
        assert again.returncode == 1 and "refusing to overwrite" in again.stderr


def run_convert(*args):
    return subprocess.run(
        [sys.executable, "-m", "keras_alexnet.convert", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )


# ------------------------------------------------------------------------------------------
# .npy: refused without allow_pickle, warned about with it.
# ------------------------------------------------------------------------------------------


def small_npy(path, weights, as_dicts=False):
    net_data = {}
    for name, (kernel, bias) in weights.items():
        kernel = kernel.transpose(2, 3, 1, 0) if kernel.ndim == 4 else kernel.T
        net_data[name] = {"weights": kernel, "biases": bias} if as_dicts else [kernel, bias]
    np.save(path, net_data, allow_pickle=True)


def test_npy_refused_without_allow_pickle(tmp_path):
    path = tmp_path / "bvlc_alexnet.npy"
    small_npy(path, random_weights(SMALL_SHAPES, seed=4))
    with pytest.raises(ValueError, match="execute arbitrary code.*allow_pickle=False"):
        convert.read_npy_dict(path)
    with pytest.raises(ValueError, match="allow_pickle"):
        convert.convert(path, tmp_path / "out.keras")
    assert not (tmp_path / "out.keras").exists()


@pytest.mark.parametrize("as_dicts", [False, True], ids=["lists", "dicts"])
def test_npy_read_with_allow_pickle_warns_and_keeps_its_layout(tmp_path, caplog, as_dicts):
    weights = random_weights(SMALL_SHAPES, seed=5)
    path = tmp_path / "bvlc_alexnet.npy"
    small_npy(path, weights, as_dicts)
    with caplog.at_level(logging.WARNING):
        pretrained = convert.read_npy_dict(path, allow_pickle=True)
    assert "arbitrary code" in caplog.text
    assert (pretrained.kernel_layout, pretrained.dense_layout) == ("hwio", "io")
    assert (pretrained.fc6_rows, pretrained.channel_order) == ("hwc", "bgr")
    assert pretrained.variant == "caffe"
    np.testing.assert_array_equal(
        pretrained.layers["conv2"][0], weights["conv2"][0].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(pretrained.layers["fc8"][1], weights["fc8"][1])


def test_npy_that_is_not_a_dict_is_refused(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(ValueError, match="does not hold a dict"):
        convert.read_npy_dict(path, allow_pickle=True)


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
    mean = np.asarray(convert.TORCHVISION_MEAN_RGB, np.float32)
    std = np.asarray(convert.TORCHVISION_STD_RGB, np.float32)
    nchw = ((image / 255.0 - mean) / std).transpose(0, 3, 1, 2)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(np.ascontiguousarray(nchw))).numpy()
        features = torch_model.features(torch.from_numpy(np.ascontiguousarray(nchw))).numpy()
    logits = np.asarray(model(image, training=False))
    (pool5,) = outputs(model, ["pool5"], image)

    assert max_rel_diff(pool5, features.transpose(0, 2, 3, 1)) < 1e-4
    assert max_rel_diff(logits, expected) < 1e-4
    assert np.argmax(logits) == np.argmax(expected)


def test_missing_torch_asks_for_the_extra(tmp_path, monkeypatch):
    src = tmp_path / "alexnet.pth"
    src.write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install keras-alexnet\[torch\]"):
        convert.read_torch_state_dict(src)
    with pytest.raises(ImportError, match=r"keras-alexnet\[torch\]"):
        convert.convert(src, tmp_path / "out.keras")


def test_torch_file_that_is_not_a_state_dict_is_refused(tmp_path):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (an optional extra)")
    src = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(2, 3, 11, 11)}, src)
    with pytest.raises(ValueError, match=r"not torchvision's AlexNet.*features\.3"):
        convert.read_torch_state_dict(src)
    pickled = tmp_path / "pickled.pth"
    with open(pickled, "wb") as f:
        pickle.dump(object(), f, protocol=2)
    with pytest.raises(ValueError, match="weights_only=True"):
        convert.read_torch_state_dict(pickled)


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


def test_format_detection():
    assert convert.detect_format("a/bvlc_alexnet.caffemodel") == "caffemodel"
    assert convert.detect_format("bvlc_alexnet.NPY") == "npy"
    assert convert.detect_format("alexnet-owt-7be5be79.pth") == "torch"
    assert convert.detect_format("alexnet.pt") == "torch"
    with pytest.raises(ValueError, match=r"extension '\.h5'.*src='x\.h5'"):
        convert.detect_format("x.h5")
    with pytest.raises(ValueError, match="fmt must be one of"):
        convert.read_weights("x.caffemodel", fmt="onnx")


def test_num_classes_must_match_fc8(tmp_path):
    weights = random_weights(SMALL_SHAPES, seed=6)
    path = tmp_path / "small.caffemodel"
    write_caffemodel(path, weights)
    pretrained = convert.read_caffemodel(path)
    with pytest.raises(ValueError, match=r"fc8: the weights have 5 classes.*num_classes=1000"):
        convert.build_model(pretrained, num_classes=1000)


def test_torchvision_preprocessing_constants():
    scale, offset = convert._torchvision_preprocessing()
    pixels = np.array([0.0, 127.5, 255.0])
    for c in range(3):
        expected = (pixels / 255 - convert.TORCHVISION_MEAN_RGB[c]) / convert.TORCHVISION_STD_RGB[c]
        np.testing.assert_allclose(pixels * scale[c] + offset[c], expected, rtol=1e-12)
