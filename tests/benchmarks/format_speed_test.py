"""format_benchmark on the tiny run's export in every format (`exported_formats`, conftest.py)."""

import pytest

from keras_alexnet.benchmarks import format_speed as format_benchmark
from keras_alexnet.serving import formats

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")


def test_every_format_is_measured_against_the_keras_model(trained, exported_formats):
    model_dir, _ = trained
    report = format_benchmark.run_benchmark(model_dir, exported_formats, batch_size=4, rounds=2)
    rows = {row["format"]: row for row in report["rows"]}
    names = [formats.litert_file(q) for q in formats.QUANTIZATIONS] + [formats.ONNX_FILE]
    assert list(rows) == [format_benchmark.SAVED_MODEL, "model.keras", *names]
    assert report["images"] == 18  # the run's validation images
    for name in ("model.keras", "model.tflite", "model.onnx", format_benchmark.SAVED_MODEL):
        assert rows[name]["agreement"] == 1.0, name
        assert rows[name]["top1_error"] == rows["model.keras"]["top1_error"], name
    assert rows["model.tflite"]["size_vs_float32"] == 1.0
    assert rows["model_int8.tflite"]["size_vs_float32"] < 0.4
    for row in rows.values():
        assert row["latency_ms"] > 0 and row["images_per_s"] > 0 and row["bytes"] > 0
    without = report["int8_without_lrn"]
    assert without["latency_ms"] > 0 and without["images_per_s"] > 0
    table = format_benchmark.format_table(report)
    assert "| `model_int8.tflite` | LiteRT |" in table
    assert "the same int8 file without them takes" in table
