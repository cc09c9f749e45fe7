"""Evaluation (center and ten crops), export (SavedModel, .keras) and predict."""

import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny
from tensorflow.core.protobuf import saved_model_pb2

from keras_alexnet import evaluate
from keras_alexnet import export
from keras_alexnet import input_pipeline
from keras_alexnet import metrics
from keras_alexnet import run_dir
from keras_alexnet import shapes_dataset
from keras_alexnet import train

TINY = dict(num_classes=6, train_per_class=8, val_per_class=3, image_size=(64, 80))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run trained for one epoch (6 steps) on a tiny built-in set: (model_dir, root)."""
    base = tmp_path_factory.mktemp("eval")
    root = shapes_dataset.ensure_shapes_dataset(base / "shapes", **TINY)
    model_dir = str(base / "run")
    train.train(
        train.TrainConfig(
            model_dir=model_dir,
            dataset="folder",
            data_dir=root,
            batch_size=8,
            epochs=1,
            stats_images=16,
            verbose=False,
        )
    )
    return model_dir, root


def run_module(module, *args):
    return subprocess.run(
        [sys.executable, "-m", f"keras_alexnet.{module}", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ),
    )


def test_ten_crop_average_equals_a_hand_computation():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(5, "softmax")]
    )
    images = np.random.default_rng(0).normal(size=(2, 10, 4, 4, 3)).astype(np.float32)
    kernel, bias = (w.numpy() for w in model.weights)
    logits = images.reshape(2, 10, -1) @ kernel + bias
    softmax = np.exp(logits - logits.max(-1, keepdims=True))
    softmax /= softmax.sum(-1, keepdims=True)
    want = softmax.mean(axis=1)
    got = metrics.average_crops(model, tf.constant(images)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def hand_evaluation(model_dir, root, crops):
    """Top-1/top-5 error computed image by image, eagerly, with NumPy."""
    model, run = run_dir.restore_model(model_dir)
    stats = input_pipeline.Stats.load(os.path.join(model_dir, run_dir.STATS_FILE))
    hits1 = hits5 = count = 0
    for label, name in enumerate(run["class_names"]):
        for path in sorted(glob.glob(os.path.join(root, "validation", name, "*"))):
            with open(path, "rb") as f:
                pixels = input_pipeline.preprocess_for_eval(f.read(), stats, crops).numpy()
            if crops == "center":
                pixels = pixels[None]
            probs = model(pixels, training=False).numpy().mean(axis=0)
            order = np.argsort(-probs)
            hits1 += order[0] == label
            hits5 += label in order[:5]
            count += 1
    return 1 - hits1 / count, 1 - hits5 / count, count


@pytest.mark.parametrize("crops", ["center", "10"])
def test_evaluate_matches_image_by_image_computation(trained, crops):
    model_dir, root = trained
    report = evaluate.evaluate(model_dir, batch_size=4, crops=crops)
    top1, top5, count = hand_evaluation(model_dir, root, "ten" if crops == "10" else "center")
    assert report["images"] == count == 18
    assert report["top1_error"] == pytest.approx(top1)
    assert report["top5_error"] == pytest.approx(top5)
    assert report["skipped"] == 0 and report["crops"] == crops
    events = glob.glob(os.path.join(model_dir, f"eval_{crops}", "events.*"))
    assert events


def test_evaluate_cli_prints_a_table_and_writes_json(trained, tmp_path):
    model_dir, _ = trained
    out = tmp_path / "report.json"
    result = run_module("evaluate", f"--model_dir={model_dir}", f"--output={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "top-1 error" in result.stdout and "40.7%" in result.stdout
    report = json.loads(out.read_text())
    assert report["images"] == 18 and 0 <= report["top1_error"] <= 1
    assert f"{report['top1_error']:.2%}" in result.stdout  # the table and the JSON agree


def test_an_image_that_fails_to_decode_is_named(trained, tmp_path):
    model_dir, root = trained
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    damaged = sorted((copy / "validation").iterdir())[-1] / "damaged.png"
    damaged.write_bytes(tiny.damaged_png())
    with pytest.raises(ValueError, match="1 validation image\\(s\\) do not decode") as raised:
        evaluate.evaluate(model_dir, dataset="folder", data_dir=str(copy))
    assert f"{damaged}: " in str(raised.value)


def test_no_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"class_names": ["a"]}))
    with pytest.raises(ValueError, match="holds no checkpoint"):
        evaluate.evaluate(str(tmp_path))
    with pytest.raises(ValueError, match="holds no training run"):
        export.export_run(str(tmp_path / "nothing"), str(tmp_path / "out"))
    result = run_module("export", f"--model_dir={tmp_path}", f"--output_dir={tmp_path / 'o'}")
    assert result.returncode == 1 and "no checkpoint" in result.stderr


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    model_dir, _ = trained
    out = tmp_path_factory.mktemp("saved_models")
    first = export.export_run(model_dir, str(out), name="tiny")
    second = export.export_run(model_dir, str(out), name="tiny")
    return out, first, second


def test_export_makes_new_versions_and_never_overwrites(exported):
    out, first, second = exported
    assert first.endswith(os.path.join("tiny", "1")) and second.endswith(os.path.join("tiny", "2"))
    assert sorted(os.listdir(out / "tiny")) == ["1", "2"]
    for path in (first, second):
        names = set(os.listdir(path))
        assert {"saved_model.pb", "variables", export.KERAS_FILE, "labels.txt"} <= names
    assert export.latest_version(str(out / "tiny")) == second


def test_saved_model_has_no_xla_ops(exported):
    _, first, _ = exported
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(first, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    graph = proto.meta_graphs[0].graph_def
    nodes = list(graph.node) + [n for fn in graph.library.function for n in fn.node_def]
    ops = {n.op for n in nodes}
    # The towers' plain convolutions, the LRN op and the in-graph JPEG decoding are there.
    assert {"Conv2D", "LRN", "DecodeAndCropJpeg"} <= ops
    assert not [op for op in ops if op.startswith("Xla")]
    for fn in graph.library.function:
        for key in ("_XlaMustCompile", "_noinline_xla"):
            attr = fn.attr.get(key)
            assert attr is None or not attr.b, (fn.signature.name, key)
        for node in fn.node_def:
            assert not node.attr["_XlaMustCompile"].b, node.name


FRESH = textwrap.dedent("""
    import json, sys
    import numpy as np, tensorflow as tf
    version, image_path, pixels_path = sys.argv[1:4]
    model = tf.saved_model.load(version)
    data = open(image_path, "rb").read()
    out = model.signatures["serving_default"](images=tf.constant([data, data]))
    pixel_out = model.signatures["predict_pixels"](pixels=tf.constant(np.load(pixels_path)))
    assert "keras_alexnet" not in sys.modules
    print(json.dumps({
        "bytes": out["probabilities"].numpy().tolist(),
        "pixels": pixel_out["probabilities"].numpy().tolist(),
        "labels": [l.decode() for l in out["top5_labels"].numpy()[0]],
        "indices": out["top5_indices"].numpy()[0].tolist(),
    }))
""")


def test_saved_model_serves_jpeg_bytes_in_a_fresh_process(trained, exported, tmp_path):
    model_dir, root = trained
    _, first, _ = exported
    model, run = run_dir.restore_model(model_dir)
    stats = input_pipeline.Stats.load(os.path.join(model_dir, run_dir.STATS_FILE))
    image_path = sorted(glob.glob(os.path.join(root, "validation", "*", "*.jpg")))[0]
    with open(image_path, "rb") as f:
        pixels = input_pipeline.preprocess_for_eval(f.read(), stats).numpy()[None]
    np.save(tmp_path / "pixels.npy", pixels)
    want = model(pixels, training=False).numpy()[0]
    result = subprocess.run(
        [sys.executable, "-c", FRESH, first, image_path, str(tmp_path / "pixels.npy")],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(got["bytes"][0], want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["bytes"][1], want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["pixels"][0], want, rtol=1e-4, atol=1e-6)
    order = np.argsort(-want)[:5]
    assert got["indices"] == order.tolist()
    assert got["labels"] == [run["class_names"][i] for i in order]


def test_keras_file_loads_in_a_fresh_process(exported, trained, tmp_path):
    model_dir, _ = trained
    _, first, _ = exported
    model, _ = run_dir.restore_model(model_dir)
    x = np.random.default_rng(0).normal(0, 40, (2, 227, 227, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "want.npy", model(x, training=False).numpy())
    script = textwrap.dedent(f"""
        import keras_alexnet, keras, numpy as np
        model = keras.models.load_model({os.path.join(first, export.KERAS_FILE)!r})
        got = np.asarray(model(np.load({str(tmp_path / "x.npy")!r}), training=False))
        np.testing.assert_allclose(got, np.load({str(tmp_path / "want.npy")!r}), rtol=1e-5)
        print("SAME")
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SAME" in result.stdout


def test_predict_reports_bad_images_and_goes_on(exported, trained, tmp_path):
    out, _, second = exported
    _, root = trained
    good = sorted(glob.glob(os.path.join(root, "validation", "*", "*.jpg")))[0]
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    result = run_module("predict", f"--model={out / 'tiny'}", str(bad), good)
    assert result.returncode == 1
    assert f"error: {bad}: not a readable JPEG, PNG, BMP, GIF or WebP image" in result.stderr
    assert "Unknown image file format" in result.stderr
    assert f"Model {second}" in result.stdout
    assert good in result.stdout and "%" in result.stdout


def test_bytes_that_are_not_an_image_fail_clearly(exported):
    _, first, _ = exported
    model = tf.saved_model.load(first)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        model.signatures["serving_default"](images=tf.constant([b"plain text"]))
