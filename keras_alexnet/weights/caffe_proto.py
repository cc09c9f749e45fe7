"""Caffe's .caffemodel, decoded from the protobuf wire format by hand (no caffe_pb2 needed).

`read_net` returns each layer's blobs in Caffe's layouts, (out, in, h, w) kernels and
(out, in) dense weights, however the file stores them; `weight_files.read_caffemodel` adds the
conventions they follow (BGR input, mean pixel, channel-first pool5).

Field numbers from caffe/src/caffe/proto/caffe.proto:

    NetParameter:      layer = 100 (LayerParameter), layers = 2 (V1LayerParameter)
    LayerParameter:    name = 1, type = 2 (string), blobs = 7, inner_product_param = 117
    InnerProductParameter: transpose = 6 (weights stored (in, out) instead of (out, in))
    V1LayerParameter:  layer = 1 (V0LayerParameter), name = 4, type = 5 (enum), blobs = 6
    V0LayerParameter:  name = 1, type = 2 (string), blobs = 50
    BlobProto:         num = 1, channels = 2, height = 3, width = 4 (legacy 4-D shape),
                       data = 5 (float), double_data = 8, shape = 7 (BlobShape)
    BlobShape:         dim = 1 (packed int64)
"""

import os

import numpy as np

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5

# V1LayerParameter.LayerType values the converter cares about.
_V1_TYPES = {4: "Convolution", 14: "InnerProduct", 15: "LRN", 17: "Pooling"}
# V0's type strings.
_V0_TYPES = {"conv": "Convolution", "innerproduct": "InnerProduct", "lrn": "LRN", "pool": "Pooling"}


class _Truncated(ValueError):
    pass


def _varint(buf, pos, end):
    result = shift = 0
    while True:
        if pos >= end:
            raise _Truncated("a varint runs past the end of its message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("a varint is longer than 10 bytes")


def _next_field(buf, pos, end):
    """Decodes one field at pos: (field number, wire type, a, b, next position).

    For varints a is the value; for the other wire types [a, b) is the value's bytes.
    """
    key, pos = _varint(buf, pos, end)
    field, wire = key >> 3, key & 7
    if wire == _VARINT:
        value, pos = _varint(buf, pos, end)
        return field, wire, value, None, pos
    if wire == _LENGTH:
        length, pos = _varint(buf, pos, end)
        start, pos = pos, pos + length
    elif wire == _FIXED64:
        start, pos = pos, pos + 8
    elif wire == _FIXED32:
        start, pos = pos, pos + 4
    else:
        raise ValueError(f"unsupported protobuf wire type {wire} (field {field})")
    if pos > end:
        raise _Truncated(f"field {field} runs past the end of its message")
    return field, wire, start, pos, pos


def _unpacked_run(buf, pos, end, width, dtype):
    """Reads a run of non-packed fixed-width values whose first tag byte is at pos.

    A non-packed repeated float is one (tag, 4 bytes) record per value; reading 60 million
    of them one by one in Python would take minutes, so the run is sliced with NumPy.
    """
    tag, record = buf[pos], 1 + width
    count = (end - pos) // record
    records = np.frombuffer(buf, np.uint8, count=count * record, offset=pos).reshape(count, record)
    breaks = np.flatnonzero(records[:, 0] != tag)
    count = int(breaks[0]) if breaks.size else count
    values = np.ascontiguousarray(records[:count, 1:]).view(dtype).reshape(count)
    return values, pos + count * record


def _packed_varints(buf, start, end):
    values, pos = [], start
    while pos < end:
        value, pos = _varint(buf, pos, end)
        values.append(value)
    return values


def _read_blob(buf, start, end):
    """A BlobProto as (data as a flat float array, shape or None)."""
    data, doubles, shape, legacy = [], [], None, {}
    pos = start
    while pos < end:
        field, wire, a, b, next_pos = _next_field(buf, pos, end)
        if field == 5 and wire == _LENGTH:
            if (b - a) % 4:
                raise ValueError("packed float data whose length is not a multiple of 4")
            data.append(np.frombuffer(buf, "<f4", count=(b - a) // 4, offset=a))
        elif field == 5 and wire == _FIXED32:
            values, next_pos = _unpacked_run(buf, pos, end, 4, "<f4")
            data.append(values)
        elif field == 8 and wire == _LENGTH:
            if (b - a) % 8:
                raise ValueError("packed double data whose length is not a multiple of 8")
            doubles.append(np.frombuffer(buf, "<f8", count=(b - a) // 8, offset=a))
        elif field == 8 and wire == _FIXED64:
            values, next_pos = _unpacked_run(buf, pos, end, 8, "<f8")
            doubles.append(values)
        elif field == 7 and wire == _LENGTH:
            shape = []
            sub = a
            while sub < b:
                dim_field, dim_wire, da, db, sub = _next_field(buf, sub, b)
                if dim_field == 1 and dim_wire == _LENGTH:
                    shape += _packed_varints(buf, da, db)
                elif dim_field == 1 and dim_wire == _VARINT:
                    shape.append(da)
        elif field in (1, 2, 3, 4) and wire == _VARINT:
            legacy[field] = a
        pos = next_pos
    if data:
        values = data[0] if len(data) == 1 else np.concatenate(data)
    elif doubles:
        values = np.concatenate(doubles).astype(np.float32)
    else:
        values = np.zeros((0,), np.float32)
    if shape is None and legacy:
        # Absent legacy dimensions default to 0 in caffe.proto, as Caffe reads them.
        shape = [legacy.get(i, 0) for i in (1, 2, 3, 4)]
    return values, shape


def _read_layer(buf, start, end, name_field, type_field, blobs_field):
    """A layer message as (name, type, [blob ranges], nested V0 layer range, transposed)."""
    name, kind, blobs, nested, transposed = None, None, [], None, False
    pos = start
    while pos < end:
        field, wire, a, b, pos = _next_field(buf, pos, end)
        if name_field == 1 and field == 117 and wire == _LENGTH:
            sub = a
            while sub < b:
                param, param_wire, value, _, sub = _next_field(buf, sub, b)
                if param == 6 and param_wire == _VARINT:
                    transposed = bool(value)
        if field == name_field and wire == _LENGTH:
            name = bytes(buf[a:b]).decode("utf-8", "replace")
        elif field == type_field and wire == _LENGTH:
            kind = bytes(buf[a:b]).decode("utf-8", "replace")
        elif field == type_field and wire == _VARINT:
            kind = _V1_TYPES.get(a, f"V1 type {a}")
        elif field == blobs_field and wire == _LENGTH:
            blobs.append((a, b))
        elif name_field == 4 and field == 1 and wire == _LENGTH:
            nested = (a, b)
    return name, kind, blobs, nested, transposed


def _blob_arrays(buf, name, kind, blob_ranges, transposed=False):
    arrays = []
    for index, (a, b) in enumerate(blob_ranges):
        values, shape = _read_blob(buf, a, b)
        if shape is not None:
            if int(np.prod(shape)) != values.size:
                raise ValueError(
                    f"layer {name!r} blob {index} has shape {tuple(shape)} but {values.size} values"
                )
            values = values.reshape(shape)
        arrays.append(values)
    if len(arrays) >= 2:
        weights, bias = arrays[0], arrays[1].reshape(-1)
        if kind == "InnerProduct" and weights.ndim > 2:
            # Legacy (V1) blobs are 4-D: an InnerProduct's (out, in) is stored as
            # (1, 1, out, in).
            weights = weights.reshape(weights.shape[-2:])
        if kind == "InnerProduct" and transposed:
            # inner_product_param { transpose: true } stores (in, out): a square fc7
            # would hide it from every shape check.
            weights = weights.T
        return weights, bias
    return tuple(arrays)


def read_net(path):
    """Reads a Caffe `NetParameter` (a .caffemodel) by decoding its protobuf wire format.

    Both layouts of the wild are read: the current one (`layer`, LayerParameter, blob shapes
    in BlobShape) and the legacy V1 one (`layers`, V1LayerParameter, blob shapes as num,
    channels, height, width), which is how bvlc_alexnet.caffemodel and
    bvlc_reference_caffenet.caffemodel are stored, as well as V0 layers nested in V1 ones.
    Packed float data is viewed with `np.frombuffer`, without copying.

    Args:
        path: the .caffemodel file.

    Returns:
        (arrays, kinds): arrays maps the name of each layer with weights to its blobs, a
        (weights, bias) pair in Caffe's layouts when there are two (InnerProduct weights
        (out, in), whatever their storage), else a tuple of the blobs; kinds lists every
        layer's type ("Convolution", "LRN", "Pooling", ...) in the file's order.

    Raises:
        ValueError: if the file is not a well-formed NetParameter, mixes the `layer` and
            `layers` layouts (Caffe refuses these too) or names a layer twice.
    """
    with open(path, "rb") as f:
        buf = bytearray(os.fstat(f.fileno()).st_size)
        f.readinto(buf)
    found, kinds, layouts = {}, [], set()
    pos, end = 0, len(buf)
    try:
        while pos < end:
            field, wire, a, b, pos = _next_field(buf, pos, end)
            if wire != _LENGTH or field not in (100, 2):
                continue
            if field == 100:
                layouts.add("layer")
                name, kind, blobs, _, transposed = _read_layer(buf, a, b, 1, 2, 7)
            else:
                layouts.add("layers")
                name, kind, blobs, nested, transposed = _read_layer(buf, a, b, 4, 5, 6)
                if nested is not None:
                    v0_name, v0_kind, v0_blobs, *_ = _read_layer(buf, *nested, 1, 2, 50)
                    name = name or v0_name
                    kind = kind or _V0_TYPES.get(v0_kind, v0_kind)
                    blobs = blobs or v0_blobs
            kinds.append(kind)
            if blobs:
                if name in found:
                    raise ValueError(f"layer {name!r} appears twice with weights")
                found[name] = _blob_arrays(buf, name, kind, blobs, transposed)
    except _Truncated as error:
        raise ValueError(f"{path} is truncated or not a Caffe NetParameter: {error}") from None
    except ValueError as error:
        raise ValueError(f"{path} is not a readable Caffe NetParameter: {error}") from None
    if len(layouts) > 1:
        raise ValueError(
            f"{path} mixes the current 'layer' (field 100) and legacy 'layers' (field 2) "
            "layouts, which Caffe itself refuses to load."
        )
    return found, kinds
