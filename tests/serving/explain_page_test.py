"""The explain page: self-contained HTML, opened in headless Chromium when it is installed."""

import base64
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from keras_alexnet.serving import explain_page
from keras_alexnet.serving import explanations


def _explanation(path, true_label, top, neighbours=()):
    return explanations.Explanation(
        path=path,
        pixels=np.full((227, 227, 3), 128, np.uint8),
        true_label=true_label,
        top=top,
        cam=np.linspace(0, 1, 227 * 227, dtype=np.float32).reshape(227, 227),
        embedding=np.zeros(4, np.float32),
        neighbours=list(neighbours),
    )


@pytest.fixture
def page(tmp_path):
    refs = [f"/data/train/{c}/{c}_{i}.jpg" for c in ("cat", "dog") for i in range(4)]
    pictures = np.zeros((len(refs), 227, 227, 3), np.uint8)
    items = [
        _explanation(
            "/data/val/cat/one.jpg",
            "cat",
            [("cat", 0.7), ("dog", 0.2), ("cow", 0.05), ("hen", 0.03), ("emu", 0.01)],
            [(refs[i], 1.5 + i) for i in range(6)],
        ),
        _explanation(
            "/elsewhere/<b>two</b>.png",
            None,
            [("dog", 0.5), ("cat", 0.3), ("cow", 0.1), ("hen", 0.05), ("emu", 0.04)],
            [(refs[i], 2.0 + i) for i in range(6)],
        ),
    ]
    path = explain_page.write(
        str(tmp_path / "out"),
        items,
        (refs, pictures, np.zeros((len(refs), 4))),
        title="test model",
        skipped=[("/data/bad.jpg", "Invalid JPEG data")],
    )
    return path, items


def test_the_page_holds_every_picture_inline(page):
    path, _ = page
    text = open(path, encoding="utf-8").read()
    assert not re.search(r"(src|href)=\"(?!data:)", text) and "<link" not in text
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(uris) == 2 * 2 + 2 * 6
    first = tf.io.decode_png(base64.b64decode(uris[0])).numpy()
    assert first.shape == (227, 227, 3)
    assert "&lt;b&gt;two&lt;/b&gt;.png" in text and "<b>two</b>" not in text  # escaped
    assert "/data/bad.jpg (Invalid JPEG data)" in text
    assert text.count('class="bar true"') == 1  # the cat's; the second image has no class folder
    assert 'style="width:70.00%"' in text


def test_the_output_folder_is_never_overwritten(page, tmp_path):
    path, items = page
    with pytest.raises(ValueError, match="output_dir must be a new or empty folder"):
        explain_page.write(os.path.dirname(path), items)


def test_colour_map_and_overlay():
    colours = explain_page.colour_map(np.array([0.0, 0.5, 1.0]))
    assert colours[0].argmax() == 2 and colours[1].argmax() == 1 and colours[2].argmax() == 0
    grey = np.full((2, 2, 3), 100, np.uint8)
    blended = explain_page.overlay(grey, np.ones((2, 2)), opacity=0.5)
    np.testing.assert_array_equal(blended[0, 0], np.round(0.5 * 100 + 0.5 * 255 * colours[2]))


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    _chromium() is None, reason="chromium is not installed (apt-get install chromium)"
)
def test_chromium_renders_the_page(page, tmp_path):
    path, _ = page
    args = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    url = "file://" + os.path.abspath(path)
    dom = subprocess.run(args + ["--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count('class="card"') == 2
    assert dom.stdout.count('class="bar-row"') == 10
    assert dom.stdout.count('class="neighbour"') == 12
    shot = tmp_path / "page.png"
    result = subprocess.run(
        args + [f"--screenshot={shot}", "--window-size=1200,1000", url],
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    pixels = tf.io.decode_png(shot.read_bytes()).numpy()
    # Grey pictures: the red is the Grad-CAM maps' (high at their bottom) and the true bar's.
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    assert red.sum() > 1000
