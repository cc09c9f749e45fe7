"""What `python -m keras_alexnet.verify` does: the model read, compared, the report made.

A model this package built (its layers named conv1 ... fc8, lrn1, pool1, ...) gets the full
report of `report` and `conformance`, and a short section from the reading by order and
kind; any other AlexNet (a Keras file of any layers, ONNX, a PyTorch state dict) gets the
report of `network_report`. The HTML page (`html_report`) is made for both, with the
networks to compare beside it.

Exit status: for a model of this package, 1 when a check fails (as before); for any other
AlexNet, 1 when it departs from the paper anywhere (the report names where), 0 when it
matches it; 2 when a model cannot be built or read (the tool's own error).
"""

import dataclasses

from keras_alexnet import errors
from keras_alexnet.models import inspection
from keras_alexnet.models import variants
from keras_alexnet.paper import conformance
from keras_alexnet.paper import html_report
from keras_alexnet.paper import network
from keras_alexnet.paper import network_report
from keras_alexnet.paper import numbers as paper
from keras_alexnet.paper import readers
from keras_alexnet.paper import report


@dataclasses.dataclass
class Result:
    """The report's text (or page) and the tool's exit status."""

    text: str
    status: int
    summary: str


def is_own(model):
    """Whether a Keras model has this package's layer names (conv1 ... fc8): today's report."""
    return all(inspection.layer_or_none(model, spec.name) is not None for spec in paper.LAYERS)


def read(path, trust=False):
    """(network, keras model or None) of a model file."""
    try:
        if readers.is_keras_file(path):
            model = readers.load_keras(path, trust)
            return readers.read_keras(model, path.rsplit("/", 1)[-1]), model
        return readers.read_file(path, trust), None
    except errors.InputError:
        raise
    except (ValueError, AttributeError, TypeError, KeyError, IndexError) as error:
        if isinstance(error, ValueError) and not readers.is_keras_file(path):
            raise  # read_file's own: an extension it does not read
        # A model built oddly (a Sequential of no layers, a node without its attributes).
        raise errors.InputError(
            f"{path}: its layers cannot be read as a network ({type(error).__name__}: "
            f"{' '.join(str(error).split())[:150]})"
        ) from error


def _analyse(net, path=None):
    """`network_report.analyse` of a network; for one read from a file, a network too odd
    to compare (sizes or layers the report cannot put beside the paper's) is named in one
    line."""
    try:
        return network_report.analyse(net)
    except (ArithmeticError, TypeError, KeyError, IndexError, AttributeError, ValueError) as error:
        if path is None or path in variants.VARIANTS:
            raise
        raise errors.InputError(
            f"{path}: its layers cannot be compared with the paper's ({type(error).__name__}: "
            f"{' '.join(str(error).split())[:150]})"
        ) from error


def _column(item, trust):
    if item in variants.VARIANTS:
        return network.reference(item)
    return read(item, trust)[0]


def verify(model_path, variant, num_classes, input_size, fmt, compare=(), trust=False):
    """The report of a model file (or of a new model of the variant) and the exit status.

    Args:
        model_path: a model file, or None to build the variant.
        variant: the variant to build, or that a model of this package claims to be.
        num_classes: fc8's classes of a model to build.
        input_size: the input side of a model to build.
        fmt: "text", "markdown", "json" or "html".
        compare: variant names or model files to put beside it (HTML only).
        trust: load Keras files with Lambda layers (their code runs).

    Raises:
        ValueError, OSError: when a model cannot be built or read.
    """
    model = None
    if model_path:
        net, model = read(model_path, trust)
    else:
        model = report.model_to_check(None, variant, num_classes, input_size)
        net = readers.read_keras(model, f"variant {variant!r}")
    analysis = _analyse(net, model_path)
    columns = [_analyse(_column(item, trust), item) for item in compare]
    own = model is not None and is_own(model)
    if own:
        checks, rows = conformance.check_model(model, variant, check_init=not model_path)
        failed = any(c.status == conformance.FAIL for c in checks)
        text = report.render(variant, model, checks, rows, "text" if fmt == "html" else fmt)
        status = 1 if failed else 0
        if fmt in ("text", "markdown"):
            lines = text.split("\n")
            text = "\n".join([*lines[:-1], *_order_and_kind(analysis), lines[-1]])
        summary = text.split("\n")[-1] if fmt != "json" else network_report.summary(analysis)
    else:
        text = network_report.render(analysis, "text" if fmt == "html" else fmt)
        status = 1 if analysis.paper.departures else 0
        summary = network_report.summary(analysis)
    if fmt == "html":
        text = html_report.render([analysis, *columns])
    return Result(text, status, summary)


def _order_and_kind(analysis):
    lines = ["", "Read by order and kind, as any AlexNet: " + network_report.summary(analysis)]
    lines += [f"- {f.text}" for f in analysis.paper.departures]
    return [*lines, ""]
