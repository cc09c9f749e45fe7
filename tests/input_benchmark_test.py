"""input_benchmark: the benchmark runs on a few written images and reports its timings."""

from keras_alexnet import input_benchmark


def test_input_benchmark_runs(tmp_path):
    input_benchmark.write_benchmark_images(str(tmp_path), 12, image_size=(60, 80))
    result = input_benchmark.run_benchmark(str(tmp_path), batch_size=4, epochs=2, repeats=1)
    assert result["num_files"] == 12
    assert result["plain"] > 0 and result["full"] > 0 and result["ratio"] > 0
    # The same files prepared: both pipelines measured on the shards too.
    assert result["prepared_full"] > 0 and result["prepared_plain"] > 0
    assert result["prepared_speedup"] == result["prepared_full"] / result["full"]
    assert 0 < result["prepared_bytes_per_image"] < 256 * 256 * 3
