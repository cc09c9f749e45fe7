"""input_benchmark: the benchmark runs on a few written images and reports its timings."""

import json

import fresh_process

from keras_alexnet.benchmarks import input_speed as input_benchmark
from keras_alexnet.data import folder_sources
from keras_alexnet.data import shard_writer as prepare


def test_input_benchmark_runs(tmp_path):
    input_benchmark.write_benchmark_images(str(tmp_path), 12, image_size=(60, 80))
    result = input_benchmark.run_benchmark(str(tmp_path), batch_size=4, epochs=2, repeats=1)
    assert result["num_files"] == 12
    assert result["plain"] > 0 and result["full"] > 0 and result["ratio"] > 0
    # The same files prepared: both pipelines measured on the shards too.
    assert result["prepared_full"] > 0 and result["prepared_plain"] > 0
    assert result["prepared_speedup"] == result["prepared_full"] / result["full"]
    assert 0 < result["prepared_bytes_per_image"] < 256 * 256 * 3
    assert result["read"] > 0 and result["prepared_read_cpu_ms"] > 0
    assert result["prepared_encoding"] == "jpeg q90"
    assert result["finish_cpu_ms"] > 0  # the step's float work, timed apart


def test_prepared_difference_of_a_lossless_preparation_is_the_rounding(tmp_path):
    input_benchmark.write_benchmark_images(str(tmp_path / "files"), 6, image_size=(300, 280))
    source = folder_sources.folder_source(str(tmp_path / "files"))
    for encoding, low, high in (("png", 0.2, 0.3), ("jpeg", 1.0, 12.0)):
        out = str(tmp_path / encoding)
        prepare.prepare(source, out, encoding=encoding, images_per_shard=4)
        mean, worst = input_benchmark.prepared_difference(source, out)
        # Rounding a uniform fraction to the nearest integer: 0.25 on average.
        assert low < mean <= worst < high, (encoding, mean, worst)


def test_input_benchmark_json_line_from_the_command_line(tmp_path):
    input_benchmark.write_benchmark_images(str(tmp_path), 8, image_size=(40, 50))
    result = fresh_process.run_module(
        "input_benchmark",
        f"--data_dir={tmp_path}",
        "--batch_size=2",
        "--epochs=1",
        "--repeats=1",
        "--encoding=png",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    fields = json.loads(result.stdout.strip().splitlines()[-1])
    assert fields["num_files"] == 8 and fields["prepared_encoding"] == "png"
    for stage in ("read", "plain", "full"):
        assert fields[f"{stage}_cpu_ms"] > 0 and fields[f"prepared_{stage}_cpu_ms"] > 0
    assert fields["prepared_cpu_speedup"] == fields["full_cpu_ms"] / fields["prepared_full_cpu_ms"]
