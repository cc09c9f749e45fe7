"""fc7 vectors in TensorBoard's projector: what a run on two replicas writes at its end,
read back as the projector plugin reads it (its config proto, the checkpoint's tensor)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny
from fresh_process import run_module
from google.protobuf import text_format
from tensorboard.plugins.projector import projector_config_pb2

import keras_alexnet
from keras_alexnet.data import preprocessing
from keras_alexnet.data import shapes
from keras_alexnet.runs import model_files
from keras_alexnet.training import projector


def _read(folder):
    config = text_format.Parse(
        open(os.path.join(folder, projector.CONFIG_FILE)).read(),
        projector_config_pb2.ProjectorConfig(),
    )
    [embedding] = config.embeddings
    reader = tf.train.load_checkpoint(os.path.join(folder, embedding.tensor_path))
    with open(os.path.join(folder, embedding.metadata_path)) as f:
        rows = [line.split("\t") for line in f.read().splitlines()]
    return embedding, reader.get_tensor(embedding.tensor_name), rows


def test_a_two_replica_run_ends_with_its_validation_fc7(tmp_path):
    tiny.register()
    root = shapes.ensure_shapes_dataset(tmp_path / "shapes", **tiny.SHAPES)
    model_dir = tmp_path / "run"
    result = run_module(
        "train",
        f"--model_dir={model_dir}",
        "--dataset=folder",
        f"--data_dir={root}",
        "--variant=tiny",
        "--strategy=mirrored",
        "--cpu_replicas=2",
        "--batch_size=8",
        "--epochs=1",
        "--stats_images=16",
        "--projector_images=10",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    folder = model_dir / "validation"
    embedding, vectors, rows = _read(folder)
    assert rows[0] == ["label", "predicted", "file"] and len(rows) == 11
    assert vectors.shape == (10, 64)  # 10 of the 16 validation images
    labels = {name for name in os.listdir(os.path.join(root, "validation"))}
    files = {}
    for label, predicted, name in rows[1:]:
        assert label in labels and predicted in labels and name.startswith(label)
        files[name] = os.path.join(root, "validation", label, name)
    assert len(files) == 10
    # The same vectors from the checkpoint, in this process, on one device.
    loaded = model_files.load_model_or_run(model_dir=str(model_dir))
    pixels = np.stack(
        [
            preprocessing.preprocess_for_eval(tf.io.read_file(files[row[2]]), loaded.stats)
            for row in rows[1:]
        ]
    )
    fc7 = keras_alexnet.feature_extractor(loaded.model)(pixels)["fc7"]
    np.testing.assert_allclose(vectors, keras.ops.convert_to_numpy(fc7), rtol=1e-4, atol=1e-5)
    sprite = tf.io.decode_png(tf.io.read_file(str(folder / embedding.sprite.image_path)))
    tile = embedding.sprite.single_image_dim[0]
    assert sprite.shape == (4 * tile, 4 * tile, 3)  # 10 tiles in a 4x4 grid


def test_write_refuses_metadata_of_another_length(tmp_path):
    with pytest.raises(ValueError, match="3 vectors need 3 rows of metadata"):
        projector.write(str(tmp_path), np.zeros((3, 4)), {"label": ["a", "b"]})
    with pytest.raises(ValueError, match=r"vectors must be \[n >= 1, d\]"):
        projector.write(str(tmp_path), np.zeros((0, 4)), {})


def test_one_column_of_metadata_has_no_header(tmp_path):
    projector.write(str(tmp_path), np.eye(3), {"label": ["a", "b", "c"]})
    _, vectors, rows = _read(str(tmp_path))
    assert rows == [["a"], ["b"], ["c"]]
    np.testing.assert_array_equal(vectors, np.eye(3))
