"""format_benchmark on the tiny run's export in every format (`exported_formats`, conftest.py):
each file in a process of its own, the LiteRT files' profile, the int8 error per layer."""

import os

import pytest

from keras_alexnet.benchmarks import format_process
from keras_alexnet.benchmarks import format_speed as format_benchmark
from keras_alexnet.serving import formats
from keras_alexnet.serving import runtimes

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")


@pytest.fixture(scope="module")
def report(trained, exported_formats):
    model_dir, _ = trained
    return format_benchmark.run_benchmark(
        model_dir, exported_formats, batch_size=4, rounds=2, profile_repeat=1, turn_seconds=0
    )


def test_every_format_is_measured_in_a_process_of_its_own(report):
    rows = {row["format"]: row for row in report["rows"]}
    names = [formats.litert_file(q) for q in formats.QUANTIZATIONS] + [formats.ONNX_FILE]
    assert list(rows) == [format_benchmark.SAVED_MODEL, "model.keras", *names]
    assert report["images"] == 18  # the run's validation images
    for name in ("model.keras", "model.tflite", "model.onnx", format_benchmark.SAVED_MODEL):
        assert rows[name]["agreement"] == 1.0, name
        assert rows[name]["top1_error"] == rows["model.keras"]["top1_error"], name
    # Every file is given raw RGB pixels as it takes them: uint8 for the int8 file.
    assert rows["model_int8.tflite"]["input"] == "uint8 RGB"
    assert {row["input"] for name, row in rows.items() if "int8" not in name} == {"float32 RGB"}
    assert rows["model.tflite"]["size_vs_float32"] == 1.0
    assert rows["model_int8.tflite"]["size_vs_float32"] < 0.4
    for row in rows.values():
        assert row["latency_ms"] > 0 and row["images_per_s"] > 0 and row["bytes"] > 0
    pids = [row["pid"] for row in rows.values()]
    assert len(set(pids)) == len(pids) and os.getpid() not in pids
    # LiteRT and ONNX Runtime run without TensorFlow in their processes.
    for name in names:
        assert not rows[name]["tensorflow_loaded"], name
    assert rows[format_benchmark.SAVED_MODEL]["tensorflow_loaded"]
    assert rows["model.onnx"]["runtime"] == "onnxruntime"


def test_litert_files_are_profiled_operation_by_operation(report, exported_formats):
    litert = [formats.litert_file(q) for q in formats.QUANTIZATIONS]
    assert list(report["profiles"]) == litert
    for name in litert:
        ops = runtimes.litert_operations(os.path.join(exported_formats, name))
        for size, profile in report["profiles"][name].items():
            # Every operation timed once, in order (a float16 file's weight DEQUANTIZE
            # joined to the operation after it).
            timed = [kind for op in profile for kind in op["op"].split("+")]
            assert timed == [op["op"] for op in ops], (name, size)
            assert sum(op["ms"] for op in profile) > 0
            layers = {layer: kinds for layer, _, kinds in format_benchmark.layer_times(profile)}
            assert {"conv1", "lrn1", "pool1", "conv2", "lrn2", "fc6", "fc8"} <= set(layers)
            assert [k.split("+")[-1] for k in layers["lrn1"]] == [
                "MUL",
                "CONV_2D",
                "LOG",
                "MUL",
                "EXP",
                "MUL",
            ]


def test_table_shows_formats_errors_and_profile(report):
    table = format_benchmark.format_table(report)
    assert "| `model_int8.tflite` | LiteRT |" in table
    assert "each file in a process of its own with" in table
    assert "int8 error per layer" in table and "lrn1 " in table and "(its own " in table
    assert "| lrn1 | " in table and "| all | " in table
    layers = [row["layer"] for row in report["int8_layer_errors"]]
    assert layers[:3] == ["subtract_mean", "conv1", "lrn1"]


def test_a_process_that_fails_names_its_file(tmp_path):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer")
    process = format_process.FormatProcess(str(broken), str(tmp_path / "pixels.npy"), threads=1)
    with pytest.raises(RuntimeError, match="broken.tflite"):
        process.ready()
    process.close()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rounds=0), "rounds must be an integer >= 1. Received: rounds=0"),
        (dict(threads=0), "threads must be an integer >= 1. Received: threads=0"),
        (dict(profile_repeat=-1), "profile_repeat must be an integer >= 0"),
        (dict(version="missing"), "No SavedModel in the export version folder. Received: "),
    ],
)
def test_bad_arguments_fail_before_any_process_starts(tmp_path, kwargs, message):
    kwargs = {"model_dir": str(tmp_path), "version": str(tmp_path), **kwargs}
    if kwargs["version"] == "missing":
        kwargs["version"] = str(tmp_path / "missing")
    with pytest.raises(ValueError, match=message):
        format_benchmark.run_benchmark(**kwargs)
