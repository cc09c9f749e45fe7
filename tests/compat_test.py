"""Files written by keras_alexnet 0.1.0, before the package took its subpackages, still work.

The files are in tests/testdata/v0_1_0/; tests/testdata/make_v0_1_0.py says how they were
made. Only public entry points are used: `import keras_alexnet`, `keras.models.load_model`
and the trainer's `train(config)`.
"""

import json
import os
import re
import shutil

import fresh_process
import numpy as np
import tiny
from event_files import logged_scalars

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
