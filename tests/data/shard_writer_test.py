"""prepare and prepared: the 256x256 images written once, and training from them."""

import json
import os
import shutil
from dataclasses import replace as dataclass_replace

import numpy as np
import pytest
import tensorflow as tf
import tiny
from fresh_process import run_module

from keras_alexnet.data import folder_sources
from keras_alexnet.data import preprocessing
from keras_alexnet.data import shard_writer as prepare
from keras_alexnet.data import shards as prepared
from keras_alexnet.training import trainer as train


@pytest.fixture(scope="module")
def prepared_dir(tiny_root, tmp_path_factory):
    """The tiny set with a damaged file, prepared by the command line tool: (dir, data)."""
    data = tmp_path_factory.mktemp("prep") / "data"
    shutil.copytree(tiny_root, data)
    (sorted((data / "train").iterdir())[0] / "damaged.png").write_bytes(tiny.damaged_png())
    out = data.parent / "prepared"
    result = run_module(
        "prepare",
        "--dataset=folder",
        f"--data_dir={data}",
        f"--output_dir={out}",
        "--images_per_shard=10",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"--dataset=prepared:{out}" in result.stdout
    return out, data


def test_the_prepared_folder_has_the_sources_classes_counts_and_bad_files(prepared_dir):
    out, data = prepared_dir
    folder = folder_sources.folder_source(str(data))
    source = prepared.prepared_source(f"prepared:{out}")
    assert source.class_names == folder.class_names
    # The damaged file passes the scan, fails to decode, and is left out.
    assert (source.num_train, source.num_validation) == (folder.num_train - 1, 16)
    assert [os.path.basename(p) for p, _ in source.bad_files] == ["damaged.png"]
    assert "damaged.png" in (out / "bad_images.txt").read_text()
    metadata = json.loads((out / prepared.METADATA).read_text())
    assert len(metadata["splits"]["train"]["shards"]) == 5  # 48 images, 10 a shard
    labels = [int(label) for _, label in source.examples("train").as_numpy_iterator()]
    # Every training image once, with its folder's label; each shard mixes classes, as the
    # images were written in a shuffled order.
    want = np.bincount(folder.files("train")[1]) - np.bincount([0], minlength=4)
    assert np.bincount(labels).tolist() == want.tolist()
    assert len(set(labels[:10])) > 1


# The largest mean difference per value the README states for each encoding.
STATED_DIFFERENCE = {"png": 0.5, "jpeg444": 2.0, "jpeg": 3.0}


@pytest.mark.parametrize("encoding", ["png", "jpeg444", "jpeg"])
def test_prepared_pixels_against_decoding_on_the_fly(tiny_root, tmp_path, encoding):
    folder = folder_sources.folder_source(tiny_root)
    out = tmp_path / encoding
    prepare.prepare(folder, str(out), encoding=encoding, images_per_shard=100)
    source = prepared.prepared_source(str(out))
    paths = dict(zip(*[list(x) for x in folder.files("validation")]))
    on_the_fly = {int(label): [] for label in set(paths.values())}  # label -> images
    for path, label in paths.items():
        with open(path, "rb") as f:
            on_the_fly[int(label)].append(preprocessing.decode_and_center_crop(f.read()).numpy())
    diffs = []
    for encoded, label in source.examples("validation").as_numpy_iterator():
        image = preprocessing.decode_and_center_crop(encoded).numpy()
        # The prepared order is shuffled: match the image to the nearest of its class.
        diffs.append(min(np.abs(image - ref).mean() for ref in on_the_fly[int(label)]))
        if encoding == "png":  # lossless: only the rounding to uint8
            assert min(np.abs(image - ref).max() for ref in on_the_fly[int(label)]) <= 0.5
    assert len(diffs) == folder.num_validation
    print(encoding, np.mean(diffs))
    assert np.mean(diffs) < STATED_DIFFERENCE[encoding], np.mean(diffs)


def test_an_interrupted_preparation_resumes_and_other_settings_are_refused(tiny_root, tmp_path):
    folder = folder_sources.folder_source(tiny_root)
    out = tmp_path / "prepared"
    prepare.prepare(folder, str(out), images_per_shard=16)
    shards = sorted(p for p in os.listdir(out) if p.endswith(".tfrecord"))
    kept = {name: os.stat(out / name).st_mtime_ns for name in shards[1:]}
    first = (out / shards[0]).read_bytes()
    (out / shards[0]).unlink()
    prepare.prepare(folder, str(out), images_per_shard=16)
    assert (out / shards[0]).read_bytes() == first  # written again, the same
    assert {name: os.stat(out / name).st_mtime_ns for name in shards[1:]} == kept
    with pytest.raises(ValueError, match="quality=90.*quality=80"):
        prepare.prepare(folder, str(out), quality=80, images_per_shard=16)
    with pytest.raises(ValueError, match="not a prepared folder"):
        prepared.prepared_source(str(tmp_path / "nothing"))


def test_training_from_prepared_shards_resumes_exactly(prepared_dir, tmp_path):
    out, _ = prepared_dir
    cfg = dataclass_replace(
        tiny.train_config(tmp_path / "straight", None, epochs=2, deterministic=True),
        dataset=f"prepared:{out}",
        data_dir=None,
    )
    straight = train.train(cfg)
    assert straight["step"] == 12  # 48 images: 6 steps of 8 an epoch
    cut = dataclass_replace(cfg, model_dir=str(tmp_path / "cut"))
    assert train.train(dataclass_replace(cut, max_steps=8))["step"] == 8  # epoch 2, step 2
    resumed = train.train(cut)
    assert resumed["weights_sha256"] == straight["weights_sha256"]
    assert tf.io.gfile.exists(os.path.join(cut.model_dir, "labels.txt"))


def test_two_replicas_train_from_prepared_shards_with_dropout_and_validation(
    prepared_dir, tmp_path
):
    out, _ = prepared_dir
    args = [
        f"--dataset=prepared:{out}",
        f"--model_dir={tmp_path / 'run'}",
        "--variant=tiny",
        "--cpu_replicas=2",
        "--batch_size=8",
        "--epochs=1",
        "--stats_images=16",
        "--learning_rate=0.001",
        "--projector_images=0",
    ]
    result = run_module("train", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "over 2 replica(s)" in result.stdout
    # Every validation image counted once, the last step's padding none.
    assert "over 16 images" in result.stdout, result.stdout[-3000:]
    assert "Done: step 6" in result.stdout
