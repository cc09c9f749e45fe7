"""Pretrained AlexNet weight files, read as they hold them: Caffe, caffe-tensorflow, torchvision.

Each reader returns a `PretrainedWeights`: the layer arrays exactly as the file holds them,
and the conventions they follow, which `conversion.keras_weights` undoes:

| | Caffe .caffemodel | caffe-tensorflow .npy | torchvision .pth |
|---|---|---|---|
| network | bvlc_alexnet ("caffe") | bvlc_alexnet ("caffe") | "one_weird_trick" |
| conv kernels | (out, in, h, w) | (h, w, in, out) | (out, in, h, w) |
| dense kernels | (out, in) | (in, out) | (out, in) |
| fc6 input rows | (channel, row, column) | (row, column, channel) | (channel, row, column) |
| conv1 input | BGR | BGR | RGB |
| pixels | 0-255 minus mean pixel | 0-255 minus mean pixel | x/255, minus mean, over std |

The pixel conventions become the converted model's input_scale and input_offset, from the
constants below.
"""

import dataclasses
import os

import numpy as np
from absl import logging

from keras_alexnet import errors
from keras_alexnet.models import loading
from keras_alexnet.weights import caffe_proto

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

WEIGHT_FILE_FORMATS = ("caffemodel", "npy", "torch")
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
# Their weights' shapes (fc8's rows are the classes, any number of them).
TORCHVISION_SHAPES = {
    "conv1": (64, 3, 11, 11),
    "conv2": (192, 64, 5, 5),
    "conv3": (384, 192, 3, 3),
    "conv4": (256, 384, 3, 3),
    "conv5": (256, 256, 3, 3),
    "fc6": (4096, 9216),
    "fc7": (4096, 4096),
    "fc8": (None, 4096),
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


# Each format's conventions, the columns of the table in this module's docstring.
_CONVENTIONS = {
    "caffemodel": dict(
        variant="caffe",
        kernel_layout="oihw",
        dense_layout="oi",
        fc6_rows="chw",
        channel_order="bgr",
        preprocessing=_caffe_preprocessing,
    ),
    "npy": dict(
        variant="caffe",
        kernel_layout="hwio",
        dense_layout="io",
        fc6_rows="hwc",
        channel_order="bgr",
        preprocessing=_caffe_preprocessing,
    ),
    "torch": dict(
        variant="one_weird_trick",
        kernel_layout="oihw",
        dense_layout="oi",
        fc6_rows="chw",
        channel_order="rgb",
        preprocessing=_torchvision_preprocessing,
    ),
}


def format_normalization(fmt):
    """(input_scale, input_offset), per RGB channel, that a format's weights expect.

    The model computes pixel * input_scale + input_offset from 0-255 RGB pixels.
    """
    if fmt not in _CONVENTIONS:
        raise ValueError(f"fmt must be one of {WEIGHT_FILE_FORMATS}. Received: fmt={fmt!r}")
    return _CONVENTIONS[fmt]["preprocessing"]()


def _pretrained(fmt, layers, notes=()):
    """The layers read from a file of format fmt, with that format's conventions."""
    conventions = dict(_CONVENTIONS[fmt])
    scale, offset = conventions.pop("preprocessing")()
    return PretrainedWeights(
        layers=layers,
        format=fmt,
        input_scale=scale,
        input_offset=offset,
        notes=tuple(notes),
        **conventions,
    )


def read_caffemodel(path):
    """Reads a Caffe `NetParameter` (a .caffemodel), such as bvlc_alexnet.caffemodel.

    The protobuf wire format is decoded by `caffe_proto.read_net`, in every layout the
    wild holds (current `layer`, legacy V1 `layers`, V0 layers nested in V1 ones).

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
    found, kinds = caffe_proto.read_net(path)
    notes = []
    if "LRN" in kinds and "Pooling" in kinds and kinds.index("Pooling") < kinds.index("LRN"):
        notes.append(
            "this net pools before its first LRN (CaffeNet's order, "
            "bvlc_reference_caffenet); the converted model normalises before pooling, "
            "as bvlc_alexnet and the paper do, so its outputs will differ slightly."
        )
    return _pretrained("caffemodel", _select_layers(found, path), notes)


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
    _check_npy_header(path)
    if not allow_pickle:
        raise errors.InputError(
            f"{path} is a pickled .npy dict: loading a pickle can execute arbitrary code "
            "embedded in the file. Pass allow_pickle=True (--allow_pickle) only for a file "
            f"from a source you trust. Received: allow_pickle={allow_pickle!r}"
        )
    logging.warning(
        "Unpickling %s (allow_pickle=True): a pickle can execute arbitrary code while it "
        "loads; use only files from sources you trust.",
        path,
    )
    try:
        loaded = np.load(path, allow_pickle=True, encoding="latin1")
    except Exception as error:  # noqa: BLE001 - a file from anywhere: any fault is its own
        raise errors.InputError(
            f"{path}: its pickle does not load (cut short or damaged: {type(error).__name__}: "
            f"{' '.join(str(error).split())[:120]})"
        ) from error
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
    return _pretrained("npy", _select_layers(found, path))


def _check_npy_header(path):
    """Checks that a .npy file holds what a caffe-tensorflow dict is saved as: an object
    array (a pickle), read from its header without unpickling anything.

    Raises:
        errors.InputError: a folder, a missing or empty file, not a .npy file, or a .npy
            file of plain numbers (not a dict of layers).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        what = "is a folder" if os.path.isdir(path) else "does not exist"
        raise errors.InputError(f"{path}: the weights file {what}")
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0
            header = (read if version == (1, 0) else np.lib.format.read_array_header_2_0)(f)
    except (ValueError, OSError, EOFError) as error:
        size = os.path.getsize(path)
        raise errors.InputError(
            f"{path} is not a .npy file ({size:,} bytes; empty, cut short or another kind of "
            f"file: {' '.join(str(error).split())[:120]})"
        ) from error
    shape, _, dtype = header
    if not dtype.hasobject:
        raise errors.InputError(
            f"{path} holds a plain {dtype} array of shape {shape}, not a dict of layers "
            "(caffe-tensorflow's bvlc_alexnet.npy, a pickled dict {layer: [weights, biases]})"
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
        import torch  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "Reading PyTorch checkpoints needs PyTorch, which keras_alexnet does not "
            "install by default: pip install keras-alexnet[torch]"
        ) from error
    state = loading.load_state_dict(path)  # errors.InputError naming what is wrong
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (it holds a {type(state).__name__})")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    found = {}
    for name, prefix in TORCHVISION_KEYS.items():
        keys = (f"{prefix}.weight", f"{prefix}.bias")
        if all(key in state for key in keys):
            _check_torch_layer(path, name, [(key, state[key]) for key in keys])
            found[name] = tuple(state[key].detach().cpu().numpy() for key in keys)
    missing = [TORCHVISION_KEYS[n] for n in LAYER_NAMES if n not in found]
    if missing:
        raise ValueError(
            f"{path} is not torchvision's AlexNet: no weight and bias for {missing}. "
            f"Found keys: {sorted(state)[:20]}"
        )
    return _pretrained("torch", found)


def _check_torch_layer(path, name, tensors):
    """Refuses a layer's tensors before they are copied into arrays: a shape other than
    torchvision's, or a tensor with more elements than its storage holds (a stride-0 or
    overlapping tensor, a few bytes in the file that expand to gigabytes)."""
    import torch

    weight_shape = TORCHVISION_SHAPES[name]
    expected = [weight_shape, weight_shape[:1]]
    for (key, tensor), shape in zip(tensors, expected):
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            raise errors.InputError(f"{path}: {key} is not a floating-point tensor")
        got = tuple(tensor.shape)
        if len(got) != len(shape) or any(e is not None and e != g for e, g in zip(shape, got)):
            shown = tuple("N" if e is None else e for e in shape)
            raise errors.InputError(
                f"{path}: {key} has shape {got}, where torchvision's AlexNet has {shown}"
            )
        stored = tensor.untyped_storage().nbytes()
        if tensor.numel() * tensor.element_size() > stored:
            raise errors.InputError(
                f"{path}: {key} claims {tensor.numel():,} elements in a storage of "
                f"{stored:,} bytes (a stride-0 or overlapping tensor)"
            )
    weight, bias = (tensor for _, tensor in tensors)
    if bias.shape[0] != weight.shape[0]:
        raise errors.InputError(
            f"{path}: {tensors[1][0]} has {bias.shape[0]} values for {weight.shape[0]} units"
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
            f"{sorted(EXTENSIONS)} or an explicit format in {WEIGHT_FILE_FORMATS}. "
            f"Received: src={path!r}"
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
    if fmt not in WEIGHT_FILE_FORMATS:
        raise ValueError(f"fmt must be one of {WEIGHT_FILE_FORMATS} or None. Received: fmt={fmt!r}")
    if fmt == "caffemodel":
        return read_caffemodel(path)
    if fmt == "npy":
        return read_npy_dict(path, allow_pickle=allow_pickle)
    return read_torch_state_dict(path)
