"""The benchmark runs and reports consistent figures (speed itself is not asserted)."""

import pytest
import tiny

from keras_alexnet import benchmark
from keras_alexnet import model as model_lib


def test_measure_reports_consistent_figures():
    result = benchmark.measure("towers", batch_size=2, steps=1, warmup=1, num_classes=10)
    assert result["train_img_per_s"] > 0 and result["infer_img_per_s"] > 0
    # The paper's network: about 724M multiply-adds, 1.45 GFLOP, per 227x227 image.
    assert result["forward_gflop_per_img"] == pytest.approx(1.45, abs=0.01)
    assert result["train_gflop_per_s"] == pytest.approx(
        3 * result["forward_gflop_per_img"] * result["train_img_per_s"], rel=0.01
    )


def test_gemm_peak_and_per_layer_times():
    assert benchmark.gemm_peak(size=256, steps=1) > 0
    tiny.register()
    rows = benchmark.per_layer(batch_size=4, steps=1, variant=tiny.VARIANT.name, num_classes=10)
    names = [r["name"] for r in rows]
    assert names[:3] == ["conv1", "lrn1", "pool1"] and names[-1] == "fc8"
    assert all(r["forward_ms"] > 0 and r["backward_ms"] > 0 for r in rows)
    # Each conv and dense layer's forward GFLOP: 2 x its multiply-adds x the batch.
    counts = model_lib.multiply_adds(model_lib.AlexNet(10, variant=tiny.VARIANT.name))
    for row in rows:
        assert row["gflop"] == round(2 * counts.get(row["name"], 0) * 4 / 1e9, 2), row
