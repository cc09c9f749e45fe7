"""How tests/testdata/v0_1_0/ was made: files written by keras_alexnet 0.1.0.

Version 0.1.0 is the last one with the flat layout (keras_alexnet/layers.py, labels.py,
train.py, ...). `tests/compat_test.py` loads what it wrote with today's package. To write
the files again, check that version out and run this script with it first on the path:

    git worktree add --detach OLD e43cf03
    PYTHONPATH=OLD python tests/testdata/make_v0_1_0.py OLD tests/testdata/v0_1_0

It writes:
    model.keras: the tests' tiny variant (every layer class 0.1.0 registers: GroupedConv2D,
        LocalResponseNormalization, Dense, Dropout, ClassNames) with He initialisation
        (so that its outputs depend on its input) and an input rescaling, seeded.
    images.npy: two 227x227 RGB images (uint8, seeded); predictions.npy: the model's
        probabilities for them, as float32; class_names.txt: its class names, one a line.
    run/: a tiny training run (tests/tiny.py's `train_config`) stopped after 2 of its 6
        steps, with only what a resumed run reads: run.json, labels.txt, bad_images.txt,
        dataset_stats.npz and the step-2 checkpoint. Its data (the built-in shapes set,
        tiny.SHAPES) is written to a temporary folder, whose path run.json records.
    export/1/: what 0.1.0's export wrote of a tiny He-initialised model file, inputs scaled
        by 1/127.5 after the mean (its outputs
        depend on its input) with run/'s mean image beside it (`export --model=...
        --format=litert,onnx --quantize=none,int8`, int8 calibrated on 16 images of the
        shapes set, made again in a temporary folder), every file taking float32 pixels
        with the training mean subtracted: model.keras, model.tflite, model_int8.tflite,
        model.onnx, labels.txt, dataset_stats.npz. The SavedModel it also wrote (2 MB, its
        graph holding the mean image) is left out.
        export_predictions.npz: each file's probabilities for images.npy taken as central
        patches (raw RGB) less the mean image's central window, computed by 0.1.0
        (formats.load), and the SavedModel's (its predict_pixels signature).

With a third argument, export, only export/ and export_predictions.npz are written (from
the run/ already there).
"""

import os
import shutil
import sys
import tempfile

OLD, OUT = sys.argv[1:3]
sys.path[:0] = [OLD, os.path.join(OLD, "tests")]

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tiny  # noqa: E402

import keras_alexnet  # noqa: E402
from keras_alexnet import shapes_dataset  # noqa: E402
from keras_alexnet import train  # noqa: E402

CLASS_NAMES = ["n0 circle", "n1 square", "n2 triangle", "n3 cross"]
# What a resumed run reads from its model_dir (the event files are not needed).
RUN_FILES = (
    "run.json",
    "labels.txt",
    "bad_images.txt",
    "dataset_stats.npz",
    "checkpoints/checkpoint",
    "checkpoints/ckpt-2.index",
    "checkpoints/ckpt-2.data-00000-of-00001",
)


def write_model(out):
    keras.utils.set_random_seed(0)
    model = keras_alexnet.AlexNet(
        4,
        variant="tiny",
        class_names=CLASS_NAMES,
        init="he",
        input_scale=1 / 127.5,
        input_offset=-1.0,
    )
    model.save(os.path.join(out, "model.keras"))
    images = np.random.default_rng(0).integers(0, 256, (2, 227, 227, 3), dtype=np.uint8)
    np.save(os.path.join(out, "images.npy"), images)
    predictions = model.predict(images.astype("float32"), verbose=0)
    np.save(os.path.join(out, "predictions.npy"), predictions.astype("float32"))
    with open(os.path.join(out, "class_names.txt"), "w") as f:
        f.write("".join(f"{name}\n" for name in CLASS_NAMES))


def write_run(out):
    with tempfile.TemporaryDirectory() as work:
        root = shapes_dataset.ensure_shapes_dataset(os.path.join(work, "shapes"), **tiny.SHAPES)
        model_dir = os.path.join(work, "run")
        config = tiny.train_config(model_dir, root, checkpoint_every=100, log_every=1, max_steps=2)
        result = train.train(config)
        assert result["step"] == 2 and result["checkpoint"].endswith("ckpt-2"), result
        for name in RUN_FILES:
            target = os.path.join(out, "run", name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(os.path.join(model_dir, name), target)


def write_export(out):
    import tensorflow as tf

    from keras_alexnet import export
    from keras_alexnet import formats

    with tempfile.TemporaryDirectory() as work:
        root = shapes_dataset.ensure_shapes_dataset(os.path.join(work, "shapes"), **tiny.SHAPES)
        source = os.path.join(work, "model")
        os.makedirs(source)
        keras.utils.set_random_seed(1)
        model = keras_alexnet.AlexNet(
            4, variant="tiny", class_names=CLASS_NAMES, init="he", input_scale=1 / 127.5
        )
        model.save(os.path.join(source, "model.keras"))
        shutil.copyfile(
            os.path.join(out, "run", "dataset_stats.npz"),
            os.path.join(source, "dataset_stats.npz"),
        )
        shutil.rmtree(os.path.join(out, "export"), ignore_errors=True)
        version = export.export_run(
            model=os.path.join(source, "model.keras"),
            output_dir=out,
            name="export",
            formats="saved_model,litert,onnx",
            quantize="none,int8",
            calibration_images=16,
            data_dir=root,
        )
    assert version == os.path.join(out, "export", "1"), version
    mean = np.load(os.path.join(version, "dataset_stats.npz"))["mean_image"]
    top = (len(mean) - 227) // 2
    images = np.load(os.path.join(out, "images.npy")).astype(np.float32)
    pixels = images - mean[top : top + 227, top : top + 227]
    signature = tf.saved_model.load(version).signatures["predict_pixels"]
    predictions = {"SavedModel": signature(pixels=tf.constant(pixels))["probabilities"].numpy()}
    for name in ("model.keras", "model.tflite", "model_int8.tflite", "model.onnx"):
        predictions[name] = formats.load(os.path.join(version, name))(pixels)
    np.savez(os.path.join(out, "export_predictions.npz"), **predictions)
    for name in ("saved_model.pb", "fingerprint.pb", "variables", "assets"):
        path = os.path.join(version, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


if __name__ == "__main__":
    assert keras_alexnet.__version__ == "0.1.0", keras_alexnet.__file__
    tiny.register()
    os.makedirs(OUT, exist_ok=True)
    if sys.argv[3:] != ["export"]:
        write_model(OUT)
        write_run(OUT)
    write_export(OUT)
