"""Model files of any AlexNet read as a `network.Network`: Keras, ONNX, PyTorch state dicts.

Each reader turns what its file holds into layer records, by kind and in order, never by
name: a Keras model of any layers (`read_keras`), an ONNX graph (`read_onnx`), or a
PyTorch state dict, which holds weight shapes only (`read_state_dict`). `read_file`
chooses by the file's name.
"""

import dataclasses
import math
import os

import keras

from keras_alexnet import errors
from keras_alexnet.models import layers as layers_lib
from keras_alexnet.models import loading
from keras_alexnet.paper import network as net
from keras_alexnet.paper import onnx_reader

_STATE_DICT_CANNOT_TELL = (
    "A PyTorch state dict holds weights only: strides, padding, pooling, LRN, dropout, "
    "activations and the input size cannot be told from the file; output sizes, "
    "multiply-adds and neurons neither."
)


def read_file(path, trust=False):
    """The `Network` in a model file, chosen by its extension.

    Args:
        path: a .keras or .h5 Keras model (or a KerasHub preset folder), an .onnx file, or a
            .pth/.pt PyTorch state dict.
        trust: load Keras models with safe_mode=False (runs the file's Lambda code).

    Raises:
        errors.InputError: the file is missing or cannot be read as its extension says.
        ValueError: for another extension.
    """
    name = os.path.basename(path)
    ext = os.path.splitext(path)[1].lower()
    if not os.path.exists(path):
        raise errors.InputError(f"{path}: the model file does not exist")
    if is_keras_file(path):
        return read_keras(load_keras(path, trust), name)
    if ext == ".onnx":
        return onnx_reader.read_onnx(path)
    if ext in (".pth", ".pt", ".bin"):
        return read_state_dict(path)
    raise ValueError(
        f"model files must end in .keras, .h5, .onnx, .pth or .pt. Received: --model={path!r}"
    )


# ------------------------------------------------------------------------------------------
# Keras
# ------------------------------------------------------------------------------------------


def is_keras_file(path):
    """A Keras model file, or a model folder an extra reads as one (a KerasHub preset
    folder: `loading.folder_loader`)."""
    ext = os.path.splitext(path)[1].lower()
    return ext in (".keras", ".h5", ".hdf5") or loading.folder_loader(path) is not None


def load_keras(path, trust=False):
    """A Keras model file, loaded without compiling; Lambda code runs only when trusted
    (`loading.load_keras`: errors.InputError naming the file and its fault). A KerasHub
    preset folder is loaded as the AlexNet Keras model of its classifier (`hub`, which
    registers the folders with `loading`)."""
    load = loading.folder_loader(path)
    if load is not None:
        return load(path)
    return loading.load_keras(path, trust)


def _flat_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _flat_layers(layer)
        elif not isinstance(layer, keras.layers.InputLayer):
            yield layer


def _shape(tensor):
    """A tensor's shape without the batch; None where it has a size the model leaves open."""
    try:
        shape = tuple(tensor.shape[1:])
    except (AttributeError, ValueError):
        return None
    return None if None in shape else shape


def _activation(layer):
    act = getattr(layer, "activation", None)
    name = getattr(act, "__name__", None) if act is not None else None
    return "" if name in (None, "linear") else name


def _window(layer, record, size_attr):
    record.kernel = tuple(getattr(layer, size_attr))
    record.stride = tuple(layer.strides)
    if record.input_shape and layer.padding == "same":
        rows = net.same_padding(record.input_shape[0], record.kernel[0], record.stride[0])
        cols = net.same_padding(record.input_shape[1], record.kernel[1], record.stride[1])
        record.padding = (*rows, *cols)
    else:
        record.padding = (0, 0, 0, 0) if layer.padding == "valid" else None


def _keras_record(layer):
    """One Keras layer as a `LayerRecord` (kind "unknown" for a layer the report does not know)."""
    L = keras.layers
    record = net.LayerRecord(
        "unknown",
        layer.name,
        type(layer).__name__,
        input_shape=_shape(layer.input),
        output_shape=_shape(layer.output),
        params=layer.count_params(),
    )
    if isinstance(layer, (L.Conv2D, layers_lib.GroupedConv2D)):
        record.kind, record.filters = "conv", layer.filters
        record.groups = getattr(layer, "groups", 1)
        record.in_channels = record.input_shape[-1] if record.input_shape else None
        record.activation = _activation(layer)
        _window(layer, record, "kernel_size")
    elif isinstance(layer, L.Dense):
        record.kind, record.filters, record.activation = "dense", layer.units, _activation(layer)
        record.in_channels = record.input_shape[-1] if record.input_shape else None
    elif isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D)):
        record.kind = "pool"
        record.subkind = "max" if isinstance(layer, L.MaxPooling2D) else "avg"
        _window(layer, record, "pool_size")
    elif isinstance(layer, (L.GlobalAveragePooling2D, L.GlobalMaxPooling2D)):
        record.kind, record.subkind = "pool", "global"
    elif isinstance(layer, layers_lib.LocalResponseNormalization):
        record.kind, record.subkind = "norm", "lrn"
        record.lrn = dict(
            n=2 * layer.depth_radius + 1, k=layer.bias, alpha=layer.alpha, beta=layer.beta
        )
    elif isinstance(layer, L.BatchNormalization):
        record.kind, record.subkind = "norm", "batchnorm"
    elif isinstance(layer, (L.LayerNormalization, L.GroupNormalization, L.UnitNormalization)):
        record.kind, record.subkind = "norm", type(layer).__name__
    elif isinstance(layer, L.Dropout) or type(layer).__name__.startswith("SpatialDropout"):
        record.kind, record.rate = "dropout", float(layer.rate)
    elif isinstance(layer, (L.ReLU, L.Softmax, L.LeakyReLU, L.ELU, L.PReLU)):
        record.kind = "activation"
        record.subkind = type(layer).__name__.lower()
        if record.subkind == "relu" and (layer.negative_slope or layer.max_value is not None):
            record.subkind = "relu (leaky or capped)"
    elif isinstance(layer, L.Activation):
        record.kind, record.subkind = "activation", _activation(layer) or "linear"
    elif isinstance(layer, (L.Flatten, L.Reshape)):
        record.kind = "flatten"
    elif isinstance(layer, L.ZeroPadding2D):
        (top, bottom), (left, right) = layer.padding
        record.kind, record.padding = "padding", (top, bottom, left, right)
    elif isinstance(layer, L.Concatenate):
        record.kind = "concat"
    elif isinstance(layer, (L.Rescaling, L.Normalization, L.Resizing, L.CenterCrop)):
        record.kind = "preprocess"
    elif type(layer).__name__ in ("ClassNames", "Identity"):
        record.kind = "preprocess"
    return record


def _input_shape(model):
    """The model's (first) input shape without the batch, or None for a model with none."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):  # a Sequential model with no layers
        return None
    return _shape(inputs[0]) if inputs else None


def read_keras(model, name="model"):
    """A Keras model of any layers (Sequential, functional, nested) as a `Network`."""
    records = [_keras_record(layer) for layer in _flat_layers(model)]
    cannot_tell = [
        f"layer {r.name!r} ({r.type}) is not a layer the report knows; it is read as passing "
        f"its input on ({r.params:,} parameters)"
        for r in records
        if r.kind == "unknown"
    ]
    return net.Network(
        name=name,
        source=f"Keras {type(model).__name__}",
        records=net.merge_towers(net.fold_padding(records)),
        input_shape=_input_shape(model),
        params=model.count_params(),
        cannot_tell=cannot_tell,
    )


# ------------------------------------------------------------------------------------------
# PyTorch state dicts
# ------------------------------------------------------------------------------------------


def read_state_dict(path):
    """A PyTorch state dict (weights only) as a `Network` of its conv, dense and norm layers.

    Convolution weights [out, in / groups, kh, kw] give the filters, the kernel and the
    groups (the previous layer's channels over the weight's in); dense weights [out, in]
    the units; weight, bias, running_mean and running_var of one module a BatchNorm.
    """
    state = loading.load_state_dict(path)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state:
        raise errors.InputError(
            f"{path} holds no PyTorch state dict (a dict of tensors): it holds a "
            f"{type(state).__name__}{' that is empty' if not state else ''}"
        )
    modules = {}
    for key, tensor in state.items():
        module, _, field = key.rpartition(".")
        if hasattr(tensor, "shape") and field != "num_batches_tracked":
            modules.setdefault(module, {})[field] = tuple(tensor.shape)
    records, channels = [], 3
    for module, fields in modules.items():
        weight = fields.get("weight")
        params = sum(math.prod(shape) for shape in fields.values())
        record = net.LayerRecord("unknown", module, "state dict", params=params)
        if weight is not None and len(weight) == 4:
            groups = channels // weight[1] if channels and channels % weight[1] == 0 else None
            record = dataclasses.replace(
                record, kind="conv", filters=weight[0], kernel=weight[2:], groups=groups,
                in_channels=channels, type="conv weight",
            )  # fmt: skip
            channels = weight[0]
        elif weight is not None and len(weight) == 2:
            record = dataclasses.replace(
                record, kind="dense", filters=weight[0], in_channels=weight[1], type="linear weight"
            )
            channels = weight[0]
        elif "running_mean" in fields:
            record = dataclasses.replace(record, kind="norm", subkind="batchnorm", type="batchnorm")
        records.append(record)
    return net.Network(
        name=os.path.basename(path),
        source="PyTorch state dict (weights only)",
        records=records,
        params=sum(r.params for r in records),
        order_known=False,
        dropout_known=False,
        cannot_tell=[_STATE_DICT_CANNOT_TELL],
    )
