"""The readers on AlexNets written the ways they are in the wild, at small sizes."""

import json
import os
import zipfile

import keras
import numpy as np
import pytest

from keras_alexnet import errors
from keras_alexnet import hub
from keras_alexnet.models import loading
from keras_alexnet.paper import matching
from keras_alexnet.paper import network as net
from keras_alexnet.paper import onnx_reader
from keras_alexnet.paper import readers

L = keras.layers


def test_two_towers_and_a_written_out_lrn_in_onnx(tmp_path):
    """PyTorch with the two towers as two convolutions and LocalResponseNorm (as paper code
    writes them): ONNX holds Split, two Conv, Concat, and the LRN as elementwise ops."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    nn = torch.nn

    class Towers(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(4, 6, 5, padding=2), nn.Conv2d(4, 6, 5, padding=2)

        def forward(self, x):
            x1, x2 = torch.split(x, 4, dim=1)
            return torch.cat([torch.relu(self.a(x1)), torch.relu(self.b(x2))], dim=1)

    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0),
        nn.MaxPool2d(3, 2), Towers(),
    ).eval()  # fmt: skip
    path = tmp_path / "towers.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, 31, 31), path, dynamo=False)
    records = [r for r in onnx_reader.read_onnx(str(path)).records if r.kind not in ("activation",)]
    assert [r.kind for r in records] == ["conv", "norm", "pool", "conv"]
    lrn = records[1].lrn
    # torch's alpha multiplies the mean of the n squares: alpha / n on their sum.
    assert lrn["n"] == 5 and lrn["k"] == 2.0 and lrn["beta"] == 0.75
    assert abs(lrn["alpha"] - 1e-4 / 5) < 1e-12
    towers = records[3]
    assert (towers.filters, towers.groups, towers.in_channels) == (12, 2, 8)
    assert towers.params == 2 * (5 * 5 * 4 * 6 + 6)
    assert towers.output_shape == (7, 7, 12)


@keras.saving.register_keras_serializable("readers_test")
class Mystery(keras.layers.Layer):
    def call(self, x):
        return x


def test_a_layer_it_does_not_know_is_said_as_such(tmp_path):
    model = keras.Sequential(
        [keras.Input((227, 227, 3)), L.ZeroPadding2D(2), L.Conv2D(96, 11, strides=4), Mystery()]
    )
    network = readers.read_keras(model, "small")
    conv = network.records[0]
    assert conv.padding == (2, 2, 2, 2) and conv.input_shape == (231, 231, 3)
    comparison = matching.compare(network, net.reference())
    unknown = [f for f in comparison.findings if f.feature == "unknown"]
    assert [f.status for f in unknown] == [matching.UNKNOWN]
    assert "Mystery" in unknown[0].model and "Mystery" in network.cannot_tell[0]
    # The missing layers are missing; nothing is a FAIL or a guess.
    statuses = {f.feature: f.status for f in comparison.findings}
    assert statuses["conv2"] == statuses["fc6"] == matching.MISSING
    assert (
        "padding 2 instead of 0"
        in next(f for f in comparison.findings if f.feature == "conv1").differences
    )


def test_a_lambda_layer_is_loaded_only_when_trusted(tmp_path):
    model = keras.Sequential([keras.Input((8, 8, 3)), L.Lambda(lambda x: x * 2.0)])
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ValueError, match="--trust_model"):
        readers.read_file(str(path))
    records = readers.read_file(str(path), trust=True).records
    assert [r.kind for r in records] == ["unknown"]


def test_a_kerashub_preset_folder_is_read_through_what_hub_registered(tmp_path, monkeypatch):
    """paper/ imports nothing of hub/, which stands above it: `import keras_alexnet` has
    hub register its preset folders with models/loading.py, where the readers find them."""
    folder = tmp_path / "preset"
    folder.mkdir()
    for name in ("config.json", "task.json"):  # what makes a folder a preset, for KerasHub
        (folder / name).write_text("{}")
    assert loading.folder_loader(str(folder)) is hub.load_preset
    assert readers.is_keras_file(str(folder)) and not readers.is_keras_file(str(tmp_path))
    monkeypatch.setattr(hub, "available", lambda: False)  # as without the keras_hub extra
    with pytest.raises(errors.InputError) as error:
        readers.load_keras(str(folder))
    assert str(error.value) == f"{folder} is a KerasHub preset: reading it needs {hub.EXTRA}."


def test_an_unknown_file_is_named(tmp_path):
    path = tmp_path / "model.caffemodel"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="model.caffemodel"):
        readers.read_file(str(path))
    with pytest.raises(errors.InputError, match="missing.onnx: the model file does not exist"):
        readers.read_file(str(tmp_path / "missing.onnx"))


# ------------------------------------------------------------------------------------------
# Broken and hostile files: one line naming the file and its fault (errors.InputError).
# ------------------------------------------------------------------------------------------


def _refused(path, *words):
    """Reading `path` raises InputError: one line, naming the file and holding `words`."""
    with pytest.raises(errors.InputError) as raised:
        readers.read_file(str(path))
    message = str(raised.value)
    assert "\n" not in message and str(path) in message, message
    for word in words:
        assert word in message, message
    return message


class _RunsCode:
    """An object whose pickle calls a function when loaded (a harmless one here)."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_broken_and_pickled_state_dicts_are_named(tmp_path):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (an optional extra)")
    whole = tmp_path / "whole.pth"
    torch.save({"features.0.weight": torch.zeros(4, 3, 3, 3)}, whole)
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "cut.pth").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    (tmp_path / "random.pth").write_bytes(np.random.default_rng(0).bytes(4096))
    torch.save({"weight": torch.zeros(2), "payload": _RunsCode()}, tmp_path / "code.pth")
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    _refused(tmp_path / "empty.pth", "it is empty")
    _refused(tmp_path / "cut.pth", "cut short")
    _refused(tmp_path / "random.pth", "cut short or another kind of file")
    _refused(tmp_path / "code.pth", "getcwd", "weights_only=True")
    _refused(tmp_path / "list.pth", "holds no PyTorch state dict", "list")
    # The public API's promise: a ValueError (InputError is one), not EOFError.
    from keras_alexnet.weights import applications

    with pytest.raises(ValueError, match="empty.pth is not a PyTorch file: it is empty"):
        applications.AlexNet(weights=str(tmp_path / "empty.pth"))


def _varint(n):
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _nested_onnx(depth):
    """A ModelProto whose graph nests a node's graph attribute `depth` times (wire format)."""
    inner = b""
    for _ in range(depth):
        attribute = b"\x32" + _varint(len(inner)) + inner  # AttributeProto.g
        node = b"\x2a" + _varint(len(attribute)) + attribute  # NodeProto.attribute
        inner = b"\x0a" + _varint(len(node)) + node  # GraphProto.node
    return b"\x08\x08\x3a" + _varint(len(inner)) + inner  # ir_version, ModelProto.graph


def test_broken_and_escaping_onnx_files_are_named(tmp_path):
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (an optional extra)")
    helper, proto = onnx.helper, onnx.TensorProto
    x = helper.make_tensor_value_info("x", proto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", proto.FLOAT, [4])
    relu = helper.make_model(
        helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    )
    whole = relu.SerializeToString()
    weight = helper.make_tensor("w", proto.FLOAT, [4], [0.0] * 4)
    weight.ClearField("float_data")
    weight.data_location = proto.EXTERNAL
    weight.external_data.add(key="location", value="../../outside.bin")
    add = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], [weight])
    files = {
        "empty.onnx": b"",
        "cut.onnx": whole[: len(whole) // 2],
        "random.onnx": np.random.default_rng(1).bytes(4096),
        "nested.onnx": _nested_onnx(3000),
        "outside.onnx": helper.make_model(add).SerializeToString(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    _refused(tmp_path / "empty.onnx", "holds no ONNX graph", "0 bytes")
    _refused(tmp_path / "cut.onnx", "not an ONNX file that loads")
    _refused(tmp_path / "random.onnx", "not an ONNX file that loads")
    _refused(tmp_path / "nested.onnx", "nested too deeply")
    _refused(tmp_path / "outside.onnx", "external data lies outside its folder")


def _keras_with_config(path, source, config_text):
    """A copy of the .keras file `source` whose config.json is `config_text`."""
    with zipfile.ZipFile(source) as z:
        files = {n: z.read(n) for n in z.namelist()}
    files["config.json"] = config_text
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def test_broken_and_unsafe_keras_files_are_named(tmp_path):
    good = tmp_path / "good.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")]).save(good)
    config = json.loads(zipfile.ZipFile(good).read("config.json"))
    config["config"]["layers"][-1].update(class_name="NoSuchLayer", module="nowhere")
    _keras_with_config(tmp_path / "unknown.keras", good, json.dumps(config))
    depth = 50_000
    nested = '{"class_name": "Sequential", "config": {"layers": [' * depth + "{}" + "]}}" * depth
    _keras_with_config(tmp_path / "nested.keras", good, nested)
    (tmp_path / "empty.keras").write_bytes(b"")
    (tmp_path / "cut.keras").write_bytes(good.read_bytes()[:200])
    lambda_model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda t: t * 2)])
    lambda_model.save(tmp_path / "lambda.keras")
    for name in ("empty.keras", "cut.keras"):
        message = _refused(tmp_path / name, "not a .keras file: not a zip archive")
        assert "not found" not in message
    _refused(tmp_path / "unknown.keras", "'NoSuchLayer'", "neither Keras'")
    _refused(tmp_path / "nested.keras", "nested too deeply")
    _refused(tmp_path / "lambda.keras", "a Lambda layer", "--trust_model")
    assert readers.read_file(str(tmp_path / "lambda.keras"), trust=True).params == 0


def test_a_saved_model_layer_is_named_as_such_not_as_a_lambda(tmp_path):
    import tensorflow as tf

    class Doubler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def serve(self, x):
            return {"y": x * 2}

    module = Doubler()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": module.serve})
    inputs = keras.Input((4,))
    outputs = keras.layers.TFSMLayer(str(tmp_path / "sm"), call_endpoint="serving_default")(inputs)
    keras.Model(inputs, outputs).save(tmp_path / "tfsm.keras")
    message = _refused(tmp_path / "tfsm.keras", "a TFSMLayer", "external SavedModel")
    assert "Lambda" not in message


def test_a_model_that_is_not_alexnet_shaped_is_reported_so(tmp_path):
    from keras_alexnet.paper import verification

    path = tmp_path / "mlp.keras"
    keras.Sequential([keras.Input((8,)), keras.layers.Dense(4), keras.layers.Dense(2)]).save(path)
    result = verification.verify(str(path), "paper", 1000, 227, "text")
    assert result.status == 1  # read, and departs: not 2, which is for a file it cannot read
    assert result.summary.endswith("not AlexNet-shaped, it has none of conv1 ... conv5")
    assert "input 8 (not an image" in result.text


def test_models_of_open_sizes_other_convolutions_or_no_layers_get_a_report_or_one_line(tmp_path):
    from keras_alexnet.paper import verification

    L = keras.layers
    reported = {
        "open.keras": [keras.Input((None, None, 3)), L.Conv2D(4, 3), L.GlobalAveragePooling2D()],
        "conv1d.keras": [keras.Input((100, 3)), L.Conv1D(4, 3), L.Flatten(), L.Dense(2)],
    }
    for name, layers in reported.items():
        keras.Sequential(layers).save(tmp_path / name)
        for fmt in ("text", "json", "html"):
            assert verification.verify(str(tmp_path / name), "paper", 1000, 227, fmt).status == 1
    keras.Sequential([keras.Input((4,))]).save(tmp_path / "nothing.keras")
    with pytest.raises(errors.InputError, match="nothing.keras: its layers cannot be read"):
        verification.verify(str(tmp_path / "nothing.keras"), "paper", 1000, 227, "text")
