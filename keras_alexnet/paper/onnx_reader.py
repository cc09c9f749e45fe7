"""ONNX files of any AlexNet read as a `network.Network` (see `readers`).

Only the nodes on the data path count (those the graph input feeds, not the shapes being
computed); convolution, Gemm or MatMul, pools, LRN, BatchNormalization, Dropout and the
activations become layer records; a run of other nodes becomes one record of kind
"unknown", or an LRN where it is PyTorch's LocalResponseNorm written out.
"""

import os

import numpy as np

from keras_alexnet import errors
from keras_alexnet.paper import network as net

_ONNX_DROPOUT = (
    "No Dropout in the ONNX graph: exporters leave dropout out of an inference graph, so "
    "whether the network has it cannot be told from the file."
)


# Nodes that compute shapes, not maps: never part of the network's data path.
_ONNX_PLUMBING = {"Shape", "Constant", "ConstantOfShape", "Size"}
# Layout only: tf2onnx turns a channels-last Keras or TensorFlow graph into ONNX's NCHW with
# a Transpose before and after each run of convolutions and pools (between a split and
# each tower's Conv too). The data passes through them; they are no layer of their own.
_ONNX_LAYOUT = {"Transpose"}
_ONNX_ACTIVATIONS = {
    "Relu": "relu",
    "Softmax": "softmax",
    "LeakyRelu": "leakyrelu",
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "Elu": "elu",
    "LogSoftmax": "logsoftmax",
}
_ONNX_KINDS = {"Conv": "conv", "Gemm": "dense", "MaxPool": "pool", "AveragePool": "pool",
               "GlobalAveragePool": "pool", "GlobalMaxPool": "pool", "LRN": "norm",
               "BatchNormalization": "norm", "Dropout": "dropout", "Flatten": "flatten",
               "Reshape": "flatten", "Concat": "concat", "Split": "split", "Slice": "split",
               "Identity": "preprocess", "Pad": "padding",
               **dict.fromkeys(_ONNX_ACTIVATIONS, "activation")}  # fmt: skip


def _hwc(dims):
    """ONNX's NCHW (or NC) shape without the batch, as (H, W, C) (or (C,))."""
    if dims is None or len(dims) < 2:
        return None
    dims = tuple(dims[1:])
    return (*dims[1:], dims[0]) if len(dims) == 3 else dims


def _input_hwc(dims):
    """The graph input's shape as (H, W, C): NCHW as ONNX lays images out, or NHWC as a
    converted Keras or TensorFlow model takes them (the last dimension 1 or 3 channels,
    the second not)."""
    if dims is not None and len(dims) == 4 and dims[3] in (1, 3) and dims[1] not in (1, 3):
        return tuple(dims[1:])
    return _hwc(dims)


class _OnnxGraph:
    def __init__(self, model):
        import onnx

        self.onnx = onnx
        self.graph = onnx.shape_inference.infer_shapes(model).graph
        self.init = {t.name: onnx.numpy_helper.to_array(t) for t in self.graph.initializer}
        self.shapes = {}
        for value in [*self.graph.value_info, *self.graph.input, *self.graph.output]:
            dims = value.type.tensor_type.shape.dim
            self.shapes[value.name] = tuple(d.dim_value or None for d in dims)
        self.consts = {}
        for node in self.graph.node:
            if node.op_type == "Constant" and node.attribute:
                value = onnx.helper.get_attribute_value(node.attribute[0])
                if hasattr(value, "dims"):
                    self.consts[node.output[0]] = onnx.numpy_helper.to_array(value)

    def attrs(self, node):
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def value(self, name):
        return self.init.get(name, self.consts.get(name))


def _onnx_padding(attrs, in_shape, kernel, stride):
    pads = list(attrs.get("pads", [0] * 4))
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto.startswith("SAME") and in_shape:
        rows = net.same_padding(in_shape[0], kernel[0], stride[0])
        cols = net.same_padding(in_shape[1], kernel[1], stride[1])
        if auto == "SAME_LOWER":
            rows, cols = rows[::-1], cols[::-1]
        return (*rows, *cols)
    if len(pads) != 4:
        return None
    return (pads[0], pads[2], pads[1], pads[3])  # ONNX: begins (rows, cols), then ends


def _onnx_record(g, node):
    """One ONNX node as a `LayerRecord`, or None for a node outside the data path."""
    attrs = g.attrs(node)
    kind = _ONNX_KINDS.get(node.op_type, "unknown")
    record = net.LayerRecord(
        kind,
        node.name or node.output[0],
        node.op_type,
        input_shape=_hwc(g.shapes.get(node.input[0])),
        output_shape=_hwc(g.shapes.get(node.output[0])),
    )
    weights = [g.init[i] for i in node.input[1:] if i in g.init]
    record.params = sum(int(w.size) for w in weights)
    if node.op_type == "Conv" and weights:
        w = weights[0]
        record.filters, record.groups = int(w.shape[0]), int(attrs.get("group", 1))
        record.in_channels = int(w.shape[1]) * record.groups
        record.kernel = tuple(int(k) for k in w.shape[2:])
        record.stride = tuple(attrs.get("strides", (1, 1)))
        record.padding = _onnx_padding(attrs, record.input_shape, record.kernel, record.stride)
        record.activation = ""
    elif node.op_type in ("Gemm", "MatMul") and weights:
        w = weights[0]
        out_first = node.op_type == "Gemm" and attrs.get("transB", 0)
        record.kind = "dense"
        record.filters, record.in_channels = (w.shape if out_first else w.shape[::-1])[:2]
        record.filters, record.in_channels = int(record.filters), int(record.in_channels)
        record.activation = ""
    elif kind == "pool":
        record.subkind = {"MaxPool": "max", "AveragePool": "avg"}.get(node.op_type, "global")
        if record.subkind != "global":
            record.kernel = tuple(attrs["kernel_shape"])
            record.stride = tuple(attrs.get("strides", (1,) * len(record.kernel)))
            record.padding = _onnx_padding(attrs, record.input_shape, record.kernel, record.stride)
            if len(record.kernel) != 2:
                record.kind = "unknown"
    elif node.op_type == "LRN":
        size = int(attrs["size"])
        alpha = float(attrs.get("alpha", 1e-4)) / size  # ONNX divides alpha by size
        record.subkind = "lrn"
        record.lrn = dict(n=size, k=float(attrs.get("bias", 1.0)), alpha=alpha,
                          beta=float(attrs.get("beta", 0.75)))  # fmt: skip
    elif node.op_type == "BatchNormalization":
        record.subkind = "batchnorm"
    elif node.op_type == "Dropout":
        ratio = g.value(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        record.rate = float(ratio) if ratio is not None else float(attrs.get("ratio", 0.5))
    elif kind == "activation":
        record.subkind = _ONNX_ACTIVATIONS[node.op_type]
    elif node.op_type == "Reshape" and (
        record.output_shape is None or len(record.output_shape) != 1
    ):
        record.kind = "unknown"  # not a flatten: part of an op written out
    elif node.op_type == "Concat" and (record.output_shape is None or len(record.output_shape) < 3):
        return None  # a shape being built
    elif node.op_type == "Pad":
        pads = g.value(node.input[1]) if len(node.input) > 1 else attrs.get("pads")
        if pads is None or len(pads) != 8:
            record.kind = "unknown"
        else:
            p = [int(v) for v in pads]  # (N, C, H, W) begins, then ends
            record.padding = (p[2], p[6], p[3], p[7])
    return record


def _written_out_lrn(g, nodes):
    """An LRN written out as elementwise ops (PyTorch's LocalResponseNorm exports so), or None.

    The window is an AveragePool over (channels, 1, 1); the mean is scaled by alpha, added
    to k and raised to beta: alpha on the mean is alpha / n on the plain sum.
    """
    types = {n.op_type for n in nodes}
    pools = [
        n for n in nodes if n.op_type == "AveragePool" and len(g.attrs(n)["kernel_shape"]) == 3
    ]
    if not pools or not {"Div", "Pow"} <= types:
        return None

    def scalar(op_type):
        for node in nodes:
            if node.op_type == op_type:
                for name in node.input:
                    value = g.value(name)
                    if value is not None and value.size == 1:
                        return float(value.reshape(()))
        return None

    n = int(g.attrs(pools[0])["kernel_shape"][0])
    alpha, k, beta = scalar("Mul"), scalar("Add"), scalar("Pow")
    if None in (alpha, k, beta):
        return None
    return dict(n=n, k=k, alpha=alpha / n, beta=beta)


def _lrn_from_ops(g, nodes, index):
    """This package's LRN as its LiteRT and ONNX exports write it out
    (`keras_alexnet.models.layers.lrn_from_ops`), starting at nodes[index], or None.

    x*x, a 1x1 Conv whose kernel is a band of alpha around the diagonal (n = 2r+1 wide)
    and whose bias is k, then Log, Mul by -beta, Exp, and Mul by x: alpha on the plain sum.

    Returns:
        (the LRN's constants, the indices of its six nodes), or None.
    """
    square = nodes[index]
    if square.op_type != "Mul" or square.input[0] != square.input[1]:
        return None
    consumers = {}
    for i in range(index + 1, len(nodes)):
        for name in nodes[i].input:
            consumers.setdefault(name, i)
    chain, output = [index], square.output[0]
    for op_type in ("Conv", "Log", "Mul", "Exp", "Mul"):
        i = consumers.get(output)
        if i is None or nodes[i].op_type != op_type:
            return None
        chain.append(i)
        output = nodes[i].output[0]
    conv, scale, last = (nodes[i] for i in (chain[1], chain[3], chain[5]))
    kernel = g.value(conv.input[1])
    bias = g.value(conv.input[2]) if len(conv.input) > 2 else None
    factor = [g.value(name) for name in scale.input if g.value(name) is not None]
    if kernel is None or bias is None or not factor or square.input[0] not in last.input:
        return None
    if kernel.ndim != 4 or kernel.shape[2:] != (1, 1) or kernel.shape[0] != kernel.shape[1]:
        return None
    band = kernel[:, :, 0, 0]
    alpha = float(band.max())
    offsets = np.abs(np.arange(len(band))[:, None] - np.arange(len(band))[None, :])
    radius = int(offsets[band != 0].max()) if alpha > 0 else 0
    if not np.allclose(band, np.where(offsets <= radius, alpha, 0.0)) or np.ptp(bias) > 0:
        return None
    lrn = dict(n=2 * radius + 1, k=float(bias.flat[0]), alpha=alpha,
               beta=-float(np.asarray(factor[0]).reshape(())))  # fmt: skip
    return lrn, chain


def _data_nodes(g):
    """The indices of the nodes on the data path: those fed (at last) by the graph input."""
    data = {i.name for i in g.graph.input if i.name not in g.init}
    on_path = []
    for index, node in enumerate(g.graph.node):
        if node.op_type in _ONNX_PLUMBING or not any(i in data for i in node.input):
            continue
        data.update(node.output)
        if node.op_type not in _ONNX_LAYOUT:
            on_path.append(index)
    return on_path


def load_graph(path):
    """An ONNX file's graph, with its shapes inferred.

    Raises:
        errors.InputError: the file is empty, cut short, not ONNX, nested too deeply, holds
            no graph, or its external data lies outside its folder; the message names it.
    """
    import onnx

    try:
        model = onnx.load(path)
        if not model.graph.node or not model.graph.input:
            raise errors.InputError(
                f"{path} holds no ONNX graph ({os.path.getsize(path):,} bytes; empty or "
                "another kind of file)"
            )
        return _OnnxGraph(model)
    except errors.InputError:
        raise
    except RecursionError as error:
        raise errors.InputError(f"{path}: its ONNX graph is nested too deeply to read") from error
    except Exception as error:  # noqa: BLE001 - a file from anywhere: any fault is its own
        text = " ".join(str(error).split())
        if "points outside the directory" in text or "should be file inside" in text:
            fault = "its external data lies outside its folder, which is refused"
        elif "MaxDepth" in text:
            fault = "its ONNX graph is nested too deeply to read"
        else:
            detail = text if len(text) <= 120 else text[:117] + "..."
            fault = f"not an ONNX file that loads (cut short or another kind of file: {detail})"
        raise errors.InputError(f"{path}: {fault}") from error


def read_onnx(path):
    """An ONNX model file as a `Network` (shapes from ONNX's shape inference)."""
    g = load_graph(path)
    nodes = g.graph.node
    records, cannot_tell, run = [], [], []

    def close_run():
        if not run:
            return
        span = nodes[run[0] : run[-1] + 1]
        lrn = _written_out_lrn(g, span)
        kinds = sorted({nodes[i].op_type for i in run})
        first, last = nodes[run[0]], nodes[run[-1]]
        record = net.LayerRecord(
            "norm" if lrn else "unknown",
            first.name or first.output[0],
            "+".join(kinds),
            subkind="lrn" if lrn else "",
            lrn=lrn,
            input_shape=_hwc(g.shapes.get(first.input[0])),
            output_shape=_hwc(g.shapes.get(last.output[0])),
        )
        if not lrn:
            cannot_tell.append(
                f"nodes {record.name!r}... ({', '.join(kinds)}) are not a layer the report "
                "knows; they are read as passing their input on"
            )
        records.append(record)
        run.clear()

    written_out, constants = set(), set()
    for index in _data_nodes(g):
        node = nodes[index]
        if index in written_out:
            continue
        found = _lrn_from_ops(g, nodes, index)
        if found:
            lrn, chain = found
            written_out.update(chain)
            # Its kernel, bias and factor are the LRN's constants, not weights.
            constants.update(i for c in chain for i in nodes[c].input if i in g.init)
            close_run()
            records.append(
                net.LayerRecord(
                    "norm",
                    node.name or node.output[0],
                    "+".join(nodes[i].op_type for i in chain),
                    subkind="lrn",
                    lrn=lrn,
                    input_shape=_hwc(g.shapes.get(node.input[0])),
                    output_shape=_hwc(g.shapes.get(nodes[chain[-1]].output[0])),
                )
            )
            continue
        if node.op_type in ("Add",) and records and records[-1].kind in ("dense", "concat"):
            bias = [g.init[i] for i in node.input if i in g.init]
            if bias:  # MatMul + Add, towers' Concat + Add: the layer's bias
                records[-1].params += sum(int(b.size) for b in bias)
                continue
        if node.op_type in ("Sub", "Add", "Mul", "Div") and not any(
            r.kind in ("conv", "dense") for r in records
        ):
            # Before the first layer: the input's normalisation (an export's mean image, a
            # scale), whose constants are not weights.
            constants.update(i for i in node.input if i in g.init)
        record = _onnx_record(g, node)
        if record is None:
            continue
        if record.kind == "unknown":
            run.append(index)
            continue
        close_run()
        records.append(record)
    close_run()
    records = net.merge_towers(net.fold_padding(records))
    dropout_known = any(r.kind == "dropout" for r in records)
    if not dropout_known:
        cannot_tell.append(_ONNX_DROPOUT)
    inputs = [i for i in g.graph.input if i.name not in g.init]
    return net.Network(
        name=os.path.basename(path),
        source="ONNX",
        records=records,
        input_shape=_input_hwc(g.shapes.get(inputs[0].name)) if inputs else None,
        params=sum(int(v.size) for name, v in g.init.items() if name not in constants),
        dropout_known=dropout_known,
        cannot_tell=cannot_tell,
    )
