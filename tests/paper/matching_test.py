"""Real-world AlexNets read by order and kind: each departure named, and nothing else.

The findings below are written as the paper and a careful reader state them; the
parameter and multiply-add counts are computed here from the layer shapes with NumPy.
"""

import keras
import numpy as np
import pytest
from conformance_test import reordered

import keras_alexnet
from keras_alexnet.paper import matching
from keras_alexnet.paper import network as net
from keras_alexnet.paper import readers

L = keras.layers
NO_GROUPS = ("no groups (1 instead of 2)",)
BN_FOR_LRN = ("BatchNormalization instead of LRN",)


def departures(comparison):
    """{feature: (status, differences)} of every finding that is not as the paper."""
    return {
        f.feature: (f.status, f.differences)
        for f in comparison.findings
        if f.status != matching.SAME
    }


def tutorial(size=227, padding="valid", units=4096):
    """The Keras AlexNet of the tutorials: BatchNormalization where LRN is, no groups."""
    pad = dict(padding=padding)
    return keras.Sequential(
        [
            keras.Input((size, size, 3)),
            L.Conv2D(96, 11, strides=4, activation="relu", **pad),
            L.BatchNormalization(),
            L.MaxPooling2D(3, 2, **pad),
            L.Conv2D(256, 5, padding="same", activation="relu"),
            L.BatchNormalization(),
            L.MaxPooling2D(3, 2, **pad),
            L.Conv2D(384, 3, padding="same", activation="relu"),
            L.Conv2D(384, 3, padding="same", activation="relu"),
            L.Conv2D(256, 3, padding="same", activation="relu"),
            L.MaxPooling2D(3, 2, **pad),
            L.Flatten(),
            L.Dense(units, activation="relu"),
            L.Dropout(0.5),
            L.Dense(units, activation="relu"),
            L.Dropout(0.5),
            L.Dense(1000, activation="softmax"),
        ]
    )


def numpy_counts(model):
    """(parameters, multiply-adds) from the weights' shapes and the outputs' sizes."""
    params = sum(int(np.prod(w.shape)) for w in model.weights)
    macs = 0
    for layer in model.layers:
        if isinstance(layer, (L.Conv2D, L.Dense)):
            kernel = np.array(layer.kernel.shape)
            macs += int(np.prod(kernel[:-1])) * int(np.prod(layer.output.shape[1:]))
    return params, macs


PAPER_MACS = (55 * 55 * 96 * 363 + 27 * 27 * 256 * 1200 + 13 * 13 * 384 * 2304
              + 13 * 13 * 384 * 1728 + 13 * 13 * 256 * 1728
              + 9216 * 4096 + 4096 * 4096 + 4096 * 1000)  # fmt: skip


def test_the_tutorial_keras_alexnet():
    model = tutorial()
    comparison = matching.compare(readers.read_keras(model), net.reference())
    assert departures(comparison) == {
        "lrn1": (matching.REPLACED, BN_FOR_LRN),
        "conv2": (matching.OTHER, NO_GROUPS),
        "lrn2": (matching.REPLACED, BN_FOR_LRN),
        "conv4": (matching.OTHER, NO_GROUPS),
        "conv5": (matching.OTHER, NO_GROUPS),
    }
    params, macs = numpy_counts(model)
    assert (params, round(macs / 1e6), round(PAPER_MACS / 1e6)) == (62_379_752, 1135, 724)
    assert comparison.totals["params"] == params
    assert comparison.totals["multiply_adds"] == macs
    effects = {f.feature: f.effects for f in comparison.departures}
    # Two towers halve the kernel's depth: 5x5x96 instead of 5x5x48, 256 of them.
    assert effects["conv2"][0] == f"+{5 * 5 * 48 * 256:,} parameters"
    assert effects["lrn1"] == (f"+{4 * 96:,} parameters",)  # gamma, beta, mean, variance
    assert matching.closest_variant(readers.read_keras(model))[0] == "paper"


def test_a_keras_alexnet_with_same_padding_everywhere_and_224_input():
    model = tutorial(224, "same")
    found = departures(matching.compare(readers.read_keras(model), net.reference()))
    # 224 with "same" and stride 4: ceil(224/4) = 56 maps, 7 zeros, 3 before and 4 after.
    same_pool = (matching.OTHER, ("padding 0/1 instead of 0",))
    assert found == {
        "conv1": (matching.OTHER, ("padding 3/4 instead of 0",)),
        "lrn1": (matching.REPLACED, BN_FOR_LRN),
        "pool1": same_pool,
        "conv2": (matching.OTHER, NO_GROUPS),
        "lrn2": (matching.REPLACED, BN_FOR_LRN),
        "pool2": same_pool,
        "conv4": (matching.OTHER, NO_GROUPS),
        "conv5": (matching.OTHER, NO_GROUPS),
        "pool5": same_pool,
    }
    fc6 = next(
        f
        for f in matching.compare(readers.read_keras(model), net.reference()).findings
        if f.feature == "fc6"
    )
    assert f"reads {7 * 7 * 256:,} features instead of 9,216" in fc6.effects


def torchvision_alexnet(torch):
    """torchvision's AlexNet, from its published layer list (models/alexnet.py)."""
    nn = torch.nn
    features = nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
    )  # fmt: skip
    classifier = nn.Sequential(
        nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
        nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, 1000),
    )  # fmt: skip
    model = nn.Sequential()
    model.add_module("features", features)
    model.add_module("avgpool", nn.AdaptiveAvgPool2d((6, 6)))
    model.add_module("flatten", nn.Flatten())
    model.add_module("classifier", classifier)
    return model.eval()


TORCHVISION = {
    "conv1": (matching.OTHER, ("filters 64 instead of 96", "padding 2 instead of 0")),
    "lrn1": (matching.MISSING, ()),
    "conv2": (matching.OTHER, ("filters 192 instead of 256", *NO_GROUPS)),
    "lrn2": (matching.MISSING, ()),
    "conv4": (matching.OTHER, ("filters 256 instead of 384", *NO_GROUPS)),
    "conv5": (matching.OTHER, NO_GROUPS),
}


@pytest.fixture(scope="module")
def torchvision_files(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    folder = tmp_path_factory.mktemp("torchvision")
    model = torchvision_alexnet(torch)
    torch.save(model.state_dict(), folder / "alexnet.pth")
    torch.onnx.export(model, torch.zeros(1, 3, 224, 224), folder / "alexnet.onnx", dynamo=False)
    params = sum(p.numel() for p in model.parameters())
    return folder, params


def test_torchvision_alexnet_exported_to_onnx(torchvision_files):
    folder, params = torchvision_files
    network = readers.read_file(str(folder / "alexnet.onnx"))
    comparison = matching.compare(network, net.reference())
    # The adaptive 6x6 pool exports as a 1x1 average pool: the identity on pool5's 6x6.
    identity = "avg 1x1/1 pad 0 -> 6x6x256 between conv5 and fc6 (the identity at this size)"
    # Inference exports leave dropout out: the file cannot tell.
    assert departures(comparison) == {
        **TORCHVISION,
        "dropout6": (matching.UNKNOWN, ()),
        "dropout7": (matching.UNKNOWN, ()),
        "added": (matching.ADDED, (identity,)),
    }
    assert network.params == params == 61_100_840
    name, closest = matching.closest_variant(network)
    assert name == "one_weird_trick"
    assert [f.text for f in closest.departures] == [f"added: {identity}"]


def test_torchvision_alexnet_state_dict(torchvision_files):
    folder, params = torchvision_files
    network = readers.read_file(str(folder / "alexnet.pth"))
    comparison = matching.compare(network, net.reference())
    found = departures(comparison)
    assert {k: v for k, v in found.items() if v[0] != matching.UNKNOWN} == {
        "conv1": (matching.OTHER, ("filters 64 instead of 96",)),
        "conv2": TORCHVISION["conv2"],
        "conv4": TORCHVISION["conv4"],
        "conv5": TORCHVISION["conv5"],
    }
    # Strides, pools, LRN and dropout are not in a state dict: said, never a departure.
    unknown = {k for k, v in found.items() if v[0] == matching.UNKNOWN}
    assert unknown == {"input", "lrn1", "pool1", "lrn2", "pool2", "pool5", "dropout6", "dropout7"}
    conv1 = next(f for f in comparison.findings if f.feature == "conv1")
    assert conv1.cannot_tell == ("stride", "padding")
    assert network.params == params and comparison.totals["multiply_adds"] is None


CAFFE_LRN = ("k 1 instead of 2", "alpha 2e-05 instead of 0.0001 (alpha/n: 0.0001 divided by n)")


def test_caffe_bvlc_alexnet_and_caffenet():
    keras.utils.set_random_seed(0)
    model = keras_alexnet.AlexNet(variant="caffe")  # the layout the converter writes
    found = departures(matching.compare(readers.read_keras(model), net.reference()))
    assert found == {"lrn1": (matching.OTHER, CAFFE_LRN), "lrn2": (matching.OTHER, CAFFE_LRN)}
    caffenet = reordered(reordered(model, "lrn1", "pool1"), "lrn2", "pool2")
    found = departures(matching.compare(readers.read_keras(caffenet), net.reference()))
    assert found == {
        f"lrn{i}": (
            matching.OTHER,
            (*CAFFE_LRN, f"after pool{i} instead of before it (CaffeNet's order)"),
        )
        for i in (1, 2)
    }
    assert matching.closest_variant(readers.read_keras(model))[0] == "caffe"


def test_our_paper_model_matches_and_variants_differ_where_declared(paper_model):
    assert departures(matching.compare(readers.read_keras(paper_model), net.reference())) == {}
    owt = net.reference("one_weird_trick")
    found = departures(matching.compare(owt, net.reference()))
    assert found["dropout6"] == (matching.OTHER, ("before fc6 instead of after it",))
    assert set(found) == {
        "conv1",
        "lrn1",
        "conv2",
        "lrn2",
        "conv4",
        "conv5",
        "dropout6",
        "dropout7",
    }
