"""The benchmark runs and reports consistent figures (speed itself is not asserted)."""

import pytest

from keras_alexnet import benchmark


def test_measure_reports_consistent_figures():
    result = benchmark.measure("towers", batch_size=2, steps=1, warmup=1, num_classes=10)
    assert result["train_img_per_s"] > 0 and result["infer_img_per_s"] > 0
    # The paper's network: about 724M multiply-adds, 1.45 GFLOP, per 227x227 image.
    assert result["forward_gflop_per_img"] == pytest.approx(1.45, abs=0.01)
    assert result["train_gflop_per_s"] == pytest.approx(
        3 * result["forward_gflop_per_img"] * result["train_img_per_s"], rel=0.01
    )
