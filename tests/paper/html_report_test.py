"""The report of any AlexNet from the tool: its exit status, and the HTML page in Chromium."""

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


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_the_page_renders_in_chromium(runs, tmp_path):
    _, _, page = runs
    flags = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
    ]  # fmt: skip
    dom = subprocess.run(
        [*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = re.findall(r'<rect class="layer" data-layer="(\w+)"', dom.stdout)
    assert rendered.count("conv1") == 4 and rendered.count("fc8") == 4
    assert "Failed to load" not in dom.stderr and TUTORIAL_SUMMARY in dom.stdout
    shot = tmp_path / "page.png"
    result = subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1200,900", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")) == (
        1200,
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
