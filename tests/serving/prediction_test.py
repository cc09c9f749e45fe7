"""predict: the CLI on an exported model, and a run, a .keras file and a SavedModel alike
(`trained` and `exported` are session fixtures in conftest.py)."""

import glob
import os
import re

import numpy as np
import pytest
import wild_images
from fresh_process import run_module

from keras_alexnet.serving import prediction as predict


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


def test_a_run_a_keras_file_and_a_saved_model_predict_alike(exported, trained):
    """--model_dir, --model=<model.keras> and --model=<SavedModel> give the same top 5."""
    out, _, second = exported
    model_dir, root = trained
    images = sorted(glob.glob(os.path.join(root, "validation", "*", "*.jpg")))[:2]
    results = []
    for kwargs in (
        dict(model_dir=model_dir),
        dict(model=os.path.join(second, "model.keras")),
        dict(model=str(out / "tiny")),
    ):
        serving_fn, _ = predict.serving_function(**kwargs)
        results.append(predict.predict_files(serving_fn, images))
    for other in results[1:]:
        for (_, want, _), (_, got, _) in zip(results[0], other):
            assert [label for label, _ in got] == [label for label, _ in want]
            np.testing.assert_allclose([p for _, p in got], [p for _, p in want], rtol=1e-4)


def test_a_training_run_given_as_model_is_pointed_to_model_dir(trained, tmp_path):
    model_dir, _ = trained
    with pytest.raises(ValueError, match=f"No exported version.*--model_dir={model_dir}"):
        predict.serving_function(model=model_dir)
    # A folder that is no run gets no such hint.
    with pytest.raises(ValueError, match=re.escape(f"subfolder) under {tmp_path}.") + "$"):
        predict.serving_function(model=str(tmp_path))
