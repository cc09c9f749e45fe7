"""The conformance report of any AlexNet, as text, markdown or JSON.

`analyse` compares a `network.Network` with the paper and finds the closest variant;
`render` formats the result: the paper's features one per line (as the paper has them,
with other numbers, replaced, missing, or what the file cannot tell), the layers the
paper does not have, the totals against the paper's, the closest variant with what
still differs, and the paper's own contradictions. The verdict is the last line.
"""

import dataclasses
import json

from keras_alexnet.paper import matching
from keras_alexnet.paper import network as net
from keras_alexnet.paper import numbers as paper


@dataclasses.dataclass
class Analysis:
    """A network against the paper, and against the variant it is closest to."""

    network: object
    paper: object
    closest: str
    closest_comparison: object

    @property
    def matches(self):
        return not self.paper.departures


def analyse(network):
    """The network against the paper (227 input, 1000 classes) and its closest variant."""
    closest, comparison = matching.closest_variant(network)
    return Analysis(network, matching.compare(network, net.reference()), closest, comparison)


def _millions(value):
    return "cannot tell" if value is None else f"{value / 1e6:,.0f}M"


def total_rows(analysis):
    """[(what, model, paper, difference)] of parameters, multiply-adds and neurons."""
    mine, ref = analysis.paper.totals, analysis.paper.reference
    theirs = matching.totals(ref, matching.find_slots(ref)[0])
    rows = []
    for key, label in (
        ("params", "parameters"),
        ("multiply_adds", "multiply-adds"),
        ("neurons", "neurons"),
    ):
        a, b = mine[key], theirs[key]
        stated = {
            "params": f"{b:,} (stated: {paper.STATED_PARAMS})",
            "multiply_adds": f"{b:,} ({_millions(b)})",
            "neurons": f"{b:,} (stated: {paper.STATED_NEURONS})",
        }[key]
        shown = "cannot tell" if a is None else f"{a:,}"
        if key == "multiply_adds" and a is not None:
            shown += f" ({_millions(a)})"
        diff = "" if a is None or a == b else f"{a - b:+,}"
        rows.append((label, shown, stated, diff))
    return rows


def summary(analysis):
    """The report's last line: the verdict and the departures' count."""
    n = len(analysis.paper.departures)
    unknown = sum(f.status == matching.UNKNOWN for f in analysis.paper.findings)
    verdict = "MATCHES the paper" if not n else f"DEPARTS from the paper in {n} features"
    tail = f"; {unknown} it cannot tell from the file" if unknown else ""
    convs = [f for f in analysis.paper.findings if f.feature.startswith("conv")]
    if convs and all(f.status == matching.MISSING for f in convs):
        return f"{verdict}: not AlexNet-shaped, it has none of conv1 ... conv5{tail}"
    return f"{verdict}{tail}; closest variant: {analysis.closest}"


def render(analysis, fmt="text"):
    """The report as "text", "markdown" or "json"."""
    if fmt == "json":
        return json.dumps(to_dict(analysis), indent=1)
    md = fmt == "markdown"
    title = "#### " if md else ""
    network = analysis.network
    shape = matching.as_text(tuple(network.input_shape)) if network.input_shape else "?"
    lines = [
        f"{title}AlexNet conformance report: {network.name} ({network.source}), input "
        f"{shape}, {network.params:,} parameters",
        f"Paper: {paper.CITATION}",
        "Layers matched by order and kind: "
        + ", ".join(
            f"{len(network.of_kind(k))} {k}" for k in ("conv", "dense", "pool", "norm", "dropout")
        ),
        "",
        f"{title}The paper's features",
    ]
    rows = [
        (f.feature, f.status, f.model, f.reference, "; ".join((*f.differences, *f.effects)))
        for f in analysis.paper.findings
    ]
    lines.append(table(("feature", "status", "model", "paper", "what differs"), rows, md))
    lines += ["", f"{title}Totals"]
    lines.append(table(("", "model", "paper", "difference"), total_rows(analysis), md))
    lines += ["", f"{title}Departures from the paper"]
    lines += [f"- {f.text}" for f in analysis.paper.departures] or ["- none"]
    cannot = [f.text for f in analysis.paper.findings if f.status == matching.UNKNOWN]
    if cannot or network.cannot_tell:
        lines += ["", f"{title}What the report cannot tell from the file"]
        lines += [f"- {t}" for t in (*network.cannot_tell, *cannot)]
    rest = analysis.closest_comparison.departures
    lines += ["", f"{title}Closest variant: {analysis.closest}"]
    lines += [f"- {f.text}" for f in rest] or ["- no difference"]
    lines += ["", f"{title}Where the paper is ambiguous or contradicts itself"]
    lines += [f"- {topic}: {text}" for topic, text in paper.DISCREPANCIES]
    lines += ["", summary(analysis)]
    return "\n".join(lines)


def to_dict(analysis):
    """The report as a JSON-ready dict."""
    network = analysis.network
    return dict(
        model=network.name,
        source=network.source,
        input_shape=list(network.input_shape) if network.input_shape else None,
        params=network.params,
        findings=[dataclasses.asdict(f) for f in analysis.paper.findings],
        departures=[f.text for f in analysis.paper.departures],
        totals=analysis.paper.totals,
        cannot_tell=list(network.cannot_tell),
        closest_variant=analysis.closest,
        closest_differences=[f.text for f in analysis.closest_comparison.departures],
        discrepancies=[dict(topic=t, text=x) for t, x in paper.DISCREPANCIES],
        matches=analysis.matches,
        summary=summary(analysis),
    )


def table(header, rows, markdown):
    """Rows under a header as aligned plain text, or as a Markdown table (both reports)."""
    cells = [list(header)] + [[str(c) for c in row] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in cells]
        lines.insert(1, "|" + "|".join("---" for _ in header) + "|")
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)
