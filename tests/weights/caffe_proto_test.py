"""The .caffemodel decoder: real protobuf bytes, written here with caffe.proto's field numbers
by an encoder independent of the reader, decode to the arrays that were written.

The files are read with `weight_files.read_caffemodel`, the reader users call, which decodes
with `caffe_proto.read_net`. The encoder also writes the .caffemodel files of convert_test
and weight_files_test.
"""

import numpy as np
import pytest
from caffe_files import SMALL_SHAPES
from caffe_files import pb_blob
from caffe_files import pb_bytes
from caffe_files import pb_int
from caffe_files import pb_layer
from caffe_files import random_weights
from caffe_files import write_caffemodel

from keras_alexnet.weights import weight_files

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

    pretrained = weight_files.read_caffemodel(path)

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
    np.testing.assert_array_equal(weight_files.read_caffemodel(path).layers["fc7"][0], kernel)


def test_caffemodel_reader_refuses_broken_files(tmp_path):
    weights = random_weights(SMALL_SHAPES, seed=2)
    path = tmp_path / "small.caffemodel"
    write_caffemodel(path, weights)
    data = path.read_bytes()

    truncated = tmp_path / "truncated.caffemodel"
    truncated.write_bytes(data[: len(data) - 10])
    with pytest.raises(ValueError, match="truncated"):
        weight_files.read_caffemodel(truncated)

    mixed = tmp_path / "mixed.caffemodel"
    mixed.write_bytes(data + pb_layer("extra", "ReLU", layout="layers"))
    with pytest.raises(ValueError, match="mixes"):
        weight_files.read_caffemodel(mixed)

    renamed = tmp_path / "renamed.caffemodel"
    write_caffemodel(renamed, {k: v for k, v in weights.items() if k != "fc8"})
    with open(renamed, "ab") as f:  # a fine-tuned net with a new last layer
        f.write(pb_layer("fc8_new", "InnerProduct", weights["fc8"]))
    with pytest.raises(ValueError, match=r"no weights for \['fc8'\].*fc8_new"):
        weight_files.read_caffemodel(renamed)
