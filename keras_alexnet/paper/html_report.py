"""The conformance report as one self-contained HTML page (inline CSS and SVG, nothing fetched).

Each network is a box: its drawing in the manner of the paper's Figure 2 (a box per
layer, its height the maps' side and its width their depth, two towers where the layer
has groups and one stream where it does not, each with its size and kernel), its layers
against the paper's, each status in colour, and its totals. The model checked spans the
page; the networks it is compared with sit below it, side by side where they fit. Below
them: the departures, what the file cannot tell, and the places where the paper
contradicts itself.
"""

import html
import math

from keras_alexnet.paper import matching
from keras_alexnet.paper import network_report
from keras_alexnet.paper import numbers as paper

COLOURS = {
    matching.SAME: ("#1b5e20", "#e8f5e9"),
    matching.OTHER: ("#8a4b00", "#fff3e0"),
    matching.REPLACED: ("#4a148c", "#f3e5f5"),
    matching.MISSING: ("#b71c1c", "#ffebee"),
    matching.ADDED: ("#0d47a1", "#e3f2fd"),
    matching.UNKNOWN: ("#424242", "#eeeeee"),
}

# The model checked spans the page (its drawing and totals beside its layers where both
# fit); the networks it is compared with sit below it, side by side as many as fit at
# 440 px or more each (two at 1280 px, three at 1920). Table cells wrap between words
# only: a number, a status or a heading is never broken, and a table wider than its box
# scrolls instead of being cut off.
_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:18px;color:#222}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:18px 0 6px}
h3{font-size:14px;margin:12px 0 4px}
.verdict{font-weight:600;margin:6px 0 12px}
.columns{display:flex;flex-direction:column;gap:14px}
.references{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,440px),1fr));
gap:14px;align-items:start}
.column{min-width:0;border:1px solid #ccc;border-radius:6px;padding:8px}
.split{display:flex;flex-wrap:wrap;gap:0 24px;align-items:flex-start}
.split>.figure{flex:1 1 400px;min-width:0}.split>.layers{flex:1.6 1 520px;min-width:0}
.column h2{margin-top:0}svg{width:100%;max-width:760px;height:auto;display:block}
.table{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:12px}
td,th{border-bottom:1px solid #e0e0e0;padding:2px 6px 2px 4px;text-align:left;vertical-align:top}
.status{font-weight:600;border-radius:3px;padding:0 3px;white-space:nowrap}
.nowrap{white-space:nowrap}
ul{margin:4px 0;padding-left:20px}.small{font-size:12px;color:#555}
"""


def _e(text):
    return html.escape(str(text))


def _arrows(text):
    """The text escaped, its "->" kept on one line (a line may break after a hyphen)."""
    return _e(text).replace("-&gt;", '<span class="nowrap">-&gt;</span>')


def _status(status):
    fg, bg = COLOURS[status]
    return f'<span class="status" style="color:{fg};background:{bg}">{_e(status)}</span>'


def _stages(analysis):
    """[(label, record or None, kind, status)] of the drawing, input to fc8."""
    slots = analysis.paper.slots
    status = {f.feature: f.status for f in analysis.paper.findings}
    stages = []
    for name in matching.CONVS + matching.DENSES:
        record = slots.get(name, (None, None))[1]
        pool = slots.get("pool" + name[-1], (None, None))[1] if name.startswith("conv") else None
        norm = slots.get("lrn" + name[-1], (None, None))[1] if name.startswith("conv") else None
        stages.append((name, record, pool, norm, status.get(name, matching.MISSING)))
    return stages


def draw(analysis, width=560):
    """The network drawn from its own shapes, as an inline SVG element."""
    stages = _stages(analysis)
    top, mid = 30, 130
    parts, x = [], 24
    lowest = 200  # the lowest line of text: conv1's "LRN pool" under its 55x55 maps
    shape = analysis.network.input_shape
    if shape:
        side = _side(shape[0])
        parts.append(_box(x, mid - side / 2, 10, side, "#bbb", "input", "input"))
        parts.append(_label(x + 5, mid + side / 2 + 14, matching.as_text(tuple(shape[:2]))))
        x += 46
    for name, record, pool, norm, status in stages:
        fg, bg = COLOURS[status]
        if record is None:
            parts.append(_label(x + 8, mid, f"{name}?", fg))
            x += 34
            continue
        out = record.output_shape or ()
        if record.kind == "conv":
            side = _side(out[0]) if out else 60
            depth = 6 + 2.2 * math.sqrt(record.filters or 1)
            groups = record.groups or 1
            if groups > 1:
                half = (side - 6) / 2
                for g in range(groups if groups == 2 else 1):
                    y = mid - side / 2 + g * (half + 6)
                    parts.append(_box(x, y, depth, half, fg, name, f"{name} tower {g + 1}", bg))
                towers = f"{groups}x{record.filters // groups}"
            else:
                parts.append(_box(x, mid - side / 2, depth, side, fg, name, name, bg))
                towers = str(record.filters)
            kernel = matching.as_text(record.kernel) if record.kernel else "?"
            stride = f"/{record.stride[0]}" if record.stride else ""
            parts.append(_label(x + depth / 2, top - 14, name, fg, bold=True))
            parts.append(_label(x + depth / 2, top - 2, f"{kernel}{stride}"))
            size = matching.as_text(out[:2]) if out else "?"
            parts.append(_label(x + depth / 2, mid + side / 2 + 14, size))
            parts.append(_label(x + depth / 2, mid + side / 2 + 26, towers))
            extra = ("LRN " if norm is not None and norm.subkind == "lrn" else "") + (
                "BN " if norm is not None and norm.subkind == "batchnorm" else ""
            )
            extra += "pool" if pool is not None else ""
            parts.append(_label(x + depth / 2, mid + side / 2 + 38, extra.strip(), "#666"))
            lowest = max(lowest, mid + side / 2 + 38)
            x += depth + 30
        else:
            height = 20 + 14 * math.log10(max(record.filters or 1, 1))
            parts.append(_box(x, mid - height / 2, 8, height, fg, name, name, bg))
            parts.append(_label(x + 4, top - 14, name, fg, bold=True))
            parts.append(_label(x + 4, mid + height / 2 + 14, str(record.filters)))
            x += 42
    total = max(x, width // 3)
    return (
        f'<svg class="drawing" viewBox="0 0 {total:.0f} {lowest + 8:.0f}" '
        f'role="img" aria-label="{_e(analysis.network.name)}">' + "".join(parts) + "</svg>"
    )


def _side(size):
    return 16 + 1.6 * min(size or 0, 60)


def _box(x, y, w, h, colour, layer, title, fill="#f5f5f5"):
    return (
        f'<rect class="layer" data-layer="{_e(layer)}" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" '
        f'height="{h:.1f}" fill="{fill}" stroke="{colour}" stroke-width="1.5">'
        f"<title>{_e(title)}</title></rect>"
    )


def _label(x, y, text, colour="#333", bold=False):
    weight = ' font-weight="700"' if bold else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="10" text-anchor="middle" fill="{colour}"'
        f"{weight}>{_e(text)}</text>"
    )


def _column(analysis, main):
    """A network's box: its drawing, verdict, layers against the paper's and totals; the
    model checked (`main`) also says what differs, its layers beside the drawing."""
    rows = []
    for f in analysis.paper.findings:
        what = "; ".join((*f.differences, *f.effects)) if f.status != matching.SAME else ""
        cell = f'<td class="small">{_e(what)}</td>' if main else ""
        rows.append(
            f'<tr title="{_e(what)}"><td>{_e(f.feature)}</td><td>{_arrows(f.model)}</td>'
            f"<td>{_status(f.status)}</td>{cell}</tr>"
        )
    head = "<th>what differs</th>" if main else ""
    network = analysis.network
    totals = "".join(
        f"<tr><td>{_e(a)}</td><td>{_e(b)}</td><td>{_e(c)}</td><td>{_e(d)}</td></tr>"
        for a, b, c, d in network_report.total_rows(analysis)
    )
    figure = f'{draw(analysis)}<div class="verdict">{_e(network_report.summary(analysis))}</div>'
    layers = (
        f'<div class="table"><table><tr><th>feature</th><th>layer</th><th>status</th>{head}'
        "</tr>" + "".join(rows) + "</table></div>"
    )
    totals = (
        '<h3>Totals</h3><div class="table"><table><tr><th></th><th>model</th><th>paper</th>'
        f"<th>difference</th></tr>{totals}</table></div>"
    )
    body = (
        f'<div class="split"><div class="figure">{figure}{totals}</div>'
        f'<div class="layers">{layers}</div></div>'
        if main
        else figure + layers + totals
    )
    return (
        f'<div class="column{" main" if main else ""}"><h2>{_e(network.name)}</h2>'
        f'<div class="small">{_e(network.source)}; {network.params:,} parameters</div>'
        f"{body}</div>"
    )


def _paper_column():
    rows = "".join(
        f"<tr><td>{_e(s.name)}</td><td>{_e(s.kernel_as_written)}</td>"
        f"<td>{s.stated_neurons:,}</td><td>{s.params:,}</td></tr>"
        for s in paper.LAYERS
    )
    return (
        "<h2>The paper's own numbers</h2><table><tr><th>layer</th><th>kernel as written</th>"
        f"<th>neurons stated</th><th>parameters</th></tr>{rows}</table>"
    )


def render(analyses):
    """The page: the first analysis is the model checked, the others its comparisons.

    Args:
        analyses: `network_report.Analysis` objects, one column each.

    Returns:
        The HTML text.
    """
    first = analyses[0]
    departures = (
        "".join(f"<li>{_e(f.text)}</li>" for f in first.paper.departures) or "<li>none</li>"
    )
    cannot = [*first.network.cannot_tell] + [
        f.text for f in first.paper.findings if f.status == matching.UNKNOWN
    ]
    cannot_html = "".join(f"<li>{_e(t)}</li>" for t in cannot) or "<li>nothing</li>"
    closest = "".join(f"<li>{_e(f.text)}</li>" for f in first.closest_comparison.departures)
    contradictions = "".join(
        f"<li><b>{_e(topic)}</b>: {_e(text)}</li>" for topic, text in paper.DISCREPANCIES
    )
    legend = " ".join(_status(s) for s in COLOURS)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>AlexNet conformance: {_e(first.network.name)}</title><style>{_CSS}</style>"
        f"</head><body><h1>Does {_e(first.network.name)} match the paper?</h1>"
        f'<div class="small">{_e(paper.CITATION)}</div>'
        f'<div class="verdict" id="verdict">{_e(network_report.summary(first))}</div>'
        f'<div class="small">{legend}</div><div class="columns">{_column(first, True)}'
        + (
            '<div class="references">' + "".join(_column(a, False) for a in analyses[1:]) + "</div>"
            if analyses[1:]
            else ""
        )
        + "</div>"
        f"<h2>Departures of {_e(first.network.name)} from the paper</h2><ul>{departures}</ul>"
        f"<h2>Closest variant: {_e(first.closest)}; what still differs</h2>"
        f"<ul>{closest or '<li>nothing</li>'}</ul>"
        f"<h2>What the report cannot tell from the file</h2><ul>{cannot_html}</ul>"
        f"{_paper_column()}"
        f"<h2>Where the paper is ambiguous or contradicts itself</h2><ul>{contradictions}</ul>"
        "</body></html>"
    )
