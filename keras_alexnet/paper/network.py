"""Any AlexNet as an ordered list of layer records, whatever framework wrote it.

A `Network` is what the report compares with the paper: the layers in the order the data
flows through them, each a `LayerRecord` of one kind (conv, dense, pool, norm, dropout,
activation, flatten, padding, concat, split, preprocess, unknown) with the numbers that
kind has. `readers` makes one from a Keras model, an ONNX file or a PyTorch state dict;
`reference` makes one from a variant's spec table by arithmetic, the paper's among them.
A number that the file does not hold (a stride in a state dict) is None: the report says
it cannot tell, never that it differs.
"""

import dataclasses
import math

from keras_alexnet.models import variants
from keras_alexnet.paper import numbers as paper

KINDS = (
    "conv",
    "dense",
    "pool",
    "norm",
    "dropout",
    "activation",
    "flatten",
    "padding",
    "concat",
    "split",
    "preprocess",
    "unknown",
)


@dataclasses.dataclass
class LayerRecord:
    """One layer as the report reads it.

    Attributes:
        kind: one of `KINDS`.
        name: the layer's name in its file.
        type: the framework's name for it (Conv2D, Conv, MaxPool, BatchNormalization...).
        subkind: pool "max", "avg", "adaptive" or "global"; norm "lrn", "batchnorm" or
            another name; activation "relu", "softmax" or another name.
        filters: a convolution's output channels, a dense layer's units.
        in_channels: the channels (features) it reads.
        kernel: (height, width) of a convolution's or a pool's window.
        stride: (rows, columns).
        padding: zeros added (top, bottom, left, right).
        groups: towers that do not see each other's maps.
        input_shape, output_shape: (height, width, channels) or (features,).
        params: its weights, trainable or not.
        activation: the activation fused into a conv or dense layer: "relu", "softmax",
            "" (none) or None (cannot tell).
        lrn: {"n", "k", "alpha", "beta"}, alpha multiplying the plain sum of n squares.
        rate: a dropout's rate.
    """

    kind: str
    name: str = ""
    type: str = ""
    subkind: str = ""
    filters: int = None
    in_channels: int = None
    kernel: tuple = None
    stride: tuple = None
    padding: tuple = None
    groups: int = None
    input_shape: tuple = None
    output_shape: tuple = None
    params: int = 0
    activation: str = None
    lrn: dict = None
    rate: float = None

    @property
    def multiply_adds(self):
        """One forward pass's multiply-adds for one image, or None when it cannot tell."""
        if self.kind == "dense" and None not in (self.in_channels, self.filters):
            return self.in_channels * self.filters
        if self.kind != "conv" or None in (self.output_shape, self.in_channels, self.kernel):
            return None
        if self.groups is None or None in (*self.output_shape, *self.kernel):
            return None  # a size the file leaves open (an input of any height and width)
        return (
            math.prod(self.output_shape) * math.prod(self.kernel) * self.in_channels // self.groups
        )


@dataclasses.dataclass
class Network:
    """A network as the report reads it.

    Attributes:
        name: what to call it (a file name, a variant).
        source: the format and framework it was read from.
        records: its `LayerRecord`s in order.
        input_shape: (height, width, channels), or None when the file does not say.
        params: its parameters (weights of every layer, trainable or not).
        order_known: False where the file holds weights only (a state dict): pools, LRN,
            dropout and activations are then not in it.
        dropout_known: False where dropout may have been left out when the file was
            written (an ONNX file exported for inference).
        cannot_tell: what the report could not read from the file, as sentences.
    """

    name: str
    source: str
    records: list
    input_shape: tuple = None
    params: int = 0
    order_known: bool = True
    dropout_known: bool = True
    cannot_tell: list = dataclasses.field(default_factory=list)

    def of_kind(self, kind):
        return [r for r in self.records if r.kind == kind]


def same_padding(size, kernel, stride):
    """(before, after) zeros of "same" padding, as TensorFlow and ONNX SAME_UPPER place them."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def window_output(size, kernel, stride, before, after):
    """The output side of a convolution or a pool over `size` with that padding."""
    return (size + before + after - kernel) // stride + 1


def fold_padding(records):
    """Explicit zero-padding layers added into the padding of the conv or pool after them."""
    folded, pending = [], None
    for record in records:
        if record.kind == "padding":
            pending = (
                record.padding if pending is None else tuple(map(sum, zip(pending, record.padding)))
            )
            continue
        if pending is not None and record.kind in ("conv", "pool") and record.padding:
            record = dataclasses.replace(
                record,
                padding=tuple(map(sum, zip(pending, record.padding))),
                input_shape=folded[-1].output_shape if folded else record.input_shape,
            )
            pending = None
        folded.append(record)
    return folded


def merge_towers(records):
    """Convolutions computed as separate towers and concatenated, as one grouped record.

    Old Keras and TensorFlow AlexNets split the maps, convolve each half and concatenate;
    the paper's layer is then the concatenation. Convolutions right before a concat (their
    activations between them) with the same window, whose filters add up to the concat's
    channels, become one convolution of that many groups; the split before them goes.
    """
    merged = []
    for record in records:
        if record.kind != "concat":
            merged.append(record)
            continue
        towers, skipped = [], []
        for previous in reversed(merged):
            if previous.kind == "conv":
                towers.append(previous)
            elif previous.kind in ("activation", "split"):
                skipped.append(previous)
                if previous.kind == "split":
                    break  # the towers start after their split, not at the layer before it
            else:
                break
        towers.reverse()
        channels = record.output_shape[-1] if record.output_shape else None
        if len(towers) < 2 or sum(t.filters for t in towers) != channels:
            merged.append(record)
            continue
        if len({(t.kernel, t.stride, t.padding) for t in towers}) != 1:
            merged.append(record)
            continue
        first = towers[0]
        keep = [r for r in merged[: len(merged) - len(towers) - len(skipped)] if r.kind != "split"]
        in_channels = sum(t.in_channels or 0 for t in towers)
        acts = [r for r in skipped if r.kind == "activation"]
        keep.append(
            dataclasses.replace(
                first,
                name="+".join(t.name for t in towers),
                filters=channels,
                in_channels=in_channels or None,
                groups=len(towers),
                output_shape=record.output_shape,
                input_shape=(*first.input_shape[:-1], in_channels) if first.input_shape else None,
                params=sum(t.params for t in towers) + record.params,  # the concat's bias
                activation=acts[0].subkind if acts else first.activation,
            )
        )
        merged[:] = keep
    return merged


def reference(variant="paper", input_size=None, num_classes=paper.NUM_CLASSES):
    """A variant of `variants.VARIANTS` as a `Network`, its shapes from the arithmetic.

    Args:
        variant: a variant's name ("paper", "caffe", "one_weird_trick", ...).
        input_size: the input's side; default 227 (224 for one_weird_trick, torchvision's).
        num_classes: fc8's units.

    Returns:
        The `Network`, named after the variant.
    """
    spec = variants.get(variant)
    if input_size is None:
        input_size = 224 if spec.dropout_before_dense else paper.INPUT_SIZE
    size, channels = input_size, paper.INPUT_CHANNELS
    records = []
    for conv in spec.convs:
        p = conv.padding
        out = window_output(size, conv.kernel_size, conv.strides, p, p)
        records.append(
            LayerRecord(
                "conv",
                conv.name,
                "reference",
                filters=conv.filters,
                in_channels=channels,
                kernel=(conv.kernel_size,) * 2,
                stride=(conv.strides,) * 2,
                padding=(p,) * 4,
                groups=conv.groups,
                input_shape=(size, size, channels),
                output_shape=(out, out, conv.filters),
                params=conv.kernel_size**2 * channels // conv.groups * conv.filters + conv.filters,
                activation="relu",
            )
        )
        size, channels = out, conv.filters
        if conv.lrn and spec.lrn:
            lrn = dict(
                n=2 * spec.lrn["depth_radius"] + 1,
                k=spec.lrn["bias"],
                alpha=spec.lrn["alpha"],
                beta=spec.lrn["beta"],
            )
            records.append(LayerRecord("norm", "lrn" + conv.name[-1], subkind="lrn", lrn=lrn))
        if conv.pool:
            out = window_output(size, paper.POOL_SIZE, paper.POOL_STRIDE, 0, 0)
            records.append(_pool_record("pool" + conv.name[-1], size, out, channels))
            size = out
    records.append(LayerRecord("flatten", "flatten"))
    features = size * size * channels
    units = (*spec.dense_units, num_classes)
    for i, filters in enumerate(units):
        name = f"fc{6 + i}"
        dropout = LayerRecord("dropout", f"dropout{6 + i}", rate=paper.DROPOUT_RATE)
        if spec.dropout_before_dense and i < 2:
            records.append(dropout)
        records.append(
            LayerRecord(
                "dense",
                name,
                "reference",
                filters=filters,
                in_channels=features,
                input_shape=(features,),
                output_shape=(filters,),
                params=features * filters + filters,
                activation="softmax" if i == 2 else "relu",
            )
        )
        if not spec.dropout_before_dense and i < 2:
            records.append(dropout)
        features = filters
    return Network(
        name=variant,
        source=spec.source,
        records=records,
        input_shape=(input_size, input_size, paper.INPUT_CHANNELS),
        params=sum(r.params for r in records),
    )


def _pool_record(name, size, out, channels):
    return LayerRecord(
        "pool",
        name,
        "reference",
        subkind="max",
        kernel=(paper.POOL_SIZE,) * 2,
        stride=(paper.POOL_STRIDE,) * 2,
        padding=(0,) * 4,
        input_shape=(size, size, channels),
        output_shape=(out, out, channels),
    )
