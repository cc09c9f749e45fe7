"""The weight-file readers: each format's arrays as its file holds them, and its conventions.

Unsafe files (pickles without allow_pickle) and foreign ones are refused.

The Caffe files are real protobuf bytes written with caffe.proto's field numbers (by
caffe_proto_test's encoder); caffe_proto_test checks the decoding of every Caffe layout.
"""

import logging
import pickle
import sys

import numpy as np
import pytest
from caffe_files import SMALL_SHAPES
from caffe_files import pb_layer
from caffe_files import random_weights

from keras_alexnet import errors
from keras_alexnet.weights import conversion as convert
from keras_alexnet.weights import weight_files


def test_caffemodel_reader_notes_caffenets_pool_before_lrn(tmp_path):
    weights = random_weights(SMALL_SHAPES, seed=3)
    path = tmp_path / "caffenet.caffemodel"
    with open(path, "wb") as f:
        for name, kind in [("conv1", "Convolution"), ("pool1", "Pooling"), ("norm1", "LRN")]:
            f.write(pb_layer(name, kind, weights.get(name, ()), "layers"))
        for name in list(SMALL_SHAPES)[1:]:
            kind = "InnerProduct" if name.startswith("fc") else "Convolution"
            f.write(pb_layer(name, kind, weights[name], "layers"))
    assert "CaffeNet" in weight_files.read_caffemodel(path).notes[0]


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
        weight_files.read_npy_dict(path)
    with pytest.raises(ValueError, match="allow_pickle"):
        convert.convert(path, tmp_path / "out.keras")
    assert not (tmp_path / "out.keras").exists()


@pytest.mark.parametrize("as_dicts", [False, True], ids=["lists", "dicts"])
def test_npy_read_with_allow_pickle_warns_and_keeps_its_layout(tmp_path, caplog, as_dicts):
    weights = random_weights(SMALL_SHAPES, seed=5)
    path = tmp_path / "bvlc_alexnet.npy"
    small_npy(path, weights, as_dicts)
    with caplog.at_level(logging.WARNING):
        pretrained = weight_files.read_npy_dict(path, allow_pickle=True)
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
    # Its header says plain numbers: refused before anything is unpickled, with or without
    # allow_pickle.
    for allow_pickle in (False, True):
        with pytest.raises(
            errors.InputError, match="plain float64 array of shape .3,., not a dict"
        ):
            weight_files.read_npy_dict(path, allow_pickle=allow_pickle)
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([1, "a"], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="does not hold a dict"):
        weight_files.read_npy_dict(objects, allow_pickle=True)
    with pytest.raises(errors.InputError, match="is a pickled .npy dict"):
        weight_files.read_npy_dict(objects)


def test_npy_that_is_empty_cut_short_or_a_folder_is_named(tmp_path):
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    whole = tmp_path / "whole.npy"
    np.save(whole, {"conv1": [np.zeros(2), np.zeros(2)]}, allow_pickle=True)
    cut = tmp_path / "cut.npy"
    cut.write_bytes(whole.read_bytes()[:20])
    folder = tmp_path / "folder.npy"
    folder.mkdir()
    for path, fault in ((empty, "0 bytes"), (cut, "20 bytes"), (folder, "is a folder")):
        with pytest.raises(errors.InputError, match=fault) as raised:
            weight_files.read_npy_dict(path)
        assert str(path) in str(raised.value) and "\n" not in str(raised.value)
    pickled = tmp_path / "pickle_cut.npy"
    pickled.write_bytes(whole.read_bytes()[:-10])
    with pytest.raises(errors.InputError, match="its pickle does not load"):
        weight_files.read_npy_dict(pickled, allow_pickle=True)


# ------------------------------------------------------------------------------------------
# torchvision: refused without PyTorch, and when the file is not its AlexNet.
# ------------------------------------------------------------------------------------------


def test_missing_torch_asks_for_the_extra(tmp_path, monkeypatch):
    src = tmp_path / "alexnet.pth"
    src.write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install keras-alexnet\[torch\]"):
        weight_files.read_torch_state_dict(src)
    with pytest.raises(ImportError, match=r"keras-alexnet\[torch\]"):
        convert.convert(src, tmp_path / "out.keras")


def test_torch_file_that_is_not_a_state_dict_is_refused(tmp_path):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (an optional extra)")
    src = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(2, 3, 11, 11)}, src)
    with pytest.raises(ValueError, match=r"not torchvision's AlexNet.*features\.3"):
        weight_files.read_torch_state_dict(src)
    pickled = tmp_path / "pickled.pth"
    with open(pickled, "wb") as f:
        pickle.dump(object(), f, protocol=2)
    with pytest.raises(ValueError, match="weights_only=True"):
        weight_files.read_torch_state_dict(pickled)


# ------------------------------------------------------------------------------------------
# Formats and conventions.
# ------------------------------------------------------------------------------------------


def test_format_detection():
    assert weight_files.detect_format("a/bvlc_alexnet.caffemodel") == "caffemodel"
    assert weight_files.detect_format("bvlc_alexnet.NPY") == "npy"
    assert weight_files.detect_format("alexnet-owt-7be5be79.pth") == "torch"
    assert weight_files.detect_format("alexnet.pt") == "torch"
    with pytest.raises(ValueError, match=r"extension '\.h5'.*src='x\.h5'"):
        weight_files.detect_format("x.h5")
    with pytest.raises(ValueError, match="fmt must be one of"):
        weight_files.read_weights("x.caffemodel", fmt="onnx")


def test_torchvision_preprocessing_constants():
    scale, offset = weight_files._torchvision_preprocessing()
    pixels = np.array([0.0, 127.5, 255.0])
    mean, std = weight_files.TORCHVISION_MEAN_RGB, weight_files.TORCHVISION_STD_RGB
    for c in range(3):
        expected = (pixels / 255 - mean[c]) / std[c]
        np.testing.assert_allclose(pixels * scale[c] + offset[c], expected, rtol=1e-12)
