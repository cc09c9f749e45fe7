"""What the conformance report compares: the model against the paper, layer by layer.

Every number of the paper that the model can show is compared with the built (or loaded)
model: the order of its layers, output shapes, neuron counts, kernel shapes and towers,
parameters, LRN, pooling, dropout, weight decay and initialisation. A difference is
"departs" where the variant declares that departure (the caffe and one_weird_trick variants
do, by design), a "note" where the paper contradicts itself, and "FAIL" anywhere else.
`report` formats these checks as the report; `python -m keras_alexnet.verify` prints it.
"""

import dataclasses
import math

import keras

from keras_alexnet.models import inspection
from keras_alexnet.models import layers as layers_lib
from keras_alexnet.models import variants
from keras_alexnet.paper import numbers as paper

OK, DEPARTS, NOTE, FAIL = "ok", "departs", "note", "FAIL"
ORDER = "order"  # the item of the layer order's check
_SEVERITY = {OK: 0, NOTE: 1, DEPARTS: 2, FAIL: 3}


@dataclasses.dataclass
class Check:
    """One comparison of a paper value with the model's.

    Attributes:
        topic: "layout", "lrn", "init", "dropout" or "decay"; a variant may declare
            departures by topic.
        item: what is compared, e.g. "conv2 kernel".
        expected: the paper's value, as text.
        actual: the model's value, as text.
        status: ok, departs, note or FAIL.
    """

    topic: str
    item: str
    expected: str
    actual: str
    status: str = OK


class _Checker:
    def __init__(self, departures):
        self.departures = set(departures)
        self.checks = []

    def compare(self, topic, item, expected, actual, match=None, note=False):
        if match is None:
            match = expected == actual
        if match:
            status = OK
        elif note:
            status = NOTE
        elif topic in self.departures:
            status = DEPARTS
        else:
            status = FAIL
        check = Check(topic, item, as_text(expected), as_text(actual), status)
        self.checks.append(check)
        return check


def as_text(value):
    """A value as the report shows it: 60,965,224, 0.0005, 227x227x3.

    Args:
        value: a number, bool, None, tuple (a shape) or text.

    Returns:
        The text.
    """
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    return str(value)


def _groups(layer):
    return getattr(layer, "groups", 1)


def _towers(groups, filters):
    return "across" if groups == 1 else f"{groups} x {filters // groups}"


def _check_layout(checker, model, rows):
    _check_input(checker, model)
    names = [layer.name for layer in model.layers]
    total_neurons = 0
    for spec in paper.LAYERS:
        layer = inspection.layer_or_none(model, spec.name)
        if layer is None:
            checker.compare("layout", f"{spec.name} present", True, False)
            continue
        total_neurons += math.prod(layer.output.shape[1:])
        rows.append(_check_layer(checker, spec, layer, names))
    _check_totals(checker, model, total_neurons)


def _check_input(checker, model):
    input_shape = tuple(model.input_shape[1:])
    checker.compare(
        "layout",
        "input",
        (paper.INPUT_SIZE_STATED, paper.INPUT_SIZE_STATED, 3),
        input_shape,
        note=input_shape == (paper.INPUT_SIZE, paper.INPUT_SIZE, paper.INPUT_CHANNELS),
    )


def _paper_values(spec, layer):
    """One weight layer's output, kernel, stride, towers, params and neurons in the paper.

    fc8's follow the model's number of classes.
    """
    if spec.name == "fc8":
        classes = layer.units
        return dict(
            output=(classes,),
            kernel=f"{spec.kernel_depth}x{classes}",
            stride=spec.strides,
            towers="across",
            params=spec.kernel_depth * classes + classes,
            neurons=classes,
        )
    conv = spec.kind == "conv"
    return dict(
        output=spec.output_shape,
        kernel=spec.kernel_as_written if conv else f"{spec.kernel_depth}x{spec.filters}",
        stride=spec.strides,
        towers=_towers(spec.groups, spec.filters) if conv else "across",
        params=spec.params,
        neurons=spec.stated_neurons,
    )


def _model_values(spec, layer):
    """The same values as `_paper_values`, read from the model's layer."""
    out_shape = tuple(layer.output.shape[1:])
    kernel = tuple(layer.kernel.shape)
    if spec.kind == "conv":
        kernel_text = f"{kernel[0]}x{kernel[1]}x{kernel[2]}"
        stride = layer.strides[0]
    else:
        kernel_text = f"{kernel[0]}x{kernel[1]}"
        stride = 1
    return dict(
        output=out_shape,
        kernel=kernel_text,
        stride=stride,
        towers=_towers(_groups(layer), out_shape[-1]),
        params=layer.count_params(),
        neurons=math.prod(out_shape),
    )


def _check_layer(checker, spec, layer, names):
    """Checks one weight layer and what follows it; returns its row of the layer table."""
    expected, actual = _paper_values(spec, layer), _model_values(spec, layer)
    is_fc8 = spec.name == "fc8"
    row_checks = [
        checker.compare("layout", f"{spec.name} {key}", expected[key], actual[key])
        for key in ("output", "kernel", "stride", "towers", "params")
    ]
    row_checks.append(
        checker.compare(
            "layout",
            f"{spec.name} neurons",
            expected["neurons"],
            actual["neurons"],
            # conv1's stated count fits no input size; every other one fits exactly.
            note=spec.name == "conv1" and actual["output"] == spec.output_shape,
        )
    )
    row_checks.append(
        checker.compare(
            "layout",
            f"{spec.name} activation",
            "softmax" if is_fc8 else "relu",
            keras.activations.serialize(layer.activation) if is_fc8 else _activation_name(layer),
            # fc8 may return logits; the softmax is then in the loss.
            match=is_fc8 or _activation_name(layer) == "relu",
        )
    )
    row_checks += _check_followers(checker, spec, names)
    differs = actual["neurons"] != expected["neurons"]
    return dict(
        layer=spec.name,
        output=as_text(actual["output"]),
        neurons=as_text(actual["neurons"]),
        paper_neurons=as_text(expected["neurons"]) + ("*" if differs else ""),
        kernel=actual["kernel"],
        paper_kernel=expected["kernel"],
        towers=actual["towers"],
        paper_towers=expected["towers"],
        params=as_text(actual["params"]),
        paper_params=as_text(expected["params"]),
        check=max((c.status for c in row_checks), key=_SEVERITY.get),
    )


def _check_followers(checker, spec, names):
    """Checks that the LRN, pooling and dropout the paper puts after a layer follow it."""
    checks = []
    for step in spec.followed_by:
        if step in ("relu", "softmax"):
            continue
        index = names.index(spec.name) if spec.name in names else -1
        following = names[index + 1 : index + 3]
        topic = (
            "lrn"
            if step.startswith("lrn")
            else ("dropout" if step.startswith("dropout") else "layout")
        )
        checks.append(
            checker.compare(topic, f"{step} follows {spec.name}", True, step in following)
        )
    return checks


def _paper_order():
    """The paper's sequence of named layers, with the ReLU where the LRN's place depends on it.

    Section 3.3 normalises "after applying the ReLU nonlinearity" in conv1 and conv2, and
    CaffeNet (bvlc_reference_caffenet) pools before it normalises; every other ReLU is its
    layer's activation, which the layer's own check compares.
    """
    order = []
    for spec in paper.LAYERS:
        lrn = any(step.startswith("lrn") for step in spec.followed_by)
        order.append(spec.name)
        order += [s for s in spec.followed_by if s != "softmax" and (s != "relu" or lrn)]
    return order


def _model_order(model, paper_order):
    """The model's sequence in the terms of `paper_order`.

    The model's layers of the names in `paper_order`, in the model's order, and "relu"
    where `paper_order` shows one: after conv1 when conv1's activation is the ReLU or a
    ReLU layer comes right after it (and the same for conv2).
    """
    named = set(paper_order) - {"relu"}
    relu_after = {a for a, b in zip(paper_order, paper_order[1:]) if b == "relu"}
    order = []
    for layer in model.layers:
        if layer.name in named:
            order.append(layer.name)
        if order and order[-1] in relu_after and _is_relu(layer):
            order.append("relu")
    return order


def _is_relu(layer):
    if isinstance(layer, keras.layers.ReLU):
        return True
    return getattr(layer, "activation", None) is not None and _activation_name(layer) == "relu"


def _dropout_after_dense(order):
    """The order with each dropout that comes right before its fc layer moved after it."""
    order = list(order)
    for i in range(len(order) - 1):
        if order[i].startswith("dropout") and order[i + 1] == "fc" + order[i][len("dropout") :]:
            order[i], order[i + 1] = order[i + 1], order[i]
    return order


def _check_order(checker, model):
    """Checks the exact sequence conv -> ReLU -> LRN -> pool ... fc8 (topic "layout").

    A declared "layout" departure changes sizes, not this order: a variant departs from it
    only by what it declares, no LRN layers ("lrn") or dropout before fc6 and fc7 instead
    of after them, torchvision's order ("dropout").
    """
    expected = _paper_order()
    actual = _model_order(model, expected)
    if actual == expected:
        status = OK
    else:
        allowed, seen = expected, actual
        if "lrn" in checker.departures:
            allowed = [s for s in allowed if not s.startswith("lrn") or s in actual]
        if "dropout" in checker.departures:
            seen = _dropout_after_dense(seen)
        status = DEPARTS if seen == allowed else FAIL
    checker.checks.append(Check("layout", ORDER, " ".join(expected), " ".join(actual), status))


def _check_totals(checker, model, total_neurons):
    """Checks the whole network: parameters, neurons, pooling and multiply-adds."""
    num_classes = getattr(inspection.layer_or_none(model, "fc8"), "units", paper.NUM_CLASSES)
    expected_total = paper.TOTAL_PARAMS + (num_classes - paper.NUM_CLASSES) * 4097
    checker.compare("layout", "total params", expected_total, model.count_params())
    checker.compare("layout", "total neurons", paper.STATED_NEURONS, total_neurons, note=True)
    for name in paper.POOL_LAYERS:
        layer = inspection.layer_or_none(model, name)
        actual = (layer.pool_size[0], layer.strides[0]) if layer is not None else None
        checker.compare(
            "layout", f"{name} size, stride", (paper.POOL_SIZE, paper.POOL_STRIDE), actual
        )
    macs = sum(inspection.multiply_adds(model).values())
    checker.compare(
        "layout",
        "forward multiply-adds",
        "about 724M",
        f"{macs / 1e6:.0f}M",
        match=abs(macs - 724e6) < 5e6,
        note=True,
    )


def _activation_name(layer):
    return getattr(layer.activation, "__name__", str(layer.activation))


def _check_lrn(checker, model):
    expected = dict(k=paper.LRN_K, n=paper.LRN_N, alpha=paper.LRN_ALPHA, beta=paper.LRN_BETA)
    for name in paper.LRN_LAYERS:
        layer = inspection.layer_or_none(model, name)
        if not isinstance(layer, layers_lib.LocalResponseNormalization):
            checker.compare("lrn", f"{name} present", True, False)
            continue
        actual = dict(
            k=layer.bias, n=2 * layer.depth_radius + 1, alpha=layer.alpha, beta=layer.beta
        )
        for key, value in expected.items():
            checker.compare(
                "lrn",
                f"{name} {key}",
                value,
                actual[key],
                match=math.isclose(value, actual[key], rel_tol=1e-6),
            )


def _check_dropout(checker, model):
    for name in paper.DROPOUT_LAYERS:
        layer = inspection.layer_or_none(model, name)
        checker.compare("dropout", f"{name} rate", paper.DROPOUT_RATE, getattr(layer, "rate", None))


def _check_decay(checker, model):
    expected = paper.WEIGHT_DECAY / 2
    for spec in paper.LAYERS:
        layer = inspection.layer_or_none(model, spec.name)
        regularizer = getattr(layer, "kernel_regularizer", None)
        actual = getattr(regularizer, "l2", None)
        checker.compare(
            "decay",
            f"{spec.name} L2 on kernel (= decay/2)",
            expected,
            actual,
            match=actual is not None and math.isclose(actual, expected, rel_tol=1e-6),
        )


def _check_init(checker, model):
    for spec in paper.LAYERS:
        layer = inspection.layer_or_none(model, spec.name)
        if layer is None:
            continue
        kernel = keras.ops.convert_to_numpy(layer.kernel).astype("float64")
        n = kernel.size
        std, mean = float(kernel.std()), float(kernel.mean())
        expected = paper.INIT_WEIGHT_STDDEV
        # Sampling error of the std of n Gaussian draws is about std / sqrt(2n).
        checker.compare(
            "init",
            f"{spec.name} weight std",
            expected,
            round(std, 5),
            match=abs(std - expected) < 6 * expected / math.sqrt(2 * n),
        )
        checker.compare(
            "init",
            f"{spec.name} weight mean",
            0.0,
            round(mean, 6),
            match=abs(mean) < 6 * expected / math.sqrt(n),
        )
        bias = keras.ops.convert_to_numpy(layer.bias)
        actual = float(bias[0]) if (bias == bias[0]).all() else "varies"
        checker.compare("init", f"{spec.name} bias", spec.bias_init, actual)


def check_model(model, variant="paper", check_init=True):
    """Compares a model with the paper.

    Args:
        model: a model built by `AlexNet` (or loaded from one), with include_top.
        variant: the variant it claims to be; its declared departures are allowed.
        check_init: whether to check the initial weights (only meaningful before training).

    Returns:
        (checks, layer_rows): a list of `Check` (the first, item `ORDER`, is the order of
        the layers) and one summary dict per weight layer.
    """
    checker = _Checker(variants.VARIANTS[variant].departures)
    rows = []
    _check_order(checker, model)
    _check_layout(checker, model, rows)
    _check_lrn(checker, model)
    _check_dropout(checker, model)
    _check_decay(checker, model)
    if check_init:
        _check_init(checker, model)
    return checker.checks, rows
