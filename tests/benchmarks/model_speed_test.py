"""The benchmark runs and reports consistent figures (speed itself is not asserted)."""

import importlib.util
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
        results = benchmark.run(
            ("towers",),
            batch_size=2,
            steps=1,
            warmup=1,
            num_classes=10,
            dtype_policies=("float32", "mixed_bfloat16"),
            torch_peer=torch_peer,
            threads=2,
            gemm_size=256,
        )
        print("TORCH " + json.dumps(results), flush=True)
        # PyTorch ran in a process of its own: this one never imported it.
        print("TORCH_IMPORTED " + json.dumps("torch" in sys.modules), flush=True)
""")


def test_alternate_runs_the_functions_in_turn():
    calls = []
    seconds = benchmark.alternate([lambda: calls.append("a"), lambda: calls.append("b")], 3, 1)
    assert calls == ["a", "b"] * 4  # one warm-up round, then three timed ones
    assert [len(s) for s in seconds] == [3, 3] and all(t >= 0 for s in seconds for t in s)


def test_alternate_takes_the_seconds_a_function_measured_itself():
    # A step timed in another process returns its own seconds; the others are timed here.
    seconds = benchmark.alternate([lambda: 0.25, lambda: None], 2, 1)
    assert seconds[0] == [0.25, 0.25]
    assert len(seconds[1]) == 2 and all(0 <= t < 0.25 for t in seconds[1])


def test_the_printed_ratio_to_pytorch_is_the_median_of_the_rounds():
    def result(implementation, img_per_s, **more):
        figures = {
            f"{key}_{name}": value
            for key in ("train", "infer")
            for name, value in (
                ("img_per_s", img_per_s),
                ("gflop_per_s", 1.0),
                ("fraction_of_peak", 0.5),
            )
        }
        return dict(
            figures,
            implementation=implementation,
            dtype_policy="float32",
            gemm_dtype="float32",
            gemm_peak_gflop_per_s=100.0,
            float32_peak_gflop_per_s=100.0,
            **more,
        )

    ours = result("towers", 30.0, train_ratio_to_torch=1.4, infer_ratio_to_torch=1.6)
    groups = result("keras_groups", 20.0)
    peer = result("pytorch", 10.0, torch="2.0")
    lines = benchmark.format_results([ours, groups, peer]).splitlines()
    assert lines[2].lstrip().startswith("pytorch 2.0") and "GEMM peak" in lines[3]
    assert lines[4] == "towers float32 / keras_groups float32: train x1.50, inference x1.50"
    # Not 30 / 10: the ratio of the steps of each round, measured under the same load.
    assert lines[5] == "towers float32 / pytorch float32: train x1.40, inference x1.60"


def test_each_precision_is_printed_against_its_own_peak_and_peer():
    def result(implementation, policy, dtype, peak, fraction, **more):
        return dict(
            {f"{key}_img_per_s": 10.0 for key in ("train", "infer")},
            **{f"{key}_gflop_per_s": 1.0 for key in ("train", "infer")},
            **{f"{key}_fraction_of_peak": fraction for key in ("train", "infer")},
            implementation=implementation,
            dtype_policy=policy,
            gemm_dtype=dtype,
            gemm_peak_gflop_per_s=peak,
            float32_peak_gflop_per_s=300.0,
            **more,
        )

    lines = benchmark.format_results(
        [
            result(
                "towers",
                "float32",
                "float32",
                300.0,
                0.6,
                train_ratio_to_torch=1.5,
                infer_ratio_to_torch=1.4,
            ),
            result(
                "towers",
                "mixed_bfloat16",
                "bfloat16",
                1000.0,
                0.3,
                train_ratio_to_torch=2.5,
                infer_ratio_to_torch=2.0,
            ),
            result("pytorch", "float32", "float32", 300.0, 0.4, torch="2.13"),
            result("pytorch", "mixed_bfloat16", "bfloat16", 1000.0, 0.1, torch="2.13"),
        ]
    ).splitlines()
    assert "30% of bfloat16 peak" in lines[1] and "60% of float32 peak" in lines[0]
    assert lines[4] == "GEMM peak (tf.linalg.matmul 4096x4096, float32): 300.0 GFLOP/s"
    assert lines[5] == (
        "GEMM peak (tf.linalg.matmul 4096x4096, bfloat16): 1000.0 GFLOP/s (x3.33 float32's)"
    )
    # Each peer against the model of its own precision.
    assert "towers float32 / pytorch float32: train x1.50, inference x1.40" in lines
    assert "towers mixed_bfloat16 / pytorch mixed_bfloat16: train x2.50, inference x2.00" in lines


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
    # Under mixed_bfloat16 the same layers, the same arithmetic, in bfloat16.
    bf16_rows = benchmark.per_layer(
        batch_size=4,
        steps=1,
        variant=tiny.VARIANT.name,
        num_classes=10,
        dtype_policy="mixed_bfloat16",
    )
    assert [r["name"] for r in bf16_rows] == names
    assert [r["gflop"] for r in bf16_rows] == [r["gflop"] for r in rows]
    assert all(r["forward_ms"] > 0 for r in bf16_rows)
    assert benchmark.gemm_peak(size=256, steps=1, dtype="bfloat16") > 0


@pytest.fixture(autouse=True, scope="module")
def full_size_process():
    """The fresh process of FULL_SIZE_SCRIPT, started with the module: the tests that do
    not need it run in the meantime."""
    torch_peer = ""
    if importlib.util.find_spec("torch") is not None:
        torch_peer = benchmark.DEFAULT_TORCH_PEER
    with fresh_process.started_script(FULL_SIZE_SCRIPT, torch_peer) as process:
        yield process


@pytest.fixture(scope="module")
def full_size(full_size_process):
    """{"MEASURE": measure's dict, "TORCH": run's (ours, peer) and "TORCH_IMPORTED", or
    neither without PyTorch}."""
    return fresh_process.printed_json(full_size_process, ("MEASURE", "TORCH", "TORCH_IMPORTED"))


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


def rounding(ours, peer, key):
    """The relative error of a ratio of the two rates, as the report rounds them: the ratio
    to three decimals (taken from the rates before rounding), each rate to 0.01 img/s (on a
    busy machine the full-size peer's rate is a few tenths of an image a second)."""
    return 0.01 + sum(0.005 / row[f"{key}_img_per_s"] for row in (ours, peer))


def test_run_against_the_torch_peer_reports_ratios_and_fractions(full_size):
    if "TORCH" not in full_size:
        pytest.skip("needs PyTorch (the test extra installs it)")
    ours, ours_bf16, peer, peer_bf16 = full_size["TORCH"]
    assert ours["implementation"] == "towers" and peer["implementation"] == "pytorch"
    assert peer["torch"] and peer["dtype_policy"] == "float32" and peer["batch"] == 2
    # The package's own peer, the paper's network, trained in a process of its own.
    assert peer["peer"] == "torch_alexnet.py" and full_size["TORCH_IMPORTED"] is False
    assert ours["threads"] == peer["threads"] == 2
    for key in ("train", "infer"):
        assert peer[f"{key}_img_per_s"] > 0
        # One round: the ratio is that of the two steps, and both fractions have the
        # round's GEMM as their denominator.
        assert ours[f"{key}_ratio_to_torch"] == pytest.approx(
            ours[f"{key}_img_per_s"] / peer[f"{key}_img_per_s"],
            rel=rounding(ours, peer, key),
            abs=5e-4,
        )
        assert ours[f"{key}_ratio_to_torch"] == pytest.approx(
            ours[f"{key}_fraction_of_peak"] / peer[f"{key}_fraction_of_peak"], rel=0.05, abs=5e-4
        )
    # One GEMM peak and the same network's arithmetic for both.
    assert ours["gemm_peak_gflop_per_s"] == peer["gemm_peak_gflop_per_s"] > 0
    assert ours["forward_gflop_per_img"] == peer["forward_gflop_per_img"]
    # bfloat16: against the bfloat16 GEMM and the peer under bfloat16 autocast.
    assert ours_bf16["dtype_policy"] == peer_bf16["dtype_policy"] == "mixed_bfloat16"
    assert ours_bf16["gemm_dtype"] == peer_bf16["gemm_dtype"] == "bfloat16"
    assert ours_bf16["gemm_peak_gflop_per_s"] == peer_bf16["gemm_peak_gflop_per_s"] > 0
    assert ours_bf16["float32_peak_gflop_per_s"] == ours["gemm_peak_gflop_per_s"]
    for key in ("train", "infer"):
        assert ours_bf16[f"{key}_ratio_to_torch"] == pytest.approx(
            ours_bf16[f"{key}_img_per_s"] / peer_bf16[f"{key}_img_per_s"],
            rel=rounding(ours_bf16, peer_bf16, key),
            abs=5e-4,
        )
        # The two fractions differ by the two GEMMs' ratio (one round: one GEMM of each).
        own, float32 = (ours_bf16[f"{key}_fraction_of{p}_peak"] for p in ("", "_float32"))
        assert own > 0 and float32 > 0
        assert "train_ratio_to_torch" not in peer_bf16


def test_the_command_line_takes_torch_peer_alone_or_with_a_file(tmp_path):
    """--torch_peer alone names the package's peer (and --torch is its alias); with a
    value, a peer file. Both are checked before anything is measured."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("needs PyTorch (the test extra installs it)")
    missing = tmp_path / "missing_peer.py"
    alone, with_file = fresh_process.run_together(
        fresh_process.command("benchmark", "--torch", "--variant=caffe"),
        fresh_process.command("benchmark", f"--torch_peer={missing}"),
    )
    assert alone.returncode == 1
    assert "--torch_peer compares the paper's network. Received: --variant=caffe" in alone.stderr
    assert with_file.returncode == 1
    assert f"--torch_peer must be a Python file. Received: --torch_peer={missing}" in (
        with_file.stderr
    )
