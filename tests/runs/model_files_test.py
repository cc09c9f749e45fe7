"""One model file from conversion to evaluation, serving and labels, in fresh processes;
and what `model_files.load_model_or_run` reads beside a file or refuses."""

import glob
import json
import os

import fresh_process
import image_data
import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny
from caffe_files import random_weights
from caffe_files import write_caffemodel
from fresh_process import run_module

import keras_alexnet
from keras_alexnet.data import preprocessing
from keras_alexnet.models import imagenet_classes
from keras_alexnet.runs import folder as run_dir
from keras_alexnet.runs import model_files
from keras_alexnet.serving import prediction as predict
from keras_alexnet.training import evaluation
from keras_alexnet.training import run_record

SYNSETS = ("n01440764", "n02123045", "n15075141")  # tench, tabby, toilet tissue


def hand_predictions(model, paths):
    """The model's probabilities for image files: decoded, the 256x256 centre, its central
    227x227 patch, no mean subtracted (the converted model normalises its own input)."""
    patches = []
    for path in paths:
        with open(path, "rb") as f:
            image = preprocessing.decode_and_center_crop(f.read())
        patches.append(preprocessing.center_crop(image).numpy())
    return np.asarray(model(np.stack(patches), training=False))


def test_convert_evaluate_export_predict_one_file(tmp_path):
    tiny.register()
    src = tmp_path / "bvlc_alexnet.caffemodel"
    write_caffemodel(src, random_weights(tiny.caffe_shapes(), seed=3))
    keras_file = tmp_path / "bvlc_alexnet.keras"
    data = image_data.make_folder(
        tmp_path / "photos", classes=SYNSETS, train_per_class=1, val_per_class=2
    )

    result = run_module("convert", src, f"--output={keras_file}", "--variant=tiny")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1000 classes (ILSVRC-2012, named inside)" in result.stdout

    # evaluate and export read the file side by side, each in its own process.
    report_file = tmp_path / "report.json"
    out = tmp_path / "saved_models"
    evaluated, result = fresh_process.run_together(
        fresh_process.command(
            "evaluate",
            f"--model={keras_file}",
            "--dataset=folder",
            f"--data_dir={data}",
            "--batch_size=4",
            f"--output={report_file}",
        ),
        fresh_process.command("export", f"--model={keras_file}", f"--output_dir={out}"),
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads(report_file.read_text())
    assert result.returncode == 0, result.stderr[-3000:]
    version = out / "bvlc_alexnet" / "1"
    assert f"Exported {version}" in result.stdout

    images = sorted(glob.glob(os.path.join(data, "validation", "*", "*.jpg")))
    result = run_module("predict", f"--model={out / 'bvlc_alexnet'}", *images[:2])
    assert result.returncode == 0, result.stderr[-3000:]

    # The same model, in this process: the report and the labels it should give.
    model = keras.models.load_model(keras_file, compile=False)
    probs = hand_predictions(model, images)
    labels = [imagenet_classes.synsets().index(p.split(os.sep)[-2]) for p in images]
    order = np.argsort(-probs, axis=1, kind="stable")
    top1 = np.mean([o[0] == y for o, y in zip(order, labels)])
    top5 = np.mean([y in o[:5] for o, y in zip(order, labels)])
    assert report["images"] == len(images) == 6
    assert report["top1_error"] == pytest.approx(1 - top1)
    assert report["top5_error"] == pytest.approx(1 - top5)
    assert report["checkpoint"] == str(keras_file)

    lines = result.stdout.splitlines()
    assert lines[0] == f"Model {version}"
    for path, decoded in zip(images[:2], keras_alexnet.decode_predictions(probs[:2])):
        at = lines.index(path)
        printed = [line.split("%  ", 1)[1] for line in lines[at + 1 : at + 6]]
        assert printed == [f"{synset} {name}" for synset, name, _ in decoded]
        np.testing.assert_allclose(
            [float(line.split("%")[0]) for line in lines[at + 1 : at + 6]],
            [100 * p for _, _, p in decoded],
            atol=0.006,
        )

    # predict straight from the .keras file runs the same serving function.
    serving_fn, origin = predict.serving_function(model=str(keras_file))
    assert origin == str(keras_file)
    from_file = predict.predict_files(serving_fn, images[:2])
    for (_, got, _), decoded in zip(from_file, keras_alexnet.decode_predictions(probs[:2])):
        assert [label for label, _ in got] == [f"{s} {n}" for s, n, _ in decoded]

    # The exported model.keras carries the names and the (zero) mean image beside it.
    loaded = model_files.load_model_or_run(model=str(version))
    assert loaded.class_names == imagenet_classes.class_names()
    assert loaded.name == "bvlc_alexnet" and not loaded.stats.mean_image.any()


def test_a_run_exported_loads_as_a_file_with_its_names_and_mean(trained, exported):
    model_dir, _ = trained
    out, _, second = exported
    run = run_dir.read_run(model_dir)
    loaded = model_files.load_model_or_run(model=str(out / "tiny"))
    assert loaded.origin == os.path.join(second, model_files.KERAS_FILE)
    assert list(loaded.class_names) == run["class_names"] and loaded.name == "tiny"
    np.testing.assert_array_equal(loaded.stats.mean_image, run_dir.read_stats(model_dir).mean_image)
    from_run = model_files.load_model_or_run(model_dir=model_dir)
    x = np.random.default_rng(0).normal(0, 40, (2, 227, 227, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.model(x), from_run.model(x), rtol=1e-5, atol=1e-7)


def test_what_a_file_lacks_is_named(tmp_path):
    tiny.register()
    with pytest.raises(ValueError, match="exactly one of model .* and model_dir"):
        model_files.load_model_or_run()
    with pytest.raises(ValueError, match="checkpoint names a checkpoint of a training run"):
        model_files.load_model_or_run(model="x.keras", checkpoint="ckpt-1")
    with pytest.raises(ValueError, match=r"model must be a \.keras file.*missing.keras"):
        model_files.load_model_or_run(model=str(tmp_path / "missing.keras"))
    path = str(tmp_path / "plain.keras")
    keras_alexnet.AlexNet(3, variant="tiny").save(path)
    with pytest.raises(ValueError, match="takes mean-subtracted pixels.*dataset_stats.npz"):
        model_files.load_model_or_run(model=path)
    # Beside it: the mean image and labels.txt; with neither names nor labels, the indices.
    run_dir.write_stats(str(tmp_path), image_data.random_stats())
    assert model_files.load_model_or_run(model=path).class_names == ("0", "1", "2")
    run_dir.write_labels(str(tmp_path), ["a", "b", "c"])
    loaded = model_files.load_model_or_run(model=path)
    assert loaded.class_names == ("a", "b", "c") and loaded.name == "plain"
    run_dir.write_labels(str(tmp_path), ["a", "b"])
    with pytest.raises(ValueError, match="names 2 classes; the model has 3"):
        model_files.load_model_or_run(model=path)


def test_mixed_precision_rebuilds_a_file_under_the_policy(tmp_path):
    tiny.register()
    path = str(tmp_path / "named.keras")
    model = keras_alexnet.AlexNet(
        3, variant="tiny", input_offset=-100.0, class_names=["a", "b", "c"]
    )
    model.save(path)
    loaded = model_files.load_model_or_run(model=path, mixed_precision="bfloat16")
    assert loaded.model.get_layer("conv2").compute_dtype == "bfloat16"
    assert loaded.class_names == ("a", "b", "c")
    x = tf.random.stateless_uniform((2, 227, 227, 3), (1, 2), 0, 255)
    np.testing.assert_allclose(loaded.model(x), model(x), atol=0.05)


def test_a_run_on_synset_folders_carries_the_readable_names(tmp_path):
    # Class folders named by synset, as ImageNet's are (and as fine-tuning data often are).
    data = image_data.make_folder(
        tmp_path / "photos", classes=SYNSETS, train_per_class=4, val_per_class=1
    )
    model_dir = tmp_path / "run"
    # The run's record and a checkpoint of its model, as a run that trained leaves them.
    run = run_record.prepare_run(
        tiny.train_config(model_dir, str(data), batch_size=4, on_bad_image="fail")
    )
    model = keras_alexnet.AlexNet(**run.model_args)
    checkpoint = tf.train.Checkpoint(state=tf.train.Checkpoint(model=model))
    checkpoint.write(str(model_dir / run_dir.CHECKPOINTS / "ckpt-1"))
    readable = {name.split(" ", 1)[0]: name for name in imagenet_classes.class_names()}
    expected = tuple(readable[synset] for synset in SYNSETS)
    assert expected[1] == "n02123045 tabby, tabby cat"
    loaded = model_files.load_model_or_run(model_dir=str(model_dir))
    assert loaded.class_names == expected
    fn, _ = predict.serving_function(model_dir=str(model_dir))
    image = sorted(glob.glob(os.path.join(data, "validation", "*", "*")))[0]
    [(_, labels, error)] = predict.predict_files(fn, [image])
    assert error is None and {label for label, _ in labels} == set(expected)
    # The run still names its classes by folder, and evaluates on those folders.
    assert run_dir.read_run(str(model_dir))["class_names"] == list(SYNSETS)
    report = evaluation.evaluate(str(model_dir), write_summaries=False, on_bad_image="fail")
    assert report["images"] == 3
