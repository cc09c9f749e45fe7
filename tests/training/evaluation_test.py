"""evaluate: center and ten crops against an image-by-image computation, the CLI, errors.

The run they evaluate, `trained`, is a session fixture in conftest.py.
"""

import glob
import json
import os
import shutil

import fresh_process
import numpy as np
import pytest
import tiny
from fresh_process import run_module

from keras_alexnet.data import preprocessing
from keras_alexnet.data import stats as stats_lib
from keras_alexnet.runs import folder as run_folder
from keras_alexnet.training import evaluation


def hand_evaluation(model_dir, root, crops, folder="validation"):
    """Top-1/top-5 error computed image by image, eagerly, with NumPy, over the run's
    classes that root/folder holds."""
    model, run = run_folder.restore_model(model_dir)
    stats = stats_lib.Stats.load(os.path.join(model_dir, run_folder.STATS_FILE))
    hits1 = hits5 = count = 0
    for label, name in enumerate(run["class_names"]):
        for path in sorted(glob.glob(os.path.join(root, folder, name, "*"))):
            with open(path, "rb") as f:
                pixels = preprocessing.preprocess_for_eval(f.read(), stats, crops).numpy()
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
    report = evaluation.evaluate(model_dir, batch_size=4, crops=crops)
    top1, top5, count = hand_evaluation(model_dir, root, crops)
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


# The ten patches cover the padding of the last step too; the central patch on two
# replicas is left to `pytest -m slow`.
@pytest.mark.parametrize("crops", [pytest.param("center", marks=pytest.mark.slow), "10"])
def test_evaluate_cli_on_two_replicas_matches_one(trained, tmp_path, monkeypatch, crops):
    """18 images in batches of 4: the last step's 2 images are uneven over 2 replicas."""
    model_dir, _ = trained
    # Logical CPUs on any machine: with one GPU, --cpu_replicas=2 would run on that GPU.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    reports = {}
    # The two runs side by side, each in its own process.
    results = fresh_process.run_together(
        *[
            fresh_process.command(
                "evaluate",
                f"--model_dir={model_dir}",
                f"--cpu_replicas={replicas}",
                "--batch_size=4",
                f"--crops={crops}",
                f"--output={tmp_path / f'replicas_{replicas}.json'}",
            )
            for replicas in (1, 2)
        ]
    )
    for replicas, result in zip((1, 2), results):
        out = tmp_path / f"replicas_{replicas}.json"
        assert result.returncode == 0, result.stderr[-3000:]
        reports[replicas] = json.loads(out.read_text())
        assert reports[replicas]["replicas"] == replicas
        # The table's first line (after the progress lines) says where it ran.
        first_line = next(line for line in result.stdout.splitlines() if ", on " in line)
        assert f"on {replicas} replica" in first_line, first_line
    one, two = reports[1], reports[2]
    assert two["images"] == one["images"] == 18
    for key in ("cross_entropy", "top1_error", "top5_error"):
        assert two[key] == pytest.approx(one[key], rel=1e-5), key


def test_an_image_that_fails_to_decode_is_named_or_skipped(trained, tmp_path):
    model_dir, root = trained
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    damaged = sorted((copy / "validation").iterdir())[-1] / "damaged.png"
    damaged.write_bytes(tiny.damaged_png())
    with pytest.raises(ValueError, match="1 validation image\\(s\\) do not decode") as raised:
        evaluation.evaluate(model_dir, dataset="folder", data_dir=str(copy), on_bad_image="fail")
    assert f"{damaged}: " in str(raised.value)
    clean = evaluation.evaluate(model_dir, dataset="folder", data_dir=str(root))
    skipped = evaluation.evaluate(model_dir, dataset="folder", data_dir=str(copy))
    # The damaged file passes the scan: it is found by decoding, left out, and counted.
    assert skipped["images"] == clean["images"] and skipped["skipped"] == clean["skipped"] + 1
    assert skipped["top1_error"] == pytest.approx(clean["top1_error"])
    assert not os.path.exists(os.path.join(model_dir, "bad_images.txt.tmp"))


def test_no_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"class_names": ["a"]}))
    with pytest.raises(ValueError, match="holds no checkpoint"):
        evaluation.evaluate(str(tmp_path))


def test_the_test_split_of_a_folder(trained, tmp_path):
    model_dir, root = trained
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    shutil.copytree(copy / "validation", copy / "test")
    validation = evaluation.evaluate(model_dir, dataset="folder", data_dir=str(copy))
    test = evaluation.evaluate(model_dir, dataset="folder", data_dir=str(copy), split="test")
    assert test["split"] == "test" and test["images"] == validation["images"] == 18
    for key in ("cross_entropy", "top1_error", "top5_error"):
        assert test[key] == pytest.approx(validation[key]), key
    with pytest.raises(ValueError, match="has no test/ folder to evaluate"):
        evaluation.evaluate(model_dir, split="test")


def test_dataset_classes_map_to_the_models_by_id():
    imagenet = ["n01440764 tench, Tinca tinca", "n01443537 goldfish", "n02123045 tabby"]
    assert evaluation._label_map(["a", "b"], ["a", "b"]) is None
    assert evaluation._label_map(["n02123045", "n01440764"], imagenet) == [2, 0]
    assert evaluation._label_map(["b"], ["a", "b"]) == [1]
    with pytest.raises(ValueError, match=r"the model has no class \['n09999999'\]"):
        evaluation._label_map(["n01440764", "n09999999"], imagenet)


def test_a_model_file_needs_a_dataset(tmp_path):
    with pytest.raises(ValueError, match="name the dataset.*dataset=None"):
        evaluation.evaluate(model=str(tmp_path / "alexnet.keras"))


def test_a_folder_of_validation_images_is_evaluated_alone(trained, exported, tmp_path, capsys):
    model_dir, root = trained
    model_file = os.path.join(exported[1], "model.keras")
    classes = run_folder.read_run(model_dir)["class_names"]
    # One folder of class folders: two of the model's six classes, the model's indices.
    val = tmp_path / "val"
    for name in (classes[4], classes[1]):
        shutil.copytree(os.path.join(root, "validation", name), val / name)
    report = evaluation.evaluate(model=model_file, dataset="folder", data_dir=str(val))
    top1, top5, count = hand_evaluation(model_dir, str(tmp_path), "center", folder="val")
    assert report["images"] == count == 6
    assert report["top1_error"] == pytest.approx(top1)
    assert report["top5_error"] == pytest.approx(top5)
    # A class the model does not know is named.
    shutil.copytree(val / classes[4], val / "zebra")
    with pytest.raises(ValueError, match=r"the model has no class \['zebra'\]"):
        evaluation.evaluate(model=model_file, dataset="folder", data_dir=str(val))
    # A validation/ folder beside empty train/<class> folders: the run's validation set.
    data = tmp_path / "data"
    shutil.copytree(os.path.join(root, "validation"), data / "validation")
    for name in classes:
        (data / "train" / name).mkdir(parents=True)
    capsys.readouterr()
    ten = evaluation.evaluate(model=model_file, dataset="folder", data_dir=str(data), crops="10")
    assert ten["images"] == 18 and ten["dataset"] == f"folder:{data}"
    printed = capsys.readouterr().out
    assert "Evaluating 18 validation images (ten patches)" in printed
    assert "  18/18 images, " in printed
    # No model_dir: the decode check says nothing of recording in one.
    assert "Decoding the 18 validation images once, to leave out" in printed
    assert "recorded in the model_dir" not in printed
