"""bad_images and the decoders on image files as found in real folders (`wild_images`)."""

import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tiny
import wild_images
from event_files import logged_scalars

from keras_alexnet.data import bad_images
from keras_alexnet.data import folder_sources
from keras_alexnet.data import image_files
from keras_alexnet.data import preprocessing
from keras_alexnet.training import trainer as train


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return wild_images.write_corpus(str(tmp_path_factory.mktemp("wild")))


def _decode(data, in_dataset):
    """uint8 RGB of a file as the pipelines decode it: eagerly, or inside tf.data."""
    decode = preprocessing.decode_other
    if tf.io.is_jpeg(data):
        decode = lambda b: tf.io.decode_jpeg(b, channels=3)  # noqa: E731 (the JPEG branch's decoder)
    if not in_dataset:
        return decode(data).numpy()
    return next(iter(tf.data.Dataset.from_tensors(data).map(decode))).numpy()


def test_each_kind_of_file_is_read_refused_or_found_by_decoding(corpus):
    for path, (outcome, words) in corpus.items():
        name = os.path.basename(path)
        problem = image_files.image_file_problem(path)
        if outcome == wild_images.SCAN:
            assert problem and words in problem, (name, problem)
            continue
        assert problem is None, (name, problem)
        with open(path, "rb") as f:
            data = f.read()
        if outcome == wild_images.DECODE:
            with pytest.raises(tf.errors.InvalidArgumentError):
                preprocessing.decode_and_center_crop(data)
            continue
        want = wild_images.pil_rgb(path).astype(int)
        for in_dataset in (False, True):
            got = _decode(data, in_dataset).astype(int)
            assert got.shape == want.shape, name
            if tf.io.is_jpeg(data):  # decoders differ in their inverse DCT
                assert np.abs(got - want).mean() < 3, name
            else:
                np.testing.assert_array_equal(got, want, err_msg=name)
        assert preprocessing.decode_and_center_crop(data).shape == (256, 256, 3), name


def test_files_tensorflow_misreads_are_refused_by_the_decoder_with_the_scans_reason(corpus):
    for name in ("palette.bmp",):
        path = next(p for p in corpus if p.endswith(name))
        with open(path, "rb") as f:
            data = f.read()
        for decode in (preprocessing.decode_other, tf.function(preprocessing.decode_other)):
            with pytest.raises(tf.errors.InvalidArgumentError) as raised:
                decode(data)
            reason = bad_images.error_summary(raised.value.message)
            assert reason == image_files.image_file_problem(path), name
    # An 8-bit BMP with a grey palette is read right, and is not refused.
    grey = next(p for p in corpus if p.endswith("grey.bmp"))
    with open(grey, "rb") as f:
        np.testing.assert_array_equal(
            preprocessing.decode_other(f.read()).numpy(), wild_images.pil_rgb(grey)
        )


def wild_folder(
    root, tiny_root, corpus, kinds=(wild_images.READ, wild_images.DECODE, wild_images.SCAN)
):
    """The tiny image set with the corpus's files of `kinds` added to two training classes
    and one validation class."""
    shutil.copytree(tiny_root, root)
    for split, count in (("train", 2), ("validation", 1)):
        for class_dir in sorted((root / split).iterdir())[:count]:
            for path, (outcome, _) in corpus.items():
                if outcome in kinds:
                    shutil.copy(path, class_dir / f"wild_{os.path.basename(path)}")
    return root


def _expected(corpus, outcome):
    return sorted(os.path.basename(p) for p, (o, _) in corpus.items() if o == outcome)


def test_skip_trains_to_the_end_and_records_every_file_it_left_out(
    tmp_path, tiny_root, corpus, capsys
):
    data = wild_folder(tmp_path / "data", tiny_root, corpus)
    model_dir = tmp_path / "run"
    cfg = tiny.train_config(model_dir, str(data), on_bad_image="skip", log_every=100)
    result = train.train(cfg)
    assert result["epoch"] == 1
    out = capsys.readouterr().out
    assert "Decoding the" in out
    listed = (model_dir / bad_images.FILE).read_text().splitlines()
    found = {}
    for line in listed:
        if not line.startswith("#"):
            how, path, reason = line.split("\t")
            found.setdefault(how, []).append(os.path.basename(path).removeprefix("wild_"))
    # The train split has every bad file in two classes, validation in one.
    assert sorted(set(found["decode"])) == _expected(corpus, wild_images.DECODE)
    assert len(found["decode"]) == 3 * len(_expected(corpus, wild_images.DECODE))
    assert sorted(set(found["scan"])) == _expected(corpus, wild_images.SCAN)
    skipped = logged_scalars(model_dir / "train", "skipped_images")
    assert skipped[0] == len(found["decode"]) + len(found["scan"])
    # A rerun reads the list: nothing is decoded again.
    train.train(cfg)
    out = capsys.readouterr().out
    assert "Decoding the" not in out and "Nothing to do" in out


def test_fail_names_the_file_before_work_or_at_the_failing_pass(tmp_path, tiny_root, corpus):
    data = wild_folder(tmp_path / "data", tiny_root, corpus)
    with pytest.raises(ValueError, match="Bad image file") as raised:
        train.train(tiny.train_config(tmp_path / "run", str(data), on_bad_image="fail"))
    assert "wild_" in str(raised.value)
    # Only files that fail at decode time: a clean error naming one, from the statistics
    # pass or the step that met it.
    only_decode = wild_folder(tmp_path / "decode", tiny_root, corpus, kinds=(wild_images.DECODE,))
    cfg = tiny.train_config(tmp_path / "run2", str(only_decode), on_bad_image="fail")
    with pytest.raises(ValueError, match=r"do not decode") as raised:
        train.train(cfg)
    assert re.search(r"wild_\w+\.(png|gif): Invalid", str(raised.value)), str(raised.value)


def test_the_list_is_read_while_the_files_are_the_same(tmp_path, tiny_root, corpus, monkeypatch):
    data = wild_folder(
        tmp_path / "data", tiny_root, corpus, kinds=(wild_images.READ, wild_images.DECODE)
    )
    source = folder_sources.folder_source(str(data))
    model_dir = str(tmp_path / "run")
    clean, found = bad_images.check_decoding(source, model_dir=model_dir, write_list=True)
    assert len(found) == 3 * len(_expected(corpus, wild_images.DECODE))
    assert clean.num_train + clean.num_validation + len(found) == (
        source.num_train + source.num_validation
    )
    kept = {p for split in ("train", "validation") for p in clean.files(split)[0]}
    assert not kept & {p for p, _ in found}

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(bad_images, "undecodable", no_decoding)
    again, found_again = bad_images.check_decoding(source, model_dir=model_dir)
    assert found_again == found and again.num_train == clean.num_train
    # A changed file changes the split's digest: that split is decoded again.
    touched = clean.files("train")[0][0]
    os.utime(touched, ns=(1, 1))
    with pytest.raises(AssertionError, match="decoded again"):
        bad_images.check_decoding(source, model_dir=model_dir)
