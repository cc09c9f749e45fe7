"""The conformance report: what it prints, and its exit status says when a check fails."""

import gc
import json

import fresh_process
import keras
import pytest
import tiny
from conformance_test import PAPER_ORDER
from conformance_test import reordered
from conformance_test import statuses

import keras_alexnet
from keras_alexnet.models import variants
from keras_alexnet.paper import conformance
from keras_alexnet.paper import report as verify


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


@pytest.fixture(scope="module")
def cli_runs(paper_model, tmp_path_factory):
    """{name: CompletedProcess} of the verify tool's runs below, three at a time: each
    builds a full-size model in its own process."""
    folder = tmp_path_factory.mktemp("verify")
    swapped = folder / "pool_before_lrn.keras"
    reordered(paper_model, "lrn1", "pool1").save(swapped)
    keras.utils.set_random_seed(0)
    owt = folder / "owt.keras"
    keras_alexnet.AlexNet(variant="one_weird_trick").save(owt)
    gc.collect()  # the models' memory, before the tools start
    commands = {
        "caffenet_order": [f"--model={swapped}"],
        "json": ["--format=json"],
        "owt_as_paper": [f"--model={owt}", "--variant=paper"],
        "owt": [f"--model={owt}", "--variant=one_weird_trick"],
        "input_size": ["--input_size=224"],
    }
    results = fresh_process.run_together(
        *[fresh_process.command("verify", *args) for args in commands.values()], at_once=3
    )
    return dict(zip(commands, results))


def test_cli_fails_on_the_caffenet_order(cli_runs):
    result = cli_runs["caffenet_order"]
    assert result.returncode == 1, result.stdout[-3000:]
    swapped = PAPER_ORDER.replace("lrn1 pool1", "pool1 lrn1")
    assert f"order: {swapped} FAIL" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("FAIL: ")


def test_cli_exit_status_and_json(cli_runs):
    result = cli_runs["json"]
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["passed"] and report["params"] == 60_965_224
    assert report["counts"]["FAIL"] == 0
    assert {d["topic"] for d in report["discrepancies"]} >= {"input size", "conv1 neurons"}


def test_cli_fails_on_an_altered_saved_model(cli_runs):
    result = cli_runs["owt_as_paper"]
    assert result.returncode == 1, result.stdout[-2000:]
    assert "FAIL" in result.stdout and "conv2 towers" in result.stdout
    result = cli_runs["owt"]
    assert result.returncode == 0, result.stdout[-2000:]


def test_cli_input_that_cannot_be_built(cli_runs):
    result = cli_runs["input_size"]
    assert result.returncode == 2
    assert "input_shape (224, 224, 3)" in result.stderr
