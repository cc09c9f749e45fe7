"""Any AlexNet compared with the paper: its layers matched by order and kind, not by name.

The five convolutions are the first five conv records, fc6, fc7 and fc8 the last three
dense ones (convolutions after the fifth stand for them in a network written fully
convolutional); the pools, normalisations and dropouts are placed by the weight layers
around them. Each of the paper's features is then present as the paper has it, present
with other numbers (which, and what that changes), replaced, missing, or cannot be told
from the file; layers the paper does not have are "added". `compare` does this against
any `network.Network` taken as the reference: the paper's, or a variant's.
"""

import dataclasses
import math

from keras_alexnet.models import variants
from keras_alexnet.paper import network as net
from keras_alexnet.paper import numbers as paper

SAME, OTHER, REPLACED, MISSING, ADDED, UNKNOWN = (
    "as the paper",
    "other numbers",
    "replaced",
    "missing",
    "added",
    "cannot tell",
)
DEPARTURES = (OTHER, REPLACED, MISSING, ADDED)
CONVS = tuple(spec.name for spec in paper.LAYERS if spec.kind == "conv")
DENSES = tuple(spec.name for spec in paper.LAYERS if spec.kind == "dense")
FEATURES = ("input", *paper.LAYER_ORDER)
_NORM_NAMES = {"batchnorm": "BatchNormalization", "lrn": "LRN"}


@dataclasses.dataclass
class Finding:
    """One of the paper's features in a network, or a layer the paper does not have.

    Attributes:
        feature: conv1 ... fc8, lrn1, pool1, dropout6, input, or "added" for another layer.
        status: SAME, OTHER, REPLACED, MISSING, ADDED or UNKNOWN.
        model: the network's layer, as text ("" when missing).
        reference: the reference's (the paper's) layer, as text.
        differences: what differs, each as "groups 1 instead of 2".
        effects: what that changes: "+307,200 parameters", "output 56x56x96 instead of ...".
        cannot_tell: the numbers the file does not hold.
    """

    feature: str
    status: str
    model: str = ""
    reference: str = ""
    differences: tuple = ()
    effects: tuple = ()
    cannot_tell: tuple = ()

    @property
    def text(self):
        """The finding as one sentence: "conv2: groups 1 instead of 2: +307,200 parameters"."""
        what = "; ".join(self.differences) or self.status
        line = f"{self.feature}: {what}"
        if self.effects:
            line += ": " + ", ".join(self.effects)
        if self.cannot_tell:
            line += " (cannot tell from the file: " + ", ".join(self.cannot_tell) + ")"
        return line


@dataclasses.dataclass
class Comparison:
    """A network against a reference: the findings, the layers matched, the totals."""

    network: object
    reference: object
    findings: list
    slots: dict
    totals: dict

    @property
    def departures(self):
        return [f for f in self.findings if f.status in DEPARTURES]


def as_text(value):
    if value is None:
        return "?"
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _pad_text(padding):
    if padding is None:
        return None
    if len(set(padding)) == 1:
        return str(padding[0])
    if padding[:2] == padding[2:]:  # the same before and after in rows and columns
        return f"{padding[0]}/{padding[1]}"
    return "/".join(str(p) for p in padding)


def describe(record, slot=""):
    """A layer record as the report's tables show it: "96 11x11/4 pad 0, 55x55x96"."""
    if record is None:
        return ""
    out = as_text(record.output_shape) if record.output_shape else "?"
    if record.kind == "conv":
        towers = f", {record.groups} towers" if record.groups and record.groups > 1 else ""
        k, s = as_text(record.kernel), as_text(record.stride[0] if record.stride else None)
        return f"{record.filters} {k}/{s} pad {_pad_text(record.padding) or '?'}{towers} -> {out}"
    if record.kind == "dense":
        return f"{as_text(record.in_channels)} -> {record.filters}"
    if record.kind == "pool":
        if record.subkind == "global":
            return f"global pooling ({record.type}) -> {out}"
        k, s = as_text(record.kernel), as_text(record.stride[0] if record.stride else None)
        return f"{record.subkind} {k}/{s} pad {_pad_text(record.padding) or '?'} -> {out}"
    if record.kind == "norm":
        if record.lrn:
            lrn = record.lrn
            return f"LRN n={lrn['n']} k={lrn['k']:g} alpha={lrn['alpha']:g} beta={lrn['beta']:g}"
        return _NORM_NAMES.get(record.subkind, record.subkind or record.type)
    if record.kind == "dropout":
        return f"dropout {as_text(record.rate)}"
    return f"{record.type} {record.name}".strip()


# ------------------------------------------------------------------------------------------
# Finding the paper's layers by order and kind
# ------------------------------------------------------------------------------------------


def _as_dense(record):
    """A convolution that stands for a fully connected layer, as that dense layer."""
    features = None
    if record.in_channels and record.kernel:
        features = record.in_channels * math.prod(record.kernel)
    return dataclasses.replace(
        record, kind="dense", in_channels=features, output_shape=(record.filters,)
    )


def find_slots(network):
    """The paper's layers in a network, by order and kind.

    Returns:
        (slots, extras, segments): {feature: (index, record)} of the layers found;
        [(index, record, place)] of the layers the paper does not have, with where they
        are ("after conv3"); {weight layer: [(index, record)]} what follows each.
    """
    records = [r for r in network.records if r.kind not in ("flatten", "preprocess")]
    conv_idx = [i for i, r in enumerate(records) if r.kind == "conv"]
    dense_idx = [i for i, r in enumerate(records) if r.kind == "dense"]
    if len(dense_idx) < 3 and len(conv_idx) > 5:
        take = conv_idx[5:][-(3 - len(dense_idx)) :]
        for i in take:
            records[i] = _as_dense(records[i])
        conv_idx = [i for i in conv_idx if i not in take]
        dense_idx = sorted(dense_idx + take)
    slots, extras = {}, []
    for name, i in zip(CONVS, conv_idx[:5]):
        slots[name] = (i, records[i])
    for name, i in zip(DENSES[3 - min(3, len(dense_idx)) :], dense_idx[-3:]):
        slots[name] = (i, records[i])
    weights = sorted((i, name) for name, (i, _) in slots.items())
    extras += [(i, records[i], "") for i in conv_idx[5:] + dense_idx[:-3]]
    weights_at = {i for i in conv_idx + dense_idx}
    segments = {}
    for k, (i, name) in enumerate(weights):
        end = weights[k + 1][0] if k + 1 < len(weights) else len(records)
        segments[name] = [(j, records[j]) for j in range(i + 1, end) if j not in weights_at]
    _place_in_segments(network, slots, extras, segments)
    return slots, extras, segments


def _place_in_segments(network, slots, extras, segments):
    """Puts pools, norms and dropouts in their slots; the others are extras."""
    used = set()
    for conv, pool, norm in (("conv1", "pool1", "lrn1"), ("conv2", "pool2", "lrn2")):
        _take_pool(slots, segments.get(conv, []), pool, used)
        norms = [(j, r) for j, r in segments.get(conv, []) if r.kind == "norm"]
        if norms:
            slots[norm] = norms[0]
            used.add(norms[0][0])
    _take_pool(slots, segments.get("conv5", []), "pool5", used)
    dropouts = {
        s: [(j, r) for j, r in segments.get(s, []) if r.kind == "dropout"] for s in segments
    }
    before = bool(dropouts.get("conv5")) and not dropouts.get("fc7")  # torchvision's order
    for name, seg in (("dropout6", "fc6"), ("dropout7", "fc7")):
        found = dropouts.get({"fc6": "conv5", "fc7": "fc6"}[seg] if before else seg)
        if found:
            j, r = found[0]
            slots[name] = (j, dataclasses.replace(r, type=r.type + (" before" if before else "")))
            used.add(j)
    owners = list(segments)
    for k, (owner, seg) in enumerate(segments.items()):
        place = f"between {owner} and {owners[k + 1]}" if k + 1 < len(owners) else f"after {owner}"
        for j, r in seg:
            if j not in used and r.kind in ("pool", "norm", "dropout", "conv", "dense", "unknown"):
                extras.append((j, r, place))
    extras.sort(key=lambda e: e[0])


def _take_pool(slots, segment, name, used):
    pools = [(j, r) for j, r in segment if r.kind == "pool"]
    maxes = [(j, r) for j, r in pools if r.subkind == "max"]
    chosen = (maxes or pools)[:1]
    if chosen:
        slots[name] = chosen[0]
        used.add(chosen[0][0])


def _activation(record, segment):
    """A weight layer's activation: fused, or the first activation layer after it."""
    if record.activation:
        return record.activation
    for _, r in segment:
        if r.kind == "activation":
            return r.subkind
        if r.kind in ("pool", "dropout", "conv", "dense"):
            break
    return record.activation  # "" none, None cannot tell


# ------------------------------------------------------------------------------------------
# Comparing each feature
# ------------------------------------------------------------------------------------------


def _differ(name, mine, theirs, unknown, diffs, fmt=as_text):
    if mine is None:
        unknown.append(name)
    elif theirs is not None and mine != theirs:
        diffs.append(f"{name} {fmt(mine)} instead of {fmt(theirs)}")


def _delta(label, mine, theirs):
    if mine is None or theirs is None or mine == theirs:
        return []
    return [f"{mine - theirs:+,} {label}"]


def _shape_effect(mine, theirs):
    if mine is None or theirs is None or tuple(mine) == tuple(theirs):
        return []
    return [f"output {as_text(tuple(mine))} instead of {as_text(tuple(theirs))}"]


def _weight_finding(name, rec, ref, act, ref_act, order_known):
    diffs, unknown = [], []
    if rec.kind == "conv" and ref.kind == "conv":
        _differ("filters", rec.filters, ref.filters, unknown, diffs)
        _differ("kernel", rec.kernel, ref.kernel, unknown, diffs)
        _differ("stride", rec.stride, ref.stride, unknown, diffs, lambda s: as_text(s[0]))
        _differ("padding", rec.padding, ref.padding, unknown, diffs, _pad_text)
        if rec.groups is None:
            unknown.append("groups")
        elif rec.groups != ref.groups:
            diffs.append(
                f"no groups (1 instead of {ref.groups})"
                if rec.groups == 1
                else f"groups {rec.groups} instead of {ref.groups}"
            )
    else:
        label = "classes" if name == "fc8" else "units"
        _differ(label, rec.filters, ref.filters, unknown, diffs)
    if act is None:
        if order_known:
            unknown.append("activation")
    elif name == "fc8":
        if act not in ("", "softmax"):
            diffs.append(f"activation {act} instead of softmax")
    elif act != ref_act:
        diffs.append(f"activation {act or 'none'} instead of {ref_act}")
    effects = _delta("parameters", rec.params, ref.params)
    effects += _delta("multiply-adds", rec.multiply_adds, ref.multiply_adds)
    if rec.kind == "conv":
        effects += _shape_effect(rec.output_shape, ref.output_shape)
    if rec.kind == "dense" and rec.in_channels != ref.in_channels and rec.in_channels:
        effects.append(f"reads {rec.in_channels:,} features instead of {ref.in_channels:,}")
    return Finding(
        name,
        OTHER if diffs else SAME,
        describe(rec),
        describe(ref),
        tuple(diffs),
        tuple(effects),
        tuple(unknown),
    )


def _norm_finding(name, mine, ref, pool, act_after, order_known):
    """lrn1/lrn2: its constants, what replaced it, its place (after the ReLU, before the pool)."""
    rec, ref_rec = (mine or (None, None))[1], (ref or (None, None))[1]
    if ref_rec is None:
        return Finding(
            name,
            ADDED,
            describe(rec),
            "",
            (f"{describe(rec)} where the reference has none",),
            _delta("parameters", rec.params, 0),
        )
    if rec is None:
        return Finding(name, MISSING if order_known else UNKNOWN, "", describe(ref_rec))
    diffs = []
    if rec.subkind != "lrn" or not rec.lrn:
        kind = _NORM_NAMES.get(rec.subkind, rec.subkind or rec.type)
        effects = _delta("parameters", rec.params, 0)
        return Finding(
            name,
            REPLACED,
            describe(rec),
            describe(ref_rec),
            (f"{kind} instead of LRN",),
            tuple(effects),
        )
    for key in ("n", "k", "alpha", "beta"):
        if not math.isclose(rec.lrn[key], ref_rec.lrn[key], rel_tol=1e-6):
            diffs.append(f"{key} {rec.lrn[key]:g} instead of {ref_rec.lrn[key]:g}")
            if key == "alpha" and math.isclose(
                rec.lrn[key] * rec.lrn["n"], ref_rec.lrn[key], rel_tol=1e-6
            ):
                diffs[-1] += f" (alpha/n: {ref_rec.lrn[key]:g} divided by n)"
    if pool is not None and pool[0] < mine[0]:
        diffs.append(f"after pool{name[-1]} instead of before it (CaffeNet's order)")
    if act_after is not None and act_after > mine[0]:
        diffs.append("before the ReLU instead of after it")
    return Finding(name, OTHER if diffs else SAME, describe(rec), describe(ref_rec), tuple(diffs))


def _pool_finding(name, mine, ref, order_known):
    rec, ref_rec = (mine or (None, None))[1], (ref or (None, None))[1]
    if rec is None:
        return Finding(name, MISSING if order_known else UNKNOWN, "", describe(ref_rec))
    diffs, unknown = [], []
    status = OTHER
    if rec.subkind != "max":
        status = REPLACED
        diffs.append(f"{describe(rec).split(' ->')[0]} instead of max pooling")
    else:
        _differ("window", rec.kernel, ref_rec.kernel, unknown, diffs)
        _differ("stride", rec.stride, ref_rec.stride, unknown, diffs, lambda s: as_text(s[0]))
        _differ("padding", rec.padding, ref_rec.padding, unknown, diffs, _pad_text)
    effects = _shape_effect(rec.output_shape, ref_rec.output_shape)
    return Finding(
        name,
        status if diffs else SAME,
        describe(rec),
        describe(ref_rec),
        tuple(diffs),
        tuple(effects),
        tuple(unknown),
    )


def _dropout_finding(name, mine, ref, dropout_known):
    rec, ref_rec = (mine or (None, None))[1], (ref or (None, None))[1]
    fc = "fc" + name[-1]
    if rec is None:
        return Finding(name, MISSING if dropout_known else UNKNOWN, "", describe(ref_rec))
    diffs = []
    if rec.rate is not None and not math.isclose(rec.rate, ref_rec.rate):
        diffs.append(f"rate {rec.rate:g} instead of {ref_rec.rate:g}")
    mine_before, ref_before = rec.type.endswith("before"), ref_rec.type.endswith("before")
    if mine_before != ref_before:
        where = ("before", "after") if mine_before else ("after", "before")
        diffs.append(f"{where[0]} {fc} instead of {where[1]} it")
    return Finding(name, OTHER if diffs else SAME, describe(rec), describe(ref_rec), tuple(diffs))


def _input_finding(network, reference):
    shape = network.input_shape
    ref = reference.input_shape
    if not shape:
        return Finding("input", UNKNOWN, "", as_text(ref), cannot_tell=("input size",))
    # 224 is the size the paper states, 227 the size that gives its 55x55 conv1 maps.
    image = len(shape) == 3
    fits = tuple(shape) == tuple(ref) or (image and shape[0] == shape[1] and shape[0] in (224, 227))
    what = "" if image else " (not an image: no height, width and channels)"
    diffs = (
        () if fits else (f"input {as_text(tuple(shape))}{what} instead of {as_text(tuple(ref))}",)
    )
    return Finding(
        "input", OTHER if diffs else SAME, as_text(tuple(shape)), as_text(tuple(ref)), diffs
    )


def _extra_finding(record, place):
    what = describe(record)
    if record.kind == "unknown":
        return Finding("unknown", UNKNOWN, what, "", (f"{what} {place}".strip(),))
    identity = (
        record.kind == "pool" and record.input_shape and record.input_shape == record.output_shape
    )
    note = " (the identity at this size)" if identity else ""
    effects = _delta("parameters", record.params, 0)
    return Finding("added", ADDED, what, "", (f"{what} {place}{note}".strip(),), tuple(effects))


def totals(network, slots):
    """The network's parameters, multiply-adds and neurons (None where it cannot tell)."""
    weights = [slots[n][1] for n in CONVS + DENSES if n in slots]
    weights += [r for r in network.records if r.kind in ("conv", "dense") and r not in weights]
    macs = [r.multiply_adds for r in weights]
    outs = [r.output_shape for r in weights]
    return dict(
        params=network.params,
        multiply_adds=None if None in macs else sum(macs),
        neurons=None if None in outs else sum(math.prod(o) for o in outs),
    )


def compare(network, reference):
    """A network's findings against a reference network (the paper's, by default).

    Args:
        network: the `network.Network` to judge.
        reference: the `network.Network` it is judged against (`network.reference()`).

    Returns:
        A `Comparison`.
    """
    slots, extras, segments = find_slots(network)
    ref_slots, _, ref_segments = find_slots(reference)
    findings = [_input_finding(network, reference)]
    for name in FEATURES[1:]:
        mine, ref = slots.get(name), ref_slots.get(name)
        if name.startswith(("conv", "fc")):
            if ref is None:
                continue
            if mine is None:
                findings.append(Finding(name, MISSING, "", describe(ref[1])))
                continue
            act = _activation(mine[1], segments.get(name, []))
            ref_act = _activation(ref[1], ref_segments.get(name, []))
            findings.append(
                _weight_finding(name, mine[1], ref[1], act, ref_act, network.order_known)
            )
        elif name.startswith("lrn"):
            if mine is None and ref is None:
                continue
            conv = "conv" + name[-1]
            act_after = next((j for j, r in segments.get(conv, []) if r.kind == "activation"), None)
            if slots.get(conv) and slots[conv][1].activation:
                act_after = None
            findings.append(
                _norm_finding(
                    name, mine, ref, slots.get("pool" + name[-1]), act_after, network.order_known
                )
            )
        elif name.startswith("pool"):
            findings.append(_pool_finding(name, mine, ref, network.order_known))
        else:
            if ref is None and mine is not None:
                findings.append(_extra_finding(mine[1], f"as {name}"))
            elif ref is not None:
                findings.append(_dropout_finding(name, mine, ref, network.dropout_known))
    findings += [_extra_finding(r, place) for _, r, place in extras]
    return Comparison(network, reference, findings, slots, totals(network, slots))


def closest_variant(network):
    """The registered variant with the fewest departures, and its `Comparison`.

    Ties go to the earlier variant of `variants.VARIANTS` (the paper's first).
    """
    best = None
    for name in variants.VARIANTS:
        comparison = compare(network, net.reference(name))
        if best is None or len(comparison.departures) < len(best[1].departures):
            best = (name, comparison)
    return best
