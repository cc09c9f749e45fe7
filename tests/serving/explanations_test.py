"""Explanations: Grad-CAM against finite differences in NumPy, nearest neighbours, boxes,
and the explain tool against predict (`trained` is a session fixture in conftest.py)."""

import glob
import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny
from fresh_process import command
from fresh_process import run_together
from google.protobuf import text_format
from tensorboard.plugins.projector import projector_config_pb2

import keras_alexnet
from keras_alexnet.data import preprocessing
from keras_alexnet.runs import model_files
from keras_alexnet.serving import explanations
from keras_alexnet.training import projector


@pytest.fixture(scope="module")
def model():
    tiny.register()
    keras.utils.set_random_seed(3)
    return keras_alexnet.AlexNet(5, variant="tiny", init="he")


def _numpy_head(conv5, model):
    """pool5 (3x3, stride 2), flatten, fc6, fc7 (ReLU) and fc8's logits, in float64 NumPy."""
    n, h, w, c = conv5.shape
    out = (h - 3) // 2 + 1
    pooled = np.empty((n, out, out, c))
    for i in range(out):
        for j in range(out):
            pooled[:, i, j] = conv5[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3].max(axis=(1, 2))
    x = pooled.reshape(n, -1)
    for name in ("fc6", "fc7", "fc8"):
        layer = model.get_layer(name)
        x = x @ keras.ops.convert_to_numpy(layer.kernel) + keras.ops.convert_to_numpy(layer.bias)
        x = np.maximum(x, 0.0) if name != "fc8" else x
    return x


def test_grad_cam_is_the_gradient_weighted_sum_of_conv5(model):
    images = np.random.default_rng(0).normal(0, 60, (2, 227, 227, 3)).astype(np.float32)
    maps, probs = explanations.grad_cam(model, images)
    conv5 = keras.ops.convert_to_numpy(
        keras_alexnet.feature_extractor(model, "conv5")(images)["conv5"]
    )
    conv5 = conv5.astype(np.float64)
    np.testing.assert_allclose(probs, keras.ops.convert_to_numpy(model(images)), rtol=1e-5)
    top = probs.argmax(axis=1)
    # Each map's weight: the logit's change when the whole map moves by eps, over its size.
    eps = 1e-4
    weights = np.empty((2, conv5.shape[-1]))
    for k in range(conv5.shape[-1]):
        step = np.zeros_like(conv5)
        step[..., k] = eps
        change = _numpy_head(conv5 + step, model) - _numpy_head(conv5 - step, model)
        weights[:, k] = change[np.arange(2), top] / (2 * eps) / (conv5.shape[1] * conv5.shape[2])
    expected = np.maximum((conv5 * weights[:, None, None, :]).sum(-1), 0.0)
    assert maps.shape == expected.shape == (2, 13, 13)
    assert expected.max() > 0
    np.testing.assert_allclose(maps, expected, rtol=1e-3, atol=1e-4 * expected.max())


def test_upsampled_maps_span_zero_to_one():
    maps = np.zeros((2, 13, 13), np.float32)
    maps[0, 3, 4] = 5.0
    big = explanations.upsample(maps, 227)
    assert big.shape == (2, 227, 227)
    assert big[0].max() == pytest.approx(1.0) and big[0].min() == 0.0
    assert np.unravel_index(big[0].argmax(), (227, 227)) == pytest.approx(
        (3.5 * 227 / 13, 4.5 * 227 / 13), abs=9
    )
    assert not big[1].any()  # a map without any positive evidence stays zero


def test_nearest_against_a_loop():
    rng = np.random.default_rng(1)
    queries, refs = rng.normal(size=(4, 7)), rng.normal(size=(20, 7))
    exclude = np.zeros((4, 20), bool)
    exclude[0, 5] = True
    order, distances = explanations.nearest(queries, refs, k=6, exclude=exclude)
    for q in range(4):
        pairs = sorted(
            (float(np.sqrt(((queries[q] - refs[r]) ** 2).sum())), r)
            for r in range(20)
            if not exclude[q, r]
        )[:6]
        assert list(order[q]) == [r for _, r in pairs]
        np.testing.assert_allclose(distances[q], [d for d, _ in pairs], rtol=1e-9)
    assert 5 not in order[0]


def test_patch_box_follows_the_evaluation_crop(tmp_path):
    """A white box drawn in a file lands where patch_box says in the preprocessed patch."""
    for shape, box in (((64, 80), (10, 30, 40, 70)), ((300, 200), (120, 20, 260, 90))):
        pixels = np.zeros((*shape, 3), np.uint8)
        top, left, bottom, right = box
        pixels[top:bottom, left:right] = 255
        patch = preprocessing.center_crop(
            preprocessing.decode_and_center_crop(tf.io.encode_png(pixels), 256), 227
        ).numpy()
        rows, cols = (
            (patch[..., 0] > 127).any(axis=1).nonzero()[0],
            (patch[..., 0] > 127).any(axis=0).nonzero()[0],
        )
        found = (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)
        assert explanations.patch_box(box, shape, 256, 227) == pytest.approx(found, abs=2)


def test_inside_outside_ratio():
    cam = np.zeros((10, 10))
    cam[2:4, 2:4] = 1.0
    cam[8, 8] = 1.0
    # Inside: 4 / 4 pixels; outside: 1 / 96.
    assert explanations.inside_outside_ratio(cam, (2, 2, 4, 4)) == pytest.approx(96.0)
    assert explanations.inside_outside_ratio(cam, (5, 5, 10, 10)) < 1


def test_list_images_and_true_label(tmp_path):
    (tmp_path / "cats" / "deep").mkdir(parents=True)
    for name in ("cats/b.jpg", "cats/a.PNG", "cats/notes.txt", "cats/deep/c.webp"):
        (tmp_path / name).write_bytes(b"x")
    found = explanations.list_images([str(tmp_path / "cats"), str(tmp_path / "cats/notes.txt")])
    assert [os.path.relpath(p, tmp_path) for p in found] == [
        "cats/a.PNG",
        "cats/b.jpg",
        "cats/deep/c.webp",
        "cats/notes.txt",
    ]
    assert explanations.true_label(found[0], ("dogs", "cats")) == "cats"
    assert explanations.true_label(found[2], ("dogs", "cats")) is None
    with pytest.raises(ValueError, match="no such file or folder: .*missing.jpg"):
        explanations.list_images([str(tmp_path / "missing.jpg")])


def _predicted(stdout):
    """{path: [(label, probability)]} from predict's lines."""
    results, path = {}, None
    for line in stdout.splitlines():
        match = re.fullmatch(r"\s+([\d.]+)%\s+(\S+)", line)
        if match:
            results[path].append((match[2], float(match[1]) / 100))
        elif line.strip() and not line.startswith(("Model ", " ")):
            path = line.strip()
            results[path] = []
    return results


def test_explain_tool_matches_predict_and_writes_a_projector(trained, tmp_path):
    model_dir, root = trained
    images = sorted(glob.glob(os.path.join(root, "validation", "*", "*.jpg")))[:4]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a JPEG")
    out = tmp_path / "explained"
    explain, predict = run_together(
        command(
            "explain",
            f"--model_dir={model_dir}",
            f"--output_dir={out}",
            f"--neighbours={os.path.join(root, 'train')}",
            "--projector",
            *images,
            bad,
        ),
        command("predict", f"--model_dir={model_dir}", *images),
    )
    assert explain.returncode == 1, explain.stderr[-3000:]  # the bad file
    assert predict.returncode == 0, predict.stderr[-3000:]
    assert f"error: {bad}: skipped, does not decode" in explain.stderr
    assert "Traceback" not in explain.stderr
    records = json.loads((out / "explanations.json").read_text())
    assert [r["path"] for r in records] == images
    predicted = _predicted(predict.stdout)
    train_files = glob.glob(os.path.join(root, "train", "*", "*.jpg"))
    for record in records:
        probs = [t["probability"] for t in record["top5"]]
        assert sum(probs) <= 1 + 1e-6 and probs == sorted(probs, reverse=True)
        want = predicted[record["path"]]
        assert [t["label"] for t in record["top5"]] == [label for label, _ in want]
        np.testing.assert_allclose(probs, [p for _, p in want], atol=6e-5)  # printed to 0.01%
        assert record["true_label"] == os.path.basename(os.path.dirname(record["path"]))
        assert len(record["neighbours"]) == 6
        assert all(n["path"] in train_files for n in record["neighbours"])
        distances = [n["distance"] for n in record["neighbours"]]
        assert distances == sorted(distances) and distances[0] > 0
        assert (out / record["image"]).is_file() and (out / record["gradcam"]).is_file()
    page = (out / "index.html").read_text()
    assert page.count('class="card"') == 4 and page.count('class="bar true"') <= 4
    assert not re.search(r"(src|href)=\"(?!data:)", page)  # every picture inline
    assert str(bad) in page  # the skipped file named on the page

    folder = out / "projector"
    config = text_format.Parse(
        (folder / projector.CONFIG_FILE).read_text(), projector_config_pb2.ProjectorConfig()
    )
    embedding = config.embeddings[0]
    vectors = tf.train.load_checkpoint(str(folder / embedding.tensor_path)).get_tensor(
        embedding.tensor_name
    )
    rows = (folder / embedding.metadata_path).read_text().splitlines()
    assert rows[0] == "label\tpredicted\tset\tfile"
    assert vectors.shape == (4 + len(train_files), 64) == (len(rows) - 1, 64)
    assert [row.split("\t")[3] for row in rows[1:5]] == images
    # The first vector is the first image's fc7, computed again here from the run.
    loaded = model_files.load_model_or_run(model_dir=model_dir)
    pixels = preprocessing.preprocess_for_eval(tf.io.read_file(images[0]), loaded.stats)
    fc7 = keras_alexnet.feature_extractor(loaded.model)(pixels[None])["fc7"]
    np.testing.assert_allclose(vectors[0], keras.ops.convert_to_numpy(fc7)[0], rtol=1e-4, atol=1e-5)
    assert (folder / embedding.sprite.image_path).is_file()
    assert list(embedding.sprite.single_image_dim) == [64, 64]


def test_grad_cam_of_a_saved_and_loaded_file(model, tmp_path):
    """A .keras file (as convert and export write) gives the same maps as the built model."""
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    images = np.random.default_rng(2).normal(0, 60, (2, 227, 227, 3)).astype(np.float32)
    ours, our_probs = explanations.grad_cam(model, images)
    theirs, their_probs = explanations.grad_cam(loaded, images)
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(their_probs, our_probs, rtol=1e-5)
