"""export: versions, a SavedModel without XLA ops that serves image bytes, and a .keras file,
each loaded in a fresh process.

The run they export, `trained`, and its two exported versions, `exported`, are session
fixtures in conftest.py.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap

import fresh_process
import numpy as np
import pytest
import tensorflow as tf
import wild_images
from fresh_process import run_module
from tensorflow.core.protobuf import saved_model_pb2

from keras_alexnet.data import bad_images
from keras_alexnet.data import image_files
from keras_alexnet.data import preprocessing
from keras_alexnet.data import stats as stats_lib
from keras_alexnet.runs import folder as run_dir
from keras_alexnet.serving import formats
from keras_alexnet.serving import prediction
from keras_alexnet.serving import saved_model as export


def test_no_run_or_no_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"class_names": ["a"]}))
    with pytest.raises(ValueError, match="holds no training run"):
        export.export_run(str(tmp_path / "nothing"), str(tmp_path / "out"))
    result = run_module("export", f"--model_dir={tmp_path}", f"--output_dir={tmp_path / 'o'}")
    assert result.returncode == 1 and "no checkpoint" in result.stderr


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
    pixel_out = model.signatures["predict_pixels"](rgb=tf.constant(np.load(pixels_path)))
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
    stats = stats_lib.Stats.load(os.path.join(model_dir, run_dir.STATS_FILE))
    image_path = sorted(glob.glob(os.path.join(root, "validation", "*", "*.jpg")))[0]
    with open(image_path, "rb") as f:
        data = f.read()
    pixels = preprocessing.preprocess_for_eval(data, stats).numpy()[None]
    want = model(pixels, training=False).numpy()[0]
    # predict_pixels takes raw RGB 0-255, the central patch: the mean is subtracted inside.
    image = preprocessing.decode_and_center_crop(data)
    np.save(tmp_path / "pixels.npy", preprocessing.center_crop(image).numpy()[None])
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


# docs/serving.md's two lines from an image file to model.keras's input, then the model.
RAW_PIXELS = textwrap.dedent("""
    import json, sys
    import keras, numpy as np, tensorflow as tf
    import keras_alexnet
    model = keras.models.load_model(sys.argv[1])
    for path in sys.argv[2:]:
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image = keras.layers.Resizing(256, 256, crop_to_aspect_ratio=True)(tf.cast(image, "float"))
        pixels = keras.layers.CenterCrop(227, 227)(image)  # raw RGB 0-255, 227x227
        print(json.dumps(model.predict(np.asarray(pixels)[None], verbose=0)[0].tolist()))
""")


def test_keras_file_takes_raw_pixels_in_a_fresh_process(exported, trained):
    model_dir, root = trained
    _, first, _ = exported
    paths = sorted(glob.glob(os.path.join(root, "validation", "*", "*.jpg")))[::6]
    keras_file = os.path.join(first, export.KERAS_FILE)
    result = fresh_process.run_script(RAW_PIXELS, keras_file, *paths)
    assert result.returncode == 0, result.stderr[-3000:]
    got = [json.loads(line) for line in result.stdout.strip().splitlines()[-len(paths) :]]
    # The package's own path: the run's checkpoint, the evaluation preprocessing.
    fn, _ = prediction.serving_function(model_dir=model_dir)
    for path, probabilities in zip(paths, got):
        with open(path, "rb") as f:
            want = fn(images=tf.constant([f.read()]))["probabilities"].numpy()[0]
        np.testing.assert_allclose(probabilities, want, rtol=1e-4, atol=1e-6, err_msg=path)


def test_saved_model_holds_each_weight_once(exported, trained):
    model_dir, _ = trained
    _, first, _ = exported
    model, _ = run_dir.restore_model(model_dir)
    # The model's weights and the mean image its signatures subtract inside.
    mean = run_dir.read_stats(model_dir).mean_image
    weights = [np.asarray(w) for w in model.weights] + [mean]
    weight_bytes = sum(w.nbytes for w in weights)
    folder = os.path.join(first, "variables")
    saved = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    assert weight_bytes < saved <= 1.1 * weight_bytes, (saved, weight_bytes)
    loaded = tf.saved_model.load(first)
    assert sorted(v.shape.num_elements() for v in loaded.variables) == sorted(
        w.size for w in weights
    )


def test_bytes_that_are_not_an_image_fail_clearly(exported):
    _, first, _ = exported
    model = tf.saved_model.load(first)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        model.signatures["serving_default"](images=tf.constant([b"plain text"]))


def test_serving_reads_alpha_and_grey_images_as_rgb_and_refuses_misread_ones(exported, tmp_path):
    _, first, _ = exported
    serve = tf.saved_model.load(first).signatures["serving_default"]
    files = wild_images.write_corpus(str(tmp_path / "wild"))
    path_of = {os.path.basename(p): p for p in files}
    for name in (
        "alpha.webp",
        "animated.webp",
        "rgba.png",
        "la.png",
        "transparent.gif",
        "grey16.png",
    ):
        with open(path_of[name], "rb") as f:
            got = serve(images=tf.constant([f.read()]))["probabilities"].numpy()
        # The same pixels as PIL's RGB conversion, given as a plain RGB PNG.
        rgb_png = tf.io.encode_png(wild_images.pil_rgb(path_of[name]))
        want = serve(images=tf.reshape(rgb_png, [1]))["probabilities"].numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7, err_msg=name)
    with open(path_of["palette.bmp"], "rb") as f:
        with pytest.raises(tf.errors.InvalidArgumentError) as raised:
            serve(images=tf.constant([f.read()]))
    reason = bad_images.error_summary(raised.value.message)
    assert reason == image_files.image_file_problem(path_of["palette.bmp"])


def test_int8_of_a_model_file_calibrates_on_a_folder_of_validation_images(
    exported, trained, tmp_path, monkeypatch
):
    _, root = trained
    val = tmp_path / "val"  # class folders, no train/
    for name in sorted(os.listdir(os.path.join(root, "validation")))[:2]:
        shutil.copytree(os.path.join(root, "validation", name), val / name)
    calibrated = []
    calibration_pixels = formats.calibration_pixels

    def recorded(source, *args, split="train", **kwargs):
        pixels = calibration_pixels(source, *args, split=split, **kwargs)
        calibrated.append((sorted(source.files(split)[0]), len(pixels)))
        return pixels

    monkeypatch.setattr(formats, "calibration_pixels", recorded)
    version = export.export_run(
        model=str(exported[1]),
        output_dir=str(tmp_path / "out"),
        formats="litert",
        quantize="int8",
        calibration_images=4,
        data_dir=str(val),
    )
    assert os.path.exists(os.path.join(version, "model_int8.tflite"))
    assert calibrated == [(sorted(str(p) for p in val.glob("*/*")), 4)]
