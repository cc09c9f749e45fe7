"""shapes_dataset: written once, the requested counts and sizes, decodable, learnable cues."""

import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from keras_alexnet.data import folder_sources
from keras_alexnet.data import shapes as shapes_dataset

SMALL = dict(num_classes=4, train_per_class=3, val_per_class=2, image_size=(48, 60))


def all_files(root):
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)


def test_class_names_are_readable_and_mix_colour_and_shape():
    names = shapes_dataset.class_names(10)
    assert len(set(names)) == 10 and names[0] == "red_circle"
    colours = [n.split("_")[0] for n in names]
    shapes = [n.split("_")[1] for n in names]
    assert set(colours) == set(shapes_dataset.COLOURS)
    assert set(shapes) == set(shapes_dataset.SHAPES)
    # Some colours carry two shapes, so colour alone does not name the class.
    assert max(colours.count(c) for c in colours) == 2
    assert len(shapes_dataset.class_names(24)) == 24
    with pytest.raises(ValueError, match="num_classes=25"):
        shapes_dataset.class_names(25)


def test_written_once_with_the_requested_counts(tmp_path, capsys):
    root = shapes_dataset.ensure_shapes_dataset(tmp_path / "shapes", **SMALL)
    assert root == str(tmp_path / "shapes")
    # The slow first call says what it writes, and where; the later ones say nothing.
    assert f"(20 JPEG files, once) to {root}" in capsys.readouterr().out
    names = shapes_dataset.class_names(4)
    for split, per_class in (("train", 3), ("validation", 2)):
        assert sorted(os.listdir(os.path.join(root, split))) == sorted(names)
        for name in names:
            files = os.listdir(os.path.join(root, split, name))
            assert len(files) == per_class and all(f.endswith(".jpg") for f in files)
    marker = os.path.join(root, shapes_dataset.MARKER_FILE)
    assert json.load(open(marker))["class_names"] == names
    before = {f: os.stat(f).st_mtime_ns for f in all_files(root)}
    assert shapes_dataset.ensure_shapes_dataset(root, **SMALL) == root
    assert "Writing" not in capsys.readouterr().out
    assert {f: os.stat(f).st_mtime_ns for f in all_files(root)} == before
    assert not [p for p in os.listdir(tmp_path) if ".partial-" in p]


def test_decodes_through_the_folder_source(tmp_path):
    root = shapes_dataset.ensure_shapes_dataset(tmp_path / "shapes", **SMALL)
    source = folder_sources.folder_source(root, on_bad_image="fail")
    assert source.num_train == 12 and source.num_validation == 8
    assert source.class_names == tuple(sorted(shapes_dataset.class_names(4)))
    for ref, label in source.examples("validation").as_numpy_iterator():
        image = tf.io.decode_jpeg(tf.io.read_file(ref)).numpy()
        assert image.shape == (48, 60, 3)
        assert source.class_names[label] in ref.decode()


def test_same_seed_same_images(tmp_path):
    a = shapes_dataset.ensure_shapes_dataset(tmp_path / "a", **SMALL)
    b = shapes_dataset.ensure_shapes_dataset(tmp_path / "b", **SMALL)
    c = shapes_dataset.ensure_shapes_dataset(tmp_path / "c", seed=1, **SMALL)
    read = lambda root: [open(f, "rb").read() for f in all_files(root) if f.endswith(".jpg")]  # noqa: E731
    assert read(a) == read(b)
    assert read(a) != read(c)


def test_half_written_or_changed_sets_are_regenerated(tmp_path):
    root = shapes_dataset.ensure_shapes_dataset(tmp_path / "shapes", **SMALL)
    os.remove(os.path.join(root, shapes_dataset.MARKER_FILE))
    stray = os.path.join(root, "train", "red_circle", "red_circle_00099.jpg")
    open(stray, "wb").write(b"half written")
    shapes_dataset.ensure_shapes_dataset(root, **SMALL)
    assert not os.path.exists(stray)
    assert os.path.exists(os.path.join(root, shapes_dataset.MARKER_FILE))
    bigger = dict(SMALL, train_per_class=5)
    shapes_dataset.ensure_shapes_dataset(root, **bigger)
    assert len(os.listdir(os.path.join(root, "train", "red_circle"))) == 5


def test_refuses_to_overwrite_other_data(tmp_path):
    (tmp_path / "mine" / "train" / "cats").mkdir(parents=True)
    (tmp_path / "mine" / "train" / "cats" / "cat.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "mine"))):
        shapes_dataset.ensure_shapes_dataset(tmp_path / "mine", **SMALL)
    assert (tmp_path / "mine" / "train" / "cats" / "cat.jpg").exists()


def test_the_shape_has_the_class_colour():
    rng = np.random.default_rng(0)
    for name in shapes_dataset.class_names(24):
        image = shapes_dataset.draw_image(name, rng, (256, 320)).astype(np.float32)
        colour = np.array(shapes_dataset.COLOURS[name.split("_")[0]], np.float32)
        close = np.abs(image - colour).max(-1) < 50
        assert 0.03 < close.mean() < 0.6, name  # A sizeable shape, not the whole image.


def test_default_root_is_under_tensorflow_datasets():
    assert "keras_alexnet_shapes" in shapes_dataset.DEFAULT_ROOT or os.environ.get(
        "KERAS_ALEXNET_SHAPES_DIR"
    )


def test_shape_boxes_are_where_the_files_differ_from_their_background(tmp_path):
    root = shapes_dataset.ensure_shapes_dataset(
        tmp_path, num_classes=3, train_per_class=2, val_per_class=2, image_size=(64, 80)
    )
    boxes = shapes_dataset.shape_boxes(root)
    assert len(boxes) == 3 * 4
    for relative, box in boxes.items():
        pixels = tf.io.decode_jpeg(tf.io.read_file(os.path.join(root, relative))).numpy()
        background = np.median(pixels[[0, -1]].reshape(-1, 3), axis=0)
        # The shape's colour is far from the grey background (JPEG and noise are not).
        shape = np.abs(pixels.astype(float) - background).max(axis=-1) > 60
        rows, cols = shape.any(axis=1).nonzero()[0], shape.any(axis=0).nonzero()[0]
        found = (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)
        assert box == pytest.approx(found, abs=2), relative
    with pytest.raises(ValueError, match="holds no shapes set"):
        shapes_dataset.shape_boxes(tmp_path / "train")
