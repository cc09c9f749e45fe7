"""Files written by keras_alexnet 0.1.0, before the package took its subpackages, still work:
its .keras file, its training run, and its export (every file of which took pixels with the
training mean subtracted, where today's take raw RGB).

The files are in tests/testdata/v0_1_0/; tests/testdata/make_v0_1_0.py says how they were
made. The .keras file and the run are read through public entry points only: `import
keras_alexnet`, `keras.models.load_model` and the trainer's `train(config)`; the export
through what runs exported files: predict's runtimes and the formats benchmark's runners.
"""

import json
import os
import re
import shutil

import fresh_process
import numpy as np
import pytest
import tensorflow as tf
import tiny
from event_files import logged_scalars

from keras_alexnet.benchmarks import format_process
from keras_alexnet.benchmarks import format_speed
from keras_alexnet.runs import folder as run_dir
from keras_alexnet.serving import formats
from keras_alexnet.serving import prediction
from keras_alexnet.serving import saved_model as export
from keras_alexnet.training import trainer

SAVED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "testdata", "v0_1_0")

# Loads the .keras file as a user would, in a process that has only imported the package.
LOAD_AND_PREDICT = """
import json, sys
import keras_alexnet
import keras
import numpy as np
saved = sys.argv[1]
model = keras.models.load_model(saved + "/model.keras")
images = np.load(saved + "/images.npy").astype("float32")
probs = model.predict(images, verbose=0)
layers = sorted({keras.saving.get_registered_name(type(layer)) for layer in model.layers})
top = keras_alexnet.decode_predictions(probs, top=1, model=model)
print("RESULT " + json.dumps(dict(
    probs=probs.tolist(),
    class_names=model.get_layer("class_names").class_names,
    layers=layers,
    top=[[name for name, _, _ in image] for image in top],
)))
"""


def test_a_model_file_saved_by_0_1_0_loads_and_predicts_the_same():
    ran = fresh_process.run_script(LOAD_AND_PREDICT, SAVED)
    assert ran.returncode == 0, ran.stderr[-3000:]
    line = [line for line in ran.stdout.splitlines() if line.startswith("RESULT ")][-1]
    result = json.loads(line.split(" ", 1)[1])
    # The saved classes are registered under the names 0.1.0 gave them, whatever their
    # Python names and modules are now.
    assert {
        "keras_alexnet>ClassNames",
        "keras_alexnet>Dense",
        "keras_alexnet>Dropout",
        "keras_alexnet>GroupedConv2D",
        "keras_alexnet>LocalResponseNormalization",
    } <= set(result["layers"]), result["layers"]
    with open(os.path.join(SAVED, "class_names.txt")) as f:
        class_names = f.read().splitlines()
    assert result["class_names"] == class_names
    expected = np.load(os.path.join(SAVED, "predictions.npy"))
    # The two images' predictions differ: the comparison sees the input, not only biases.
    assert np.abs(expected[0] - expected[1]).max() > 0.01
    np.testing.assert_allclose(result["probs"], expected, rtol=1e-5, atol=1e-6)
    assert result["top"] == [[class_names[i]] for i in expected.argmax(axis=1)]


def test_a_run_saved_by_0_1_0_resumes_where_it_stopped(tmp_path, tiny_root, capsys):
    # 0.1.0 trained tiny.train_config(..., checkpoint_every=100, log_every=1, max_steps=2)
    # and stopped after step 2 of the epoch's 6; the same run, without max_steps, goes on.
    model_dir = tmp_path / "run"
    shutil.copytree(os.path.join(SAVED, "run"), model_dir)
    # run.json names the data by its absolute path, which a resumed run must keep: the
    # images are the same built-in set (tiny.SHAPES, seed 0), written here elsewhere.
    run_file = model_dir / "run.json"
    recorded = json.loads(run_file.read_text())
    run_file.write_text(run_file.read_text().replace(recorded["data_dir"], str(tiny_root)))
    capsys.readouterr()
    # No --recipe: 0.1.0 recorded none, and the run goes on with the one it took then (the
    # paper's for a folder; the new default, "scratch", would change its input scale).
    result = trainer.train(
        tiny.train_config(model_dir, tiny_root, checkpoint_every=100, log_every=1, recipe=None)
    )
    printed = capsys.readouterr().out
    assert re.search(r"Resuming from \S+ckpt-2: epoch 1, step 2 of 6", printed), printed[-3000:]
    assert result["step"] == 6 and result["epoch"] == 1
    assert np.isfinite(result["train"]["cross_entropy"])
    assert result["checkpoint"].endswith("ckpt-6")
    # Only steps 3 to 6 were trained (and logged) by the resumed run.
    assert sorted(logged_scalars(model_dir / "train", "learning_rate")) == [3, 4, 5, 6]
    assert (model_dir / "labels.txt").read_text() == (
        open(os.path.join(SAVED, "run", "labels.txt")).read()
    )


# What 0.1.0's export wrote of a model file with a mean image beside it, every file taking
# float32 pixels with the mean subtracted, and 0.1.0's probabilities of each (and of the
# SavedModel it wrote too, not kept) for images.npy (make_v0_1_0.py).
EXPORT = os.path.join(SAVED, "export", "1")
FILES = ("model.keras", "model.tflite", "model_int8.tflite", "model.onnx")


def _need_runtimes(*more):
    for name in ("onnxruntime", "ai_edge_litert.interpreter", *more):
        pytest.importorskip(name, reason="the onnx and litert extras are not installed")


def _raw_images_and_mean():
    """images.npy as raw RGB central patches, and the export's mean window."""
    images = np.load(os.path.join(SAVED, "images.npy")).astype(np.float32)
    stats = run_dir.read_stats(EXPORT)
    return images, format_speed.mean_window(stats, images.shape[1])


def test_files_exported_by_0_1_0_are_told_apart_and_run_as_then():
    # Told apart by their input's name ("pixels", not "rgb"; the .keras file by having no
    # mean image inside); the formats benchmark's runners subtract the mean for them.
    _need_runtimes()
    expected = np.load(os.path.join(SAVED, "export_predictions.npz"))
    assert sorted(expected.files) == sorted(("SavedModel", *FILES))
    images, mean = _raw_images_and_mean()
    # The two images' probabilities differ, and differ from those of the unsubtracted
    # pixels: the comparison sees what the files are given.
    assert np.abs(expected["SavedModel"][0] - expected["SavedModel"][1]).max() > 0.01
    for name in FILES:
        runner, _ = format_process.open_file(os.path.join(EXPORT, name), threads=None)
        assert runner.takes_raw is False, name
        got = runner(format_process.file_input(runner, images, mean))
        np.testing.assert_allclose(got, expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
        assert np.abs(runner(images) - got).max() > 0.05, name
    np.testing.assert_allclose(expected["model.tflite"], expected["SavedModel"], atol=1e-5)
    int8 = formats.open_runtime(os.path.join(EXPORT, "model_int8.tflite"))
    assert int8.input["dtype"] == np.float32  # 0.1.0's int8 file quantized its input itself


def test_predict_on_files_exported_by_0_1_0_gives_what_their_keras_file_gives(tmp_path):
    _need_runtimes()
    images, _ = _raw_images_and_mean()
    paths = []
    for i, image in enumerate(images.astype(np.uint8)):
        paths.append(str(tmp_path / f"{i}.png"))
        tf.io.write_file(paths[-1], tf.io.encode_png(image))
    # The .keras file through model_files (its mean image from dataset_stats.npz beside it).
    keras_file, _ = prediction.serving_function(model=os.path.join(EXPORT, "model.keras"))
    want = prediction.predict_files(keras_file, paths)
    for name in FILES:
        got = prediction.predict_files(formats.serving_function(os.path.join(EXPORT, name)), paths)
        for (_, result, error), (_, expected, _) in zip(got, want):
            assert error is None, (name, error)
            probabilities = [p for _, p in result], [p for _, p in expected]
            if name == "model_int8.tflite":
                np.testing.assert_allclose(*probabilities, atol=0.2, err_msg=name)
            else:
                np.testing.assert_allclose(*probabilities, rtol=1e-4, atol=1e-6, err_msg=name)
                assert [label for label, _ in result] == [label for label, _ in expected]


def test_the_same_model_exported_again_takes_raw_pixels_and_predicts_as_0_1_0s_export(
    tmp_path, tiny_root
):
    _need_runtimes("tf2onnx")
    version = export.export_run(
        model=os.path.join(EXPORT, "model.keras"),  # with dataset_stats.npz beside it
        output_dir=str(tmp_path),
        formats="saved_model,litert,onnx",
        quantize="none,int8",
        calibration_images=16,
        data_dir=tiny_root,
    )
    expected = np.load(os.path.join(SAVED, "export_predictions.npz"))
    images, _ = _raw_images_and_mean()  # raw pixels, for every new file
    saved = tf.saved_model.load(version).signatures["predict_pixels"]
    got = {"SavedModel": saved(rgb=tf.constant(images))["probabilities"].numpy()}
    for name in FILES:
        runner = formats.open_runtime(os.path.join(version, name))
        assert runner.takes_raw, name
        got[name] = runner(images)
    for name, probs in got.items():
        print(name, "max |p - p(0.1.0)|", float(np.abs(probs - expected[name]).max()))
        assert probs.argmax(-1).tolist() == expected[name].argmax(-1).tolist(), name
        if name != "model_int8.tflite":
            np.testing.assert_allclose(probs, expected[name], rtol=1e-4, atol=1e-6, err_msg=name)
        else:  # calibrated again, on raw pixels, uint8 in
            np.testing.assert_allclose(probs, expected[name], atol=0.1, err_msg=name)
