"""Pretrained AlexNet weights into this package's model: `python -m keras_alexnet.convert`.

    python -m keras_alexnet.convert bvlc_alexnet.caffemodel --output alexnet_caffe.keras
    python -m keras_alexnet.convert bvlc_alexnet.npy --allow_pickle --output alexnet_npy.keras
    python -m keras_alexnet.convert alexnet-owt-7be5be79.pth --output alexnet_torch.keras

Three sources are read, each into `PretrainedWeights`: the layer arrays exactly as the file
holds them, and the conventions they follow. Then each convention is undone:

| | Caffe .caffemodel | caffe-tensorflow .npy | torchvision .pth |
|---|---|---|---|
| network | bvlc_alexnet ("caffe") | bvlc_alexnet ("caffe") | "one_weird_trick" |
| conv kernels | (out, in, h, w) | (h, w, in, out) | (out, in, h, w) |
| dense kernels | (out, in) | (in, out) | (out, in) |
| fc6 input rows | (channel, row, column) | (row, column, channel) | (channel, row, column) |
| conv1 input | BGR | BGR | RGB |
| pixels | 0-255 minus mean pixel | 0-255 minus mean pixel | x/255, minus mean, over std |

Keras kernels are (h, w, in, out) and (in, out), and Keras flattens pool5 as (row, column,
channel). Grouped kernels need nothing beyond the transpose: Caffe's `group: 2` blob of
conv2, (256, 48, 5, 5), holds the filters of group g in rows g*128:(g+1)*128, each seeing
input channels g*48:(g+1)*48, which is `layers.GroupedConv2D`'s layout after the transpose.

The converted model takes raw RGB pixels in 0-255 (227x227 crops, no mean subtracted by the
caller): the normalisation the weights expect is put in the model's "input_rescaling" layer
(`AlexNet(input_scale=..., input_offset=...)`), from the constants below.
"""

import dataclasses
import os
import pickle
import sys

import numpy as np
from absl import app
from absl import flags
from absl import logging

from keras_alexnet import cli
from keras_alexnet import model as model_lib

# Caffe's ImageNet mean pixel in BGR order: the mean over rows and columns of
# caffe/python/caffe/imagenet/ilsvrc_2012_mean.npy, as used by Caffe's classification
# examples (`mu = mean.mean(1).mean(1)`). bvlc_alexnet was trained on the mean IMAGE;
# the per-channel mean is the standard stand-in for centre crops.
CAFFE_MEAN_BGR = (104.0069879317889, 116.66876761696767, 122.6789143406786)
CAFFE_SCALE = 1.0  # Caffe's bvlc_alexnet sees 0-255 pixels (transform_param has no scale).

# torchvision's ImageNet normalisation for its pretrained classifiers, applied to RGB
# pixels scaled to [0, 1]: transforms.Normalize(mean=TORCHVISION_MEAN_RGB,
# std=TORCHVISION_STD_RGB) (torchvision.models AlexNet_Weights.IMAGENET1K_V1 transforms).
TORCHVISION_MEAN_RGB = (0.485, 0.456, 0.406)
TORCHVISION_STD_RGB = (0.229, 0.224, 0.225)

FORMATS = ("caffemodel", "npy", "torch")
EXTENSIONS = {".caffemodel": "caffemodel", ".npy": "npy", ".pth": "torch", ".pt": "torch"}
LAYER_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")

# torchvision's AlexNet: features = [conv, relu, pool, conv, relu, pool, conv, relu, conv,
# relu, conv, relu, pool], classifier = [dropout, linear, relu, dropout, linear, relu, linear].
TORCHVISION_KEYS = {
    "conv1": "features.0",
    "conv2": "features.3",
    "conv3": "features.6",
    "conv4": "features.8",
    "conv5": "features.10",
    "fc6": "classifier.1",
    "fc7": "classifier.4",
    "fc8": "classifier.6",
}


@dataclasses.dataclass(frozen=True)
class PretrainedWeights:
    """Weights as a file holds them, and the conventions they follow.

    Attributes:
        layers: {layer name: (weights, bias)} for conv1 ... conv5 and fc6 ... fc8, as NumPy
            arrays in the source's own layout.
        format: "caffemodel", "npy" or "torch".
        variant: the `AlexNet` variant these weights belong to.
        kernel_layout: "oihw" (out, in, h, w) or "hwio" (h, w, in, out) conv kernels.
        dense_layout: "oi" (out, in) or "io" (in, out) dense kernels.
        fc6_rows: "chw" or "hwc": the order in which fc6's inputs flatten pool5.
        channel_order: "bgr" or "rgb": conv1's input channels.
        input_scale, input_offset: per RGB channel, the model computes
            pixel * input_scale + input_offset from 0-255 RGB pixels.
        notes: anything found while reading that the user should hear about.
    """

    layers: dict
    format: str
    variant: str
    kernel_layout: str
    dense_layout: str
    fc6_rows: str
    channel_order: str
    input_scale: tuple
    input_offset: tuple
    notes: tuple = ()

    @property
    def num_classes(self):
        """fc8's number of outputs, the length of its bias."""
        return int(np.size(self.layers["fc8"][1]))


def _caffe_preprocessing():
    return (CAFFE_SCALE,) * 3, tuple(-m for m in reversed(CAFFE_MEAN_BGR))


def _torchvision_preprocessing():
    # (x / 255 - mean) / std = x * (1 / (255 std)) - mean / std
    scale = tuple(1.0 / (255.0 * s) for s in TORCHVISION_STD_RGB)
    offset = tuple(-m / s for m, s in zip(TORCHVISION_MEAN_RGB, TORCHVISION_STD_RGB))
    return scale, offset


# ------------------------------------------------------------------------------------------
# Caffe: the protobuf wire format, decoded by hand (there is no compiled caffe_pb2).
# Field numbers from caffe/src/caffe/proto/caffe.proto:
#   NetParameter:      layer = 100 (LayerParameter), layers = 2 (V1LayerParameter)
#   LayerParameter:    name = 1, type = 2 (string), blobs = 7, inner_product_param = 117
#   InnerProductParameter: transpose = 6 (weights stored (in, out) instead of (out, in))
#   V1LayerParameter:  layer = 1 (V0LayerParameter), name = 4, type = 5 (enum), blobs = 6
#   V0LayerParameter:  name = 1, type = 2 (string), blobs = 50
#   BlobProto:         num = 1, channels = 2, height = 3, width = 4 (legacy 4-D shape),
#                      data = 5 (float), double_data = 8, shape = 7 (BlobShape)
#   BlobShape:         dim = 1 (packed int64)
# ------------------------------------------------------------------------------------------

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


def read_caffemodel(path):
    """Reads a Caffe `NetParameter` (a .caffemodel) by decoding its protobuf wire format.

    Both layouts of the wild are read: the current one (`layer`, LayerParameter, blob shapes
    in BlobShape) and the legacy V1 one (`layers`, V1LayerParameter, blob shapes as num,
    channels, height, width), which is how bvlc_alexnet.caffemodel and
    bvlc_reference_caffenet.caffemodel are stored, as well as V0 layers nested in V1 ones.
    Packed float data is viewed with `np.frombuffer`, without copying.

    Args:
        path: the .caffemodel file.

    Returns:
        A `PretrainedWeights` for variant "caffe": conv kernels (out, in, h, w), dense
        kernels (out, in), fc6 rows in (channel, row, column) order, conv1 seeing BGR.

    Raises:
        ValueError: if the file is not a well-formed NetParameter, mixes the `layer` and
            `layers` layouts (Caffe refuses these too), names a layer twice, or lacks one
            of conv1 ... conv5, fc6 ... fc8.
    """
    with open(path, "rb") as f:
        buf = bytearray(os.fstat(f.fileno()).st_size)
        f.readinto(buf)
    found, order, layouts = {}, [], set()
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
            order.append((name, kind))
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
    notes = []
    kinds = [kind for _, kind in order]
    if "LRN" in kinds and "Pooling" in kinds and kinds.index("Pooling") < kinds.index("LRN"):
        notes.append(
            "this net pools before its first LRN (CaffeNet's order, "
            "bvlc_reference_caffenet); the converted model normalises before pooling, "
            "as bvlc_alexnet and the paper do, so its outputs will differ slightly."
        )
    scale, offset = _caffe_preprocessing()
    return PretrainedWeights(
        layers=_select_layers(found, path),
        format="caffemodel",
        variant="caffe",
        kernel_layout="oihw",
        dense_layout="oi",
        fc6_rows="chw",
        channel_order="bgr",
        input_scale=scale,
        input_offset=offset,
        notes=tuple(notes),
    )


def _select_layers(found, path):
    missing = [name for name in LAYER_NAMES if name not in found]
    if missing:
        raise ValueError(
            f"{path} has no weights for {missing}; found layers with weights: {sorted(found)}"
        )
    layers = {}
    for name in LAYER_NAMES:
        arrays = found[name]
        if len(arrays) != 2:
            raise ValueError(
                f"layer {name!r} of {path} has {len(arrays)} weight arrays; expected 2 "
                "(weights and bias)"
            )
        layers[name] = (arrays[0], np.reshape(arrays[1], (-1,)))
    return layers


# ------------------------------------------------------------------------------------------
# The widely copied bvlc_alexnet.npy (www.cs.toronto.edu/~guerzhoy/tf_alexnet/, M. Guerzhoy
# and D. Frossard, 2016), made from the Caffe weights by ethereon/caffe-tensorflow.
# What its conventions are, and why:
# - A pickled dict {layer: [weights, biases]} (np.save of a dict, written by Python 2: read
#   with encoding="latin1"). Later caffe-tensorflow versions save {layer: {"weights": ...,
#   "biases": ...}}; both are read.
# - Conv kernels (h, w, in, out) and dense (in, out): caffe-tensorflow's DataReshaper
#   transposes (c_o, c_i, h, w) -> (h, w, c_i, c_o) and (c_o, c_i) -> (c_i, c_o)
#   (kaffe/transformers.py, `mapping`). Grouped kernels keep Caffe's group order.
# - fc6's rows are ALREADY in (row, column, channel) order: DataReshaper.reshape re-wires
#   "the FC layer connected to the spatial layer" by reshaping fc6 to (c_o, c, h, w),
#   transposing to (h, w, c, c_o) and flattening (kaffe/core.py). Accordingly
#   myalexnet_forward.py flattens the NHWC pool5 with a plain tf.reshape before fc6.
# - conv1 is BGR: the weights are Caffe's, untouched in their channel order, and
#   myalexnet_forward.py swaps its images' channels ("Read Image, and change to BGR").
#   Its mean subtraction (the image's own scalar mean) is a shortcut; the weights expect
#   Caffe's, so the same preprocessing as the .caffemodel is used.
# ------------------------------------------------------------------------------------------


def read_npy_dict(path, allow_pickle=False):
    """Reads a caffe-tensorflow .npy dict, such as the widely copied bvlc_alexnet.npy.

    Args:
        path: the .npy file, a pickled dict {layer: [weights, biases]} or
            {layer: {"weights": ..., "biases": ...}}.
        allow_pickle: the file is a Python pickle, and unpickling can run arbitrary code
            that the file's author put in it; pass True only for a file you trust.

    Returns:
        A `PretrainedWeights` for variant "caffe": conv kernels (h, w, in, out), dense
        kernels (in, out), fc6 rows already in (row, column, channel) order, conv1 seeing
        BGR.

    Raises:
        ValueError: without allow_pickle=True; or if the file is not such a dict or lacks
            one of conv1 ... conv5, fc6 ... fc8.
    """
    if not allow_pickle:
        raise ValueError(
            f"{path} is a pickled .npy dict: loading a pickle can execute arbitrary code "
            "embedded in the file. Pass allow_pickle=True (--allow_pickle) only for a file "
            f"from a source you trust. Received: allow_pickle={allow_pickle!r}"
        )
    logging.warning(
        "Unpickling %s (allow_pickle=True): a pickle can execute arbitrary code while it "
        "loads; use only files from sources you trust.",
        path,
    )
    loaded = np.load(path, allow_pickle=True, encoding="latin1")
    if isinstance(loaded, np.ndarray) and loaded.dtype == object and loaded.shape == ():
        loaded = loaded.item()
    if not isinstance(loaded, dict):
        raise ValueError(
            f"{path} does not hold a dict of layers (it holds a {type(loaded).__name__})"
        )
    found = {}
    for key, value in loaded.items():
        name = key.decode("latin1") if isinstance(key, bytes) else str(key)
        if isinstance(value, dict):
            value = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in value.items()}
            value = [value[k] for k in ("weights", "biases") if k in value]
        found[name] = tuple(np.asarray(v) for v in value)
    scale, offset = _caffe_preprocessing()
    return PretrainedWeights(
        layers=_select_layers(found, path),
        format="npy",
        variant="caffe",
        kernel_layout="hwio",
        dense_layout="io",
        fc6_rows="hwc",
        channel_order="bgr",
        input_scale=scale,
        input_offset=offset,
    )


def read_torch_state_dict(path):
    """Reads torchvision's AlexNet state dict, such as alexnet-owt-7be5be79.pth.

    Loaded with `torch.load(path, map_location="cpu", weights_only=True)`, which restores
    tensors and plain containers only and refuses to run code from the file.

    Args:
        path: a .pth/.pt file holding a state dict with torchvision's keys (features.0,
            .3, .6, .8, .10 and classifier.1, .4, .6, each .weight and .bias), possibly
            under "state_dict" and with DataParallel's "module." prefix.

    Returns:
        A `PretrainedWeights` for variant "one_weird_trick": conv kernels (out, in, h, w),
        dense kernels (out, in), fc6 rows in (channel, row, column) order, conv1 seeing RGB
        normalised with torchvision's ImageNet mean and std.

    Raises:
        ImportError: if PyTorch is not installed (`pip install keras-alexnet[torch]`).
        ValueError: if the file is not a state dict or lacks one of the keys.
    """
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            "Reading PyTorch checkpoints needs PyTorch, which keras_alexnet does not "
            "install by default: pip install keras-alexnet[torch]"
        ) from error
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as error:
        raise ValueError(
            f"{path} is not a PyTorch state dict that loads with weights_only=True "
            f"(save model.state_dict(), not the model): {error}"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (it holds a {type(state).__name__})")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    found = {}
    for name, prefix in TORCHVISION_KEYS.items():
        keys = (f"{prefix}.weight", f"{prefix}.bias")
        if all(key in state for key in keys):
            found[name] = tuple(state[key].detach().cpu().numpy() for key in keys)
    missing = [TORCHVISION_KEYS[n] for n in LAYER_NAMES if n not in found]
    if missing:
        raise ValueError(
            f"{path} is not torchvision's AlexNet: no weight and bias for {missing}. "
            f"Found keys: {sorted(state)[:20]}"
        )
    scale, offset = _torchvision_preprocessing()
    return PretrainedWeights(
        layers=found,
        format="torch",
        variant="one_weird_trick",
        kernel_layout="oihw",
        dense_layout="oi",
        fc6_rows="chw",
        channel_order="rgb",
        input_scale=scale,
        input_offset=offset,
    )


def detect_format(path):
    """The source format from the file's extension.

    Args:
        path: a .caffemodel, .npy, .pth or .pt file.

    Returns:
        "caffemodel", "npy" or "torch".

    Raises:
        ValueError: for any other extension.
    """
    extension = os.path.splitext(os.fspath(path))[1].lower()
    if extension not in EXTENSIONS:
        raise ValueError(
            f"cannot tell the format from the extension {extension!r}; expected one of "
            f"{sorted(EXTENSIONS)} or an explicit format in {FORMATS}. Received: src={path!r}"
        )
    return EXTENSIONS[extension]


def read_weights(path, fmt=None, allow_pickle=False):
    """Reads pretrained weights in any supported format.

    Args:
        path: the source file.
        fmt: "caffemodel", "npy", "torch", or None to detect it from the extension.
        allow_pickle: passed to `read_npy_dict`.

    Returns:
        A `PretrainedWeights`.

    Raises:
        ValueError: for an unknown format, or from the reader.
    """
    if fmt is None:
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS} or None. Received: fmt={fmt!r}")
    if fmt == "caffemodel":
        return read_caffemodel(path)
    if fmt == "npy":
        return read_npy_dict(path, allow_pickle=allow_pickle)
    return read_torch_state_dict(path)


def keras_weights(pretrained, pool5_shape):
    """Converts the source layouts into this package's Keras layouts (NumPy only).

    Args:
        pretrained: a `PretrainedWeights`.
        pool5_shape: (rows, columns, channels) of the model's pool5, whose flattening
            fc6 sees.

    Returns:
        {layer name: (kernel, bias)}: conv kernels (h, w, in, out) with conv1 reading RGB,
        dense kernels (in, out) with fc6's rows in Keras' (row, column, channel) order;
        float32.

    Raises:
        ValueError: if an array has the wrong number of dimensions, or fc6's inputs do not
            match pool5; the message names the layer and the shapes.
    """
    converted = {}
    for name in LAYER_NAMES:
        kernel, bias = pretrained.layers[name]
        kernel = np.asarray(kernel)
        if name.startswith("conv"):
            if kernel.ndim != 4:
                raise ValueError(
                    f"{name}: a convolution kernel must have 4 dimensions. "
                    f"Received: {name} weights of shape {kernel.shape}"
                )
            if pretrained.kernel_layout == "oihw":
                kernel = kernel.transpose(2, 3, 1, 0)
            if name == "conv1" and pretrained.channel_order == "bgr":
                # The model reads RGB: conv1's input channels are re-ordered to match.
                kernel = kernel[:, :, ::-1, :]
        else:
            if kernel.ndim != 2:
                raise ValueError(
                    f"{name}: a dense kernel must have 2 dimensions. "
                    f"Received: {name} weights of shape {kernel.shape}"
                )
            if pretrained.dense_layout == "oi":
                kernel = kernel.T
            if name == "fc6" and pretrained.fc6_rows == "chw":
                rows, cols, channels = (int(d) for d in pool5_shape)
                if kernel.shape[0] != rows * cols * channels:
                    raise ValueError(
                        f"fc6: its kernel (in, out) {kernel.shape} does not take pool5's "
                        f"{rows}x{cols}x{channels} = {rows * cols * channels} values. "
                        f"Received: fc6 weights of shape {pretrained.layers[name][0].shape}"
                    )
                # Row c*rows*cols + r*cols + w (Caffe, PyTorch) -> r*cols*channels + w*channels + c.
                kernel = kernel.reshape(channels, rows, cols, -1).transpose(1, 2, 0, 3)
                kernel = kernel.reshape(rows * cols * channels, -1)
        converted[name] = (
            np.ascontiguousarray(kernel, dtype=np.float32),
            np.asarray(bias, dtype=np.float32).reshape(-1),
        )
    return converted


def load_pretrained(model, pretrained):
    """Sets an AlexNet's conv and dense weights from pretrained ones.

    Every shape is checked before any weight is set, so a mismatch leaves the model as
    it was.

    Args:
        model: an `AlexNet` of the pretrained weights' variant and number of classes.
        pretrained: a `PretrainedWeights`.

    Returns:
        The model.

    Raises:
        ValueError: if a layer's converted weights do not have the model's shapes; the
            message names the layer and both shapes.
    """
    pool5_shape = model.get_layer("pool5").output.shape[1:]
    converted = keras_weights(pretrained, pool5_shape)
    for name, arrays in converted.items():
        expected = tuple(tuple(w.shape) for w in model.get_layer(name).weights)
        received = tuple(a.shape for a in arrays)
        if received != expected:
            raise ValueError(
                f"{name}: the converted (kernel, bias) shapes {received} do not match the "
                f"model's {expected} (a {pretrained.variant!r} AlexNet). Is the file "
                f"{pretrained.format!r} weights of that network?"
            )
    for name, arrays in converted.items():
        model.get_layer(name).set_weights(list(arrays))
    return model


def build_model(pretrained, num_classes=None, classifier_activation="softmax"):
    """Builds the AlexNet that the pretrained weights belong to, and sets them.

    Args:
        pretrained: a `PretrainedWeights`.
        num_classes: the number of classes fc8 must have, or None to take fc8's.
        classifier_activation: fc8's activation, "softmax" or None for logits.

    Returns:
        A `keras.Model` from raw RGB pixels in 0-255 (227x227) to class probabilities (or
        logits), carrying the weights' normalisation in its "input_rescaling" layer.

    Raises:
        ValueError: if num_classes does not match fc8, or from `load_pretrained`.
    """
    if num_classes is not None and num_classes != pretrained.num_classes:
        raise ValueError(
            f"fc8: the weights have {pretrained.num_classes} classes (bias shape "
            f"{np.shape(pretrained.layers['fc8'][1])}), not the {num_classes} asked for. "
            f"Received: num_classes={num_classes!r}"
        )
    for note in pretrained.notes:
        logging.warning("%s", note)
    model = model_lib.AlexNet(
        pretrained.num_classes,
        variant=pretrained.variant,
        classifier_activation=classifier_activation,
        input_scale=pretrained.input_scale,
        input_offset=pretrained.input_offset,
        name=f"alexnet_{pretrained.format}",
    )
    return load_pretrained(model, pretrained)


def _check_output(output):
    output = os.fspath(output)
    if not output.endswith(".keras"):
        raise ValueError(f"output must be a .keras file. Received: output={output!r}")
    if os.path.exists(output):
        raise ValueError(f"output already exists; refusing to overwrite it. Received: {output=}")
    return output


def convert(
    src, output, fmt=None, allow_pickle=False, num_classes=None, classifier_activation="softmax"
):
    """Converts a pretrained AlexNet into this package's model and saves it.

    Args:
        src: the source file: a .caffemodel, a caffe-tensorflow .npy dict, or torchvision's
            .pth state dict.
        output: the .keras file to write; it must not exist.
        fmt: "caffemodel", "npy", "torch", or None to detect it from src's extension.
        allow_pickle: allow reading a pickled .npy (see `read_npy_dict`).
        num_classes: the number of classes fc8 must have, or None to take fc8's.
        classifier_activation: fc8's activation, "softmax" or None for logits.

    Returns:
        The converted `keras.Model`, also saved to output: variant "caffe" for .caffemodel
        and .npy, "one_weird_trick" for torchvision. It takes raw RGB pixels in 0-255.

    Raises:
        ValueError: if output exists or is not a .keras path, and from the readers and
            `build_model`.
        ImportError: for a torch file when PyTorch is not installed.
    """
    output = _check_output(output)
    pretrained = read_weights(src, fmt, allow_pickle=allow_pickle)
    model = build_model(pretrained, num_classes, classifier_activation)
    _check_output(output)  # Reading and building took a while: check again.
    parent = os.path.dirname(output)
    if parent:
        os.makedirs(parent, exist_ok=True)
    model.save(output)
    return model


FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags; only the entry point calls this."""
    flags.DEFINE_string("output", None, "The .keras file to write; it must not exist.")
    flags.DEFINE_enum(
        "format",
        None,
        list(FORMATS),
        f"The source's format (default: from its extension, {sorted(EXTENSIONS)}).",
    )
    flags.DEFINE_bool(
        "allow_pickle",
        False,
        "Allow unpickling a .npy dict. Unpickling can run code hidden in the file: "
        "only for files from sources you trust.",
    )
    flags.DEFINE_integer(
        "num_classes", None, "The number of classes fc8 must have (default: fc8's).", lower_bound=1
    )
    flags.mark_flag_as_required("output")


def main(argv):
    if len(argv) != 2:
        raise app.UsageError(f"Expected one source file. Received: {argv[1:]}")
    src = argv[1]
    try:
        model = convert(
            src, FLAGS.output, FLAGS.format, FLAGS.allow_pickle, num_classes=FLAGS.num_classes
        )
    except (ValueError, OSError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    fc8 = model.get_layer("fc8")
    print(
        f"Wrote {FLAGS.output}: {model.name}, {fc8.units} classes, "
        f"{model.count_params():,} parameters. It takes raw RGB pixels in 0-255, "
        f"{model.input_shape[1]}x{model.input_shape[2]}; the normalisation is inside.",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    cli.run(main, define_flags)
