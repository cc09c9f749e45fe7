"""The conformance report: does the model match the paper, layer by layer?

    python -m keras_alexnet.verify [--variant=paper] [--input_size=227] [--format=text]
    python -m keras_alexnet.verify --model=path/to/model.keras --variant=paper

The tool builds (or loads) the model, runs the checks of `conformance` on it and prints
what `render` makes of them, as text, markdown or JSON: the layer order, a table of the
weight layers, the settings and the checks that differ, and the paper's own
contradictions. The exit status is 1 when any check fails, 2 when the model cannot be
built or loaded.
"""

import dataclasses
import json

import keras

from keras_alexnet.models import alexnet as model_lib
from keras_alexnet.models import loading
from keras_alexnet.models import variants
from keras_alexnet.paper import conformance
from keras_alexnet.paper import network_report
from keras_alexnet.paper import numbers as paper

# The layer table's columns: (header, key of a layer row).
_LAYER_COLUMNS = (
    ("layer", "layer"),
    ("output", "output"),
    ("neurons", "neurons"),
    ("paper", "paper_neurons"),
    ("kernel", "kernel"),
    ("paper", "paper_kernel"),
    ("towers", "towers"),
    ("paper", "paper_towers"),
    ("params", "params"),
    ("paper", "paper_params"),
    ("check", "check"),
)


def render(variant, model, checks, rows, fmt="text"):
    """Formats the report as "text", "markdown" or "json".

    The layer order is reported on its own (a line of the text, "order" in the JSON); the
    counts are those of the other checks, and any FAIL, the order's too, fails the report.
    """
    order = next((c for c in checks if c.item == conformance.ORDER), None)
    passed = not any(c.status == conformance.FAIL for c in checks)
    checks = [c for c in checks if c is not order]
    counts = {
        s: sum(c.status == s for c in checks)
        for s in (conformance.OK, conformance.DEPARTS, conformance.NOTE, conformance.FAIL)
    }
    if fmt == "json":
        return _render_json(variant, model, order, checks, rows, counts, passed)
    return _render_text(
        variant, model, order, checks, rows, counts, passed, markdown=fmt == "markdown"
    )


def _render_json(variant, model, order, checks, rows, counts, passed):
    spec = variants.VARIANTS[variant]
    return json.dumps(
        dict(
            variant=variant,
            source=spec.source,
            input_shape=list(model.input_shape[1:]),
            params=model.count_params(),
            declared_departures=list(spec.departures),
            layers=rows,
            order=dataclasses.asdict(order) if order else None,
            checks=[dataclasses.asdict(c) for c in checks],
            discrepancies=[dict(topic=t, text=x) for t, x in paper.DISCREPANCIES],
            counts=counts,
            passed=passed,
        ),
        indent=1,
    )


def _render_text(variant, model, order, checks, rows, counts, passed, markdown):
    spec = variants.VARIANTS[variant]
    summary = (
        f"{len(checks)} checks: {counts[conformance.OK]} ok, "
        f"{counts[conformance.DEPARTS]} departs (declared), "
        f"{counts[conformance.NOTE]} notes, {counts[conformance.FAIL]} FAIL"
    )
    if order is not None and order.status == conformance.FAIL:
        summary += "; order FAIL"
    layer_rows = [[r[key] for _, key in _LAYER_COLUMNS] for r in rows]
    title = "#### " if markdown else ""
    parts = [
        f"{title}AlexNet conformance report: variant {variant!r}, input "
        f"{conformance.as_text(tuple(model.input_shape[1:]))}, {model.count_params():,} parameters",
        f"Paper: {paper.CITATION}",
        f"Variant source: {spec.source}",
        "Declared departures from the paper: " + (", ".join(spec.departures) or "none"),
        *([_order_line(order)] if order else []),
        "",
        f"{title}Layers (* the paper's stated count differs; see the discrepancies below)",
        network_report.table([header for header, _ in _LAYER_COLUMNS], layer_rows, markdown),
        "",
        f"{title}Settings and checks (layout checks that passed are summarised above)",
        network_report.table(
            ["topic", "item", "paper", "model", "check"], _setting_rows(checks, rows), markdown
        ),
        "",
        f"{title}Where the paper is ambiguous or contradicts itself, and where others differ",
    ]
    parts += [f"- {topic}: {text}" for topic, text in paper.DISCREPANCIES]
    parts += ["", ("PASS" if passed else "FAIL") + f": {summary}"]
    return "\n".join(parts)


def _order_line(order):
    line = f"order: {order.actual} {order.status}"
    return line if order.status == conformance.OK else f"{line} (the paper's: {order.expected})"


def _setting_rows(checks, rows):
    """Every check but the passed layout checks of a layer, which the layer table shows."""
    return [
        [c.topic, c.item, c.expected, c.actual, c.status]
        for c in checks
        if not c.item.startswith(tuple(r["layer"] + " " for r in rows))
        or c.status != conformance.OK
        or c.topic != "layout"
    ]


def model_to_check(model_path, variant, num_classes, input_size):
    """The model the report checks: a saved one, or a new AlexNet of the variant.

    Args:
        model_path: a saved .keras model, or None to build one.
        variant: the variant to build (from `variants.VARIANTS`).
        num_classes: fc8's classes of the model to build.
        input_size: the input height and width of the model to build.

    Returns:
        The `keras.Model`; a new one is built with the random seed 0, so that its
        initialisation checks are reproducible.

    Raises:
        ValueError, OSError: when the model cannot be built or loaded.
    """
    if model_path:
        return loading.load_keras(model_path)
    keras.utils.set_random_seed(0)
    return model_lib.AlexNet(num_classes, variant=variant, input_shape=(input_size, input_size, 3))
