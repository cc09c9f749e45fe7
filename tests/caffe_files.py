"""Caffe .caffemodel files written by hand for the tests: the protobuf wire format, the
layer layouts and random weights of the shapes a reader meets."""

import struct

import numpy as np


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


# bvlc_alexnet's blob shapes in Caffe's layout: (out, in / groups, h, w) and (out, in).
BVLC_ALEXNET_SHAPES = {
    "conv1": (96, 3, 11, 11),
    "conv2": (256, 48, 5, 5),
    "conv3": (384, 256, 3, 3),
    "conv4": (384, 192, 3, 3),
    "conv5": (256, 192, 3, 3),
    "fc6": (4096, 256 * 6 * 6),
    "fc7": (4096, 4096),
    "fc8": (1000, 4096),
}


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
