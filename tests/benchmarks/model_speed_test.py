"""The benchmark runs and reports consistent figures (speed itself is not asserted)."""

import importlib.util
import os
import textwrap

import fresh_process
import pytest
import tiny

from keras_alexnet.benchmarks import model_speed as benchmark
from keras_alexnet.models import alexnet as model_lib
from keras_alexnet.models import inspection

# The paper's full-size network, measured in a fresh process: the memory its steps leave
# behind in TensorFlow and the allocator goes away with that process, not with this one.
FULL_SIZE_SCRIPT = textwrap.dedent("""
    import json, sys
    from keras_alexnet.benchmarks import model_speed as benchmark

    torch_peer = sys.argv[1]
    measured = benchmark.measure(
        "towers", batch_size=2, steps=1, warmup=1, num_classes=10, gemm_size=256
    )
    print("MEASURE " + json.dumps(measured), flush=True)
    if torch_peer:
        ours, peer = benchmark.run(
            ("towers",),
            batch_size=2,
            steps=1,
            warmup=1,
            num_classes=10,
            torch_peer=torch_peer,
            threads=2,
            gemm_size=256,
        )
        print("TORCH " + json.dumps([ours, peer]), flush=True)
""")


def test_alternate_runs_the_functions_in_turn():
    calls = []
    seconds = benchmark.alternate([lambda: calls.append("a"), lambda: calls.append("b")], 3, 1)
    assert calls == ["a", "b"] * 4  # one warm-up round, then three timed ones
    assert [len(s) for s in seconds] == [3, 3] and all(t >= 0 for s in seconds for t in s)


# Where the peer file is not beside the repository (it is not part of it), a small PyTorch
# network stands in for it: the benchmark's handling of a peer is what is tested here.
STAND_IN_PEER = """
from torch import nn


def paper_alexnet(num_classes):
    return nn.Sequential(
        nn.Conv2d(3, 8, 11, 4), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        nn.Dropout(0.5), nn.Linear(128, num_classes),
    )
"""


def test_the_torch_peer_needs_the_paper_variant():
    with pytest.raises(ValueError, match='variant="paper"'):
        benchmark.run(
            batch_size=2, steps=1, variant="caffe", torch_peer=benchmark.DEFAULT_TORCH_PEER
        )


def test_gemm_peak_and_per_layer_times():
    assert benchmark.gemm_peak(size=256, steps=1) > 0
    tiny.register()
    rows = benchmark.per_layer(batch_size=4, steps=1, variant=tiny.VARIANT.name, num_classes=10)
    names = [r["name"] for r in rows]
    assert names[:3] == ["conv1", "lrn1", "pool1"] and names[-1] == "fc8"
    assert all(r["forward_ms"] > 0 and r["backward_ms"] >= 0 for r in rows)
    assert any(r["backward_ms"] > 0 for r in rows)
    # Each conv and dense layer's forward GFLOP: 2 x its multiply-adds x the batch.
    counts = inspection.multiply_adds(model_lib.AlexNet(10, variant=tiny.VARIANT.name))
    for row in rows:
        assert row["gflop"] == round(2 * counts.get(row["name"], 0) * 4 / 1e9, 2), row


@pytest.fixture(autouse=True, scope="module")
def full_size_process(tmp_path_factory):
    """The fresh process of FULL_SIZE_SCRIPT, started with the module: the tests that do
    not need it run in the meantime."""
    torch_peer = ""
    if importlib.util.find_spec("torch") is not None:
        torch_peer = benchmark.DEFAULT_TORCH_PEER
        if not os.path.isfile(torch_peer):
            torch_peer = str(tmp_path_factory.mktemp("peer") / "stand_in_peer.py")
            with open(torch_peer, "w") as f:
                f.write(STAND_IN_PEER)
    with fresh_process.started_script(FULL_SIZE_SCRIPT, torch_peer) as process:
        yield process


@pytest.fixture(scope="module")
def full_size(full_size_process):
    """{"MEASURE": measure's dict, "TORCH": run's (ours, peer) or absent without PyTorch}."""
    return fresh_process.printed_json(full_size_process, ("MEASURE", "TORCH"))


def test_measure_reports_consistent_figures(full_size):
    result = full_size["MEASURE"]
    assert result["implementation"] == "towers" and result["variant"] == "paper"
    assert result["train_img_per_s"] > 0 and result["infer_img_per_s"] > 0
    # The paper's network: about 724M multiply-adds, 1.45 GFLOP, per 227x227 image.
    assert result["forward_gflop_per_img"] == pytest.approx(1.45, abs=0.01)
    assert result["train_gflop_per_s"] == pytest.approx(
        3 * result["forward_gflop_per_img"] * result["train_img_per_s"], rel=0.01
    )
    assert result["gemm_peak_gflop_per_s"] > 0
    assert result["train_fraction_of_peak"] > 0 and result["infer_fraction_of_peak"] > 0
    assert "train_ratio_to_torch" not in result  # no peer was measured


def test_run_against_the_torch_peer_reports_ratios_and_fractions(full_size):
    if "TORCH" not in full_size:
        pytest.skip("needs PyTorch (the test extra installs it)")
    ours, peer = full_size["TORCH"]
    assert ours["implementation"] == "towers" and peer["implementation"] == "pytorch"
    assert peer["torch"] and peer["dtype_policy"] == "float32" and peer["batch"] == 2
    assert ours["threads"] == peer["threads"] == 2
    for key in ("train", "infer"):
        assert peer[f"{key}_img_per_s"] > 0
        # One round: the ratio is that of the two steps, and both fractions have the
        # round's GEMM as their denominator.
        # (The ratios are rounded to three decimals.)
        assert ours[f"{key}_ratio_to_torch"] == pytest.approx(
            ours[f"{key}_img_per_s"] / peer[f"{key}_img_per_s"], rel=0.01, abs=5e-4
        )
        assert ours[f"{key}_ratio_to_torch"] == pytest.approx(
            ours[f"{key}_fraction_of_peak"] / peer[f"{key}_fraction_of_peak"], rel=0.05, abs=5e-4
        )
    # One GEMM peak and the same network's arithmetic for both.
    assert ours["gemm_peak_gflop_per_s"] == peer["gemm_peak_gflop_per_s"] > 0
    assert ours["forward_gflop_per_img"] == peer["forward_gflop_per_img"]
