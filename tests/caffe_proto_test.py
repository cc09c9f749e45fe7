"""The .caffemodel decoder: real protobuf bytes, written here with caffe.proto's field numbers
by an encoder independent of the reader, decode to the arrays that were written.

The files are read with `weight_files.read_caffemodel`, the reader users call, which decodes
with `caffe_proto.read_net`. The encoder also writes the .caffemodel files of convert_test
and weight_files_test.
"""

import struct

import numpy as np
import pytest

from keras_alexnet import weight_files


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
