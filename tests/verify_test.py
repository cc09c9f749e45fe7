"""The conformance report: what it prints, and its exit status says when a check fails."""

import json

import fresh_process
import keras
import tiny
from conformance_test import PAPER_ORDER
from conformance_test import reordered
from conformance_test import statuses

import keras_alexnet
from keras_alexnet import conformance
from keras_alexnet import variants
from keras_alexnet import verify


def test_a_registered_variant_departs_only_where_declared(monkeypatch):
    monkeypatch.setitem(variants.VARIANTS, tiny.VARIANT.name, tiny.VARIANT)
    keras.utils.set_random_seed(0)
    model = keras_alexnet.AlexNet(variant="tiny")
    checks, rows = conformance.check_model(model, "tiny")
    assert not [c for c in checks if c.status == conformance.FAIL]
    assert {c.topic for c in checks if c.status == conformance.DEPARTS} == {"layout"}
    status = statuses(checks)
    assert status["conv2 towers"] == status["fc6 params"] == conformance.DEPARTS
    assert status["conv2 kernel"] == conformance.DEPARTS  # 5x5x6 against 5x5x48
    assert status["pool5 size, stride"] == status["lrn1 alpha"] == conformance.OK
    assert rows[1]["towers"] == "2 x 16"
    report = verify.render("tiny", model, checks, rows)
    assert "Declared departures from the paper: layout" in report
    assert report.splitlines()[-1].startswith("PASS: ")


def test_the_layer_order_is_checked(paper_model):
    checks, _ = conformance.check_model(paper_model, "paper")
    order = statuses(checks)["order"]
    assert order == conformance.OK
    assert verify.render("paper", paper_model, checks, []).count(f"order: {PAPER_ORDER} ok") == 1


def test_cli_fails_on_the_caffenet_order(paper_model, tmp_path):
    path = tmp_path / "pool_before_lrn.keras"
    reordered(paper_model, "lrn1", "pool1").save(path)
    result = fresh_process.run_module("verify", f"--model={path}")
    assert result.returncode == 1, result.stdout[-3000:]
    swapped = PAPER_ORDER.replace("lrn1 pool1", "pool1 lrn1")
    assert f"order: {swapped} FAIL" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("FAIL: ")


def test_cli_exit_status_and_json():
    result = fresh_process.run_module("verify", "--format=json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["passed"] and report["params"] == 60_965_224
    assert report["counts"]["FAIL"] == 0
    assert {d["topic"] for d in report["discrepancies"]} >= {"input size", "conv1 neurons"}


def test_cli_fails_on_an_altered_saved_model(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras_alexnet.AlexNet(variant="one_weird_trick")
    path = tmp_path / "owt.keras"
    model.save(path)
    result = fresh_process.run_module("verify", f"--model={path}", "--variant=paper")
    assert result.returncode == 1, result.stdout[-2000:]
    assert "FAIL" in result.stdout and "conv2 towers" in result.stdout
    result = fresh_process.run_module("verify", f"--model={path}", "--variant=one_weird_trick")
    assert result.returncode == 0, result.stdout[-2000:]


def test_cli_input_that_cannot_be_built():
    result = fresh_process.run_module("verify", "--input_size=224")
    assert result.returncode == 2
    assert "input_shape (224, 224, 3)" in result.stderr
