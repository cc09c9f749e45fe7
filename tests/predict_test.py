"""predict: the CLI on an exported model (`exported`, a session fixture in conftest.py)."""

import glob
import os

import wild_images
from fresh_process import run_module


def test_predict_reports_bad_images_and_goes_on(exported, trained, tmp_path):
    out, _, second = exported
    _, root = trained
    good = sorted(glob.glob(os.path.join(root, "validation", "*", "*.jpg")))[0]
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    result = run_module("predict", f"--model={out / 'tiny'}", str(bad), good)
    assert result.returncode == 1
    assert f"error: {bad}: not a readable JPEG, PNG, BMP, GIF or WebP image" in result.stderr
    assert "Unknown image file format" in result.stderr
    assert f"Model {second}" in result.stdout
    assert good in result.stdout and "%" in result.stdout


def test_predict_refuses_a_misread_format_and_reads_alpha(exported, tmp_path):
    out, _, _ = exported
    files = wild_images.write_corpus(str(tmp_path / "wild"))
    path_of = {os.path.basename(p): p for p in files}
    palette, alpha = path_of["palette.bmp"], path_of["alpha.webp"]
    result = run_module("predict", f"--model={out / 'tiny'}", palette, alpha)
    assert result.returncode == 1
    line = next(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert line.startswith(f"error: {palette}: ") and "8-bit BMP with a colour palette" in line
    assert alpha in result.stdout and "%" in result.stdout
