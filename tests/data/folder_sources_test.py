"""folder_sources: image folders in the common layouts, their splits and their bad files."""

import logging
import os
import re
import shutil

import image_data
import pytest
import tensorflow as tf

from keras_alexnet import errors
from keras_alexnet.data import folder_sources
from keras_alexnet.data import pipelines as input_pipeline
from keras_alexnet.data import preprocessing
from keras_alexnet.data import sources


def test_folder_source_lists_classes_and_counts(source, folder):
    assert source.class_names == ("cat", "dog", "fox")
    assert source.num_train == 25 and source.num_validation == 9
    assert source.bad_files == ()
    assert source.name == f"folder:{folder}"


def test_folder_source_errors_name_the_path(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(ValueError, match=re.escape(str(missing))):
        folder_sources.folder_source(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"empty.*{re.escape(str(empty))}"):
        folder_sources.folder_source(empty)
    no_train = tmp_path / "no_train"
    (no_train / "validation" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match=f"train/.*validation_split.*{re.escape(str(no_train))}"):
        folder_sources.folder_source(no_train)
    no_images = tmp_path / "no_images"
    (no_images / "train" / "a").mkdir(parents=True)
    (no_images / "train" / "a" / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=re.escape(str(no_images))):
        folder_sources.folder_source(no_images)
    with pytest.raises(ValueError, match="on_bad_image"):
        folder_sources.folder_source(tmp_path, on_bad_image="ignore")


def test_bad_files_are_found_skipped_or_fatal(tmp_path):
    root = tmp_path / "bad"
    image_data.make_folder(root, classes=("a", "b"), train_per_class=3, val_per_class=1)
    good = (root / "train" / "a" / "000.jpg").read_bytes()
    corrupt = bytearray(good)
    corrupt[2:40] = bytes(38)  # The marker segments after the start marker are destroyed.
    (root / "train" / "a" / "corrupt.jpg").write_bytes(bytes(corrupt))
    (root / "train" / "b" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "train" / "b" / "text.jpg").write_text("<html>not an image</html>")
    (root / "train" / "c_empty").mkdir()
    png = (root / "train" / "a" / "png_image.png").read_bytes()
    (root / "validation" / "a" / "cut.png").write_bytes(png[:-20])

    source = folder_sources.folder_source(root, on_bad_image="skip")
    reasons = {os.path.basename(p): r for p, r in source.bad_files}
    # An empty class folder is no bad image: its class is kept (and named in a warning).
    assert set(reasons) == {"corrupt.jpg", "truncated.jpg", "text.jpg", "cut.png"}
    assert len(source.bad_files) == 4
    assert "corrupt JPEG" in reasons["corrupt.jpg"]
    assert "truncated JPEG" in reasons["truncated.jpg"]
    assert "not a JPEG, PNG, BMP, GIF or WebP" in reasons["text.jpg"]
    assert source.class_names == ("a", "b", "c_empty")
    assert source.num_train == 7 and source.num_validation == 2
    assert sources.check_bad_files(source.bad_files, "skip") == 4
    # The kept files all decode.
    for ref, _ in source.examples("train").as_numpy_iterator():
        preprocessing.decode_and_center_crop(tf.io.read_file(ref))
    with pytest.raises(ValueError, match="corrupt.jpg"):
        folder_sources.folder_source(root, on_bad_image="fail")


def test_folder_source_reads_every_format(tmp_path, stats):
    root = tmp_path / "mixed"
    image_data.make_folder(root, classes=("a", "b"), train_per_class=2, val_per_class=1)
    for i, (fmt, mode, kwargs) in enumerate(image_data.OTHER_FORMATS):
        (root / "train" / "b" / f"other{i}.{fmt.lower()}").write_bytes(
            image_data.pillow_bytes(fmt, mode, seed=i, **kwargs)
        )
    source = folder_sources.folder_source(root, on_bad_image="fail")
    assert source.num_train == 2 * 2 + 1 + len(image_data.OTHER_FORMATS)
    batches = input_pipeline.train_dataset(
        source, global_batch_size=source.num_train, stats=stats, seed=0, epoch=0
    )
    images, _ = next(iter(batches))
    assert images.shape == (source.num_train, 227, 227, 3)


@pytest.mark.parametrize("name", folder_sources.VALIDATION_FOLDERS)
def test_validation_and_test_folders_of_the_common_layouts(tmp_path, name):
    root = tmp_path / "data"
    image_data.make_folder(root, classes=("a", "b"), train_per_class=3, val_per_class=2)
    if name != "validation":
        (root / "validation").rename(root / name)
    shutil.copytree(root / name, root / "test")
    source = folder_sources.folder_source(root)
    assert (source.num_train, source.num_validation, source.num_test) == (7, 4, 4)
    assert source.layout == f"train/ and {name}/ and test/"
    paths = {split: list(source.files(split)[0]) for split in sources.SPLITS}
    assert all(f"/{name}/" in p for p in paths["validation"])
    assert all("/test/" in p for p in paths["test"])
    labels = [int(label) for _, label in source.examples("test").as_numpy_iterator()]
    assert labels == [0, 0, 1, 1]


def test_a_split_may_lack_training_classes_not_have_others(tmp_path, caplog):
    root = tmp_path / "data"
    image_data.make_folder(root, classes=("a", "b", "c"), train_per_class=2, val_per_class=2)
    shutil.rmtree(root / "validation" / "b")
    (root / "train" / "d").mkdir()  # a class with no training images yet
    with caplog.at_level(logging.WARNING):
        source = folder_sources.folder_source(root)
    # The classes and their indices are the training folder's; validation has a and c.
    assert source.class_names == ("a", "b", "c", "d")
    labels = [int(label) for _, label in source.examples("validation").as_numpy_iterator()]
    assert labels == [0, 0, 2, 2]
    assert re.search(r"validation has no folder for 2 of the 4 training classes: b, d", caplog.text)
    assert re.search(r"1 empty class folder.*train/d", caplog.text)
    assert source.bad_files == ()
    (root / "validation" / "e").mkdir()
    image_data.write_jpeg(str(root / "validation" / "e" / "0.jpg"), seed=1)
    with pytest.raises(
        ValueError, match=r"validation has class folders that .*train has not: \['e'\]"
    ):
        folder_sources.folder_source(root)
    (root / "validation").rename(root / "val")
    (root / "valid").mkdir()
    with pytest.raises(ValueError, match="2 validation folders"):
        folder_sources.folder_source(root)


def test_a_folder_of_validation_images_is_evaluated_alone(tmp_path):
    # One folder of class folders, as ImageNet's validation images by synset.
    val = tmp_path / "val"
    for i, synset in enumerate(("n01440764", "n02123045")):
        for j in range(2):
            image_data.write_jpeg(str(val / synset / f"{j}.JPEG"), seed=10 * i + j)
    source = folder_sources.evaluation_source(val)
    assert source.class_names == ("n01440764", "n02123045")
    assert (source.num_train, source.num_validation, source.num_test) == (0, 4, 0)
    assert source.layout == "one folder of class folders"
    with pytest.raises(ValueError, match="train/ .*validation_split"):
        folder_sources.folder_source(val)  # training still needs its training images
    # A validation folder without train/, or beside train/ folders that are empty.
    data = tmp_path / "data"
    shutil.copytree(val, data / "valid")
    (data / "test" / "n09999999").mkdir(parents=True)
    assert folder_sources.evaluation_source(data).files("validation")[0].tolist() == sorted(
        str(data / "valid" / p.relative_to(val)) for p in val.glob("*/*")
    )
    (data / "train" / "n01440764").mkdir(parents=True)
    assert folder_sources.evaluation_source(data).layout == "valid/ alone"
    assert folder_sources.evaluation_source(data, split=None).num_validation == 4
    # Errors name the folder.
    with pytest.raises(ValueError, match=f"{re.escape(str(data))} has no train/ folder"):
        shutil.rmtree(data / "train")
        folder_sources.evaluation_source(data, split="train")
    with pytest.raises(ValueError, match=f"No .*files in the class folders of .*{data}/test"):
        folder_sources.evaluation_source(data, split="test")
    no_classes = tmp_path / "no_classes"
    image_data.write_jpeg(str(no_classes / "validation" / "0.jpg"), seed=0)
    with pytest.raises(ValueError, match=f"{no_classes}/validation has no class folders"):
        folder_sources.evaluation_source(no_classes)
    no_images = tmp_path / "no_images" / "cat"
    no_images.mkdir(parents=True)
    (no_images / "photo.jpg").write_text("<html>not an image</html>")
    with pytest.raises(ValueError, match=f"No usable images under {no_images.parent}"):
        folder_sources.evaluation_source(no_images.parent)


def test_validation_split_of_one_folder_is_stratified_seeded_and_stable(tmp_path):
    root = tmp_path / "data"
    for c, count in (("a", 10), ("b", 5)):
        for i in range(count):
            image_data.write_jpeg(str(root / c / f"{i:02d}.jpg"), seed=i)
    source = folder_sources.folder_source(root, validation_split=0.2, seed=3)
    assert (source.num_train, source.num_validation) == (8 + 4, 2 + 1)
    assert source.layout == f"validation_split=0.2 of {root}/ (seed 3)"
    held = set(source.files("validation")[0])
    assert held.isdisjoint(source.files("train")[0])
    # The same on a rerun; another seed holds out other files.
    assert held == set(
        folder_sources.folder_source(root, validation_split=0.2, seed=3).files("validation")[0]
    )
    assert held != set(
        folder_sources.folder_source(root, validation_split=0.2, seed=4).files("validation")[0]
    )
    # The same split wherever the folder is: the hash is of the path under it.
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    again = folder_sources.folder_source(moved, validation_split=0.2, seed=3)
    assert {os.path.relpath(p, moved) for p in again.files("validation")[0]} == {
        os.path.relpath(p, root) for p in held
    }
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError, match=f"validation_split={bad}"):
            folder_sources.folder_source(root, validation_split=bad)
    (root / "val" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="use one or the other"):
        folder_sources.folder_source(root, validation_split=0.2)


@pytest.mark.parametrize(
    "link, target, fault",
    [
        ("train/cat/loop.jpg", "loop.jpg", "a symbolic link that cannot be followed"),
        ("train/loop", "loop", "a symbolic link that cannot be followed"),
        ("train/ring_a", "ring_b", "a symbolic link that cannot be followed"),
        ("train/up", "..", "a symbolic link loop: it leads to"),
        ("train/cat/back", "../..", "a symbolic link loop: it leads to"),
    ],
)
def test_a_symbolic_link_loop_is_refused_naming_it_not_made_a_class(tmp_path, link, target, fault):
    root = image_data.make_folder(tmp_path / "images", classes=("cat", "dog"), train_per_class=2)
    path = os.path.join(root, link)
    os.symlink(target, path)
    if target == "ring_b":
        os.symlink("ring_a", os.path.join(root, "train", "ring_b"))
    with pytest.raises(errors.InputError, match=re.escape(f"{path}: {fault}")):
        folder_sources.folder_source(root)
