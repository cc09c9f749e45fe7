"""The readers on AlexNets written the ways they are in the wild, at small sizes."""

import keras
import pytest

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


def test_an_unknown_file_is_named(tmp_path):
    path = tmp_path / "model.caffemodel"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="model.caffemodel"):
        readers.read_file(str(path))
    with pytest.raises(OSError, match="missing.onnx"):
        readers.read_file(str(tmp_path / "missing.onnx"))
