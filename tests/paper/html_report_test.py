"""The report of any AlexNet from the tool: its exit status, and the HTML page in Chromium."""

import html
import json
import re
import shutil
import subprocess

import fresh_process
import pytest
import tiny
from matching_test import tutorial

from keras_alexnet.paper import verification

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The tutorial's layers with 64-unit fc6 and fc7, so that the tools start in seconds.
TUTORIAL_SUMMARY = "DEPARTS from the paper in 7 features; closest variant: paper"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The tool on the tutorial's Keras AlexNet: as text, and as a page with columns."""
    folder = tmp_path_factory.mktemp("html")
    path = folder / "tutorial.keras"
    tutorial(units=64).save(path)
    page = folder / "report.html"
    commands = [
        fresh_process.command("verify", f"--model={path}"),
        fresh_process.command(
            "verify",
            f"--model={path}",
            "--format=html",
            f"--output={page}",
            "--compare=paper,caffe,one_weird_trick",
        ),
    ]
    text, html = fresh_process.run_together(*commands, at_once=2)
    return text, html, page


def test_the_tool_names_the_departures_and_exits_1(runs):
    text, _, _ = runs
    assert text.returncode == 1, text.stderr[-2000:]
    lines = text.stdout.splitlines()
    assert lines[-1] == TUTORIAL_SUMMARY
    assert (
        "- conv2: no groups (1 instead of 2): +307,200 parameters, +223,948,800 multiply-adds"
        in lines
    )
    fc6 = "- fc6: units 64 instead of 4,096: -37,162,944 parameters, -37,158,912 multiply-adds"
    assert fc6 in lines


def test_the_page_is_self_contained(runs):
    _, html, page = runs
    assert html.returncode == 1, html.stderr[-2000:]
    assert html.stdout.splitlines()[-2:] == [TUTORIAL_SUMMARY, f"wrote {page}"]
    text = page.read_text()
    for external in ("<script", "<link", "<img", "src=", "url(", "@import", "http://", "https://"):
        assert external not in text
    # Four columns: the model, the paper, caffe, one_weird_trick; conv2 in two towers in
    # the paper's and Caffe's drawings, one stream in the tutorial's and torchvision's.
    assert len(re.findall(r'<div class="column( main)?">', text)) == 4
    assert text.count('data-layer="conv2"') == 1 + 2 + 2 + 1
    # Every drawing holds all of its text: conv1's "LRN pool", under its 55x55 maps, too.
    for svg in re.findall(r'<svg class="drawing".*?</svg>', text, re.S):
        height = float(re.search(r'viewBox="0 0 [\d.]+ ([\d.]+)"', svg).group(1))
        lowest = max(float(y) for y in re.findall(r'<text [^>]*y="([\d.]+)"', svg))
        assert lowest + 2 < height, (lowest, height)
    assert "LRN pool" in text


# Run in the page after layout (appended to a copy of it): what overflows its box (a cell,
# a table, a column, the page) and which words are broken across two lines (a break right
# after a hyphen between letters, as in "multiply-" "adds", is allowed), as JSON in a
# <pre id="layout-check"> that --dump-dom prints.
LAYOUT_CHECK = """
(function () {
  var found = {width: window.innerWidth, words: 0, overflowing: [], broken: []};
  var root = document.documentElement;
  if (root.scrollWidth > root.clientWidth) found.overflowing.push("page " + root.scrollWidth);
  document.querySelectorAll("td, th, .table, .column, h1, h2, h3, .verdict").forEach(
    function (el) {
      if (el.scrollWidth > el.clientWidth + 1) found.overflowing.push(el.textContent.slice(0, 80));
    });
  var range = document.createRange();
  function tops(node, start, end) {
    range.setStart(node, start);
    range.setEnd(node, end);
    return Array.prototype.filter.call(range.getClientRects(), function (r) {
      return r.width > 0;
    }).map(function (r) { return Math.round(r.top); });
  }
  var walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    var node = walker.currentNode;
    if (node.parentElement.closest("svg, style, script")) continue;
    var words = /\\S+/g, m;
    while ((m = words.exec(node.data))) {
      found.words++;
      if (new Set(tops(node, m.index, m.index + m[0].length)).size < 2) continue;
      var word = m[0], line = tops(node, m.index, m.index + 1)[0];
      for (var i = 1; i < word.length; i++) {
        if (tops(node, m.index + i, m.index + i + 1)[0] === line) continue;
        var hyphen = word[i - 1] === "-" && /[A-Za-z]/.test(word[i - 2] || "") &&
          /[A-Za-z]/.test(word[i]);
        if (!hyphen) found.broken.push(word.slice(0, i) + "|" + word.slice(i));
        break;
      }
    }
  }
  var out = document.createElement("pre");
  out.id = "layout-check";
  out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
})();
"""
# A laptop's and a desktop's width.
WIDTHS = (1280, 1920)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_the_page_reads_in_chromium_at_a_laptops_and_a_desktops_width(runs, tmp_path):
    """At each width, in headless Chromium: every drawing's boxes are drawn, no status,
    number or heading overflows its box or breaks mid-word, and a screenshot is taken
    (tmp_path/page_WIDTH.png, to look at)."""
    _, _, page = runs
    checked = tmp_path / "checked.html"
    checked.write_text(
        page.read_text().replace("</body>", f"<script>{LAYOUT_CHECK}</script></body>")
    )

    def chromium(name, width, *args):
        return subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--enable-logging=stderr",
                f"--user-data-dir={tmp_path / f'profile_{name}_{width}'}",
                f"--window-size={width},900",
                *args,
            ],  # fmt: skip
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    started = {
        (name, width): chromium(name, width, *args)
        for width in WIDTHS
        for name, args in (
            ("dom", ("--dump-dom", checked.as_uri())),
            ("shot", (f"--screenshot={tmp_path / f'page_{width}.png'}", page.as_uri())),
        )
    }
    done = {key: (p, *p.communicate(timeout=120)) for key, p in started.items()}
    for (name, width), (process, _, stderr) in done.items():
        assert process.returncode == 0, (name, width, stderr[-2000:])
        assert "Failed to load" not in stderr
    for width in WIDTHS:
        _, dom, _ = done["dom", width]
        rendered = re.findall(r'<rect class="layer" data-layer="(\w+)"', dom)
        assert rendered.count("conv1") == 4 and rendered.count("fc8") == 4
        assert TUTORIAL_SUMMARY in dom
        found = json.loads(
            html.unescape(re.search(r'<pre id="layout-check">(.*?)</pre>', dom, re.S).group(1))
        )
        assert found["width"] == width and found["words"] > 500, found
        assert found["overflowing"] == [], (width, found["overflowing"])
        assert found["broken"] == [], (width, found["broken"])
        header = (tmp_path / f"page_{width}.png").read_bytes()[:24]
        assert header[:8] == b"\x89PNG\r\n\x1a\n"
        assert (int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")) == (
            width,
            900,
        )


def test_our_own_models_keep_the_full_report(monkeypatch):
    tiny.register()
    result = verification.verify(None, "tiny", 4, 227, "text")
    lines = result.text.splitlines()
    assert result.status == 0 and lines[-1].startswith("PASS: ")
    read = next(x for x in lines if x.startswith("Read by order and kind"))
    assert read.endswith("closest variant: tiny") and "DEPARTS" in read
    assert "- conv2: filters 32 instead of 256" in "\n".join(lines)
