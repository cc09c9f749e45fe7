"""tfds_sources: TFDS imagenet2012 from tiny ILSVRC2012-shaped tar files."""

import io
import os
import re
import tarfile

import image_data
import numpy as np
import pytest
import tensorflow as tf

from keras_alexnet.data import pipelines as input_pipeline
from keras_alexnet.data import preprocessing
from keras_alexnet.data import stats as stats_lib
from keras_alexnet.data import tfds_sources

CROP = preprocessing.CROP_SIZE
SYNSETS = ("n01440764", "n01443537", "n01484850")


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_ilsvrc_tars(manual_dir, train_per_synset=2, num_val=4):
    """ILSVRC2012_img_train.tar (one tar per synset) and ILSVRC2012_img_val.tar."""
    os.makedirs(manual_dir, exist_ok=True)
    encode = lambda seed: tf.io.encode_jpeg(image_data.smooth_image(seed, 40, 56)).numpy()  # noqa: E731
    with tarfile.open(os.path.join(manual_dir, "ILSVRC2012_img_train.tar"), "w") as outer:
        for k, synset in enumerate(SYNSETS):
            inner_bytes = io.BytesIO()
            with tarfile.open(fileobj=inner_bytes, mode="w") as inner:
                for j in range(train_per_synset):
                    _add(inner, f"{synset}_{j}.JPEG", encode(10 * k + j))
            _add(outer, f"{synset}.tar", inner_bytes.getvalue())
    with tarfile.open(os.path.join(manual_dir, "ILSVRC2012_img_val.tar"), "w") as val:
        for j in range(num_val):
            _add(val, f"ILSVRC2012_val_{j + 1:08d}.JPEG", encode(100 + j))


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfds")
    manual = str(root / "manual")
    write_ilsvrc_tars(manual)
    return tfds_sources.tfds_source("imagenet2012", str(root / "data"), manual_dir=manual), root


def test_imagenet2012_from_manual_tars(imagenet, stats):
    import tensorflow_datasets as tfds

    source, root = imagenet
    assert source.kind == "tfds" and len(source.class_names) == 1000
    assert source.num_train == 6 and source.num_validation == 4
    train_labels = sorted(int(y) for _, y in source.examples("train").as_numpy_iterator())
    assert [source.class_names[y] for y in train_labels] == sorted(list(SYNSETS) * 2)
    # Validation labels come from TFDS's list, in the sorted order of the file names.
    labels_file = tfds.core.tfds_path("datasets/imagenet2012/validation_labels.txt")
    expected = sorted(labels_file.read_text().split()[:4])
    refs_labels = list(source.examples("validation").as_numpy_iterator())
    assert sorted(source.class_names[y] for _, y in refs_labels) == expected
    assert all(tf.io.is_jpeg(ref) for ref, _ in refs_labels)  # Still encoded: SkipDecoding.
    # A second call reuses the prepared data; the pipelines run on it.
    again = tfds_sources.tfds_source("imagenet2012:5.1.0", str(root / "data"))
    assert again.num_train == 6
    batches = image_data.all_batches(
        input_pipeline.train_dataset(again, global_batch_size=2, stats=stats, seed=0, epoch=0)
    )
    assert len(batches) == 3 and batches[0][0].shape == (2, CROP, CROP, 3)
    resumed = image_data.all_batches(
        input_pipeline.train_dataset(
            again, global_batch_size=2, stats=stats, seed=0, epoch=0, start_step=1
        )
    )
    np.testing.assert_array_equal(resumed[0][0], batches[1][0])
    evaluated = image_data.all_batches(
        input_pipeline.eval_dataset(again, batch_size=3, stats=stats)
    )
    assert sum(len(y) for _, y in evaluated) == 4
    assert (
        stats_lib.compute_stats(again, max_images=3).eigval.tolist()
        == stats_lib.IMAGENET_PCA.eigval.tolist()
    )


def test_tfds_source_errors_name_the_path(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "ILSVRC2012_img_train.tar").write_bytes(b"")
    with pytest.raises(ValueError, match=f"ILSVRC2012_img_val.tar.*{re.escape(str(manual))}"):
        tfds_sources.tfds_source("imagenet2012", str(tmp_path / "data"), manual_dir=str(manual))
    with pytest.raises(ValueError, match="imagenet2012 only"):
        tfds_sources.tfds_source("mnist", str(tmp_path), manual_dir=str(manual))
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "nowhere"))):
        tfds_sources.tfds_source("mnist", str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=f"not prepared in {re.escape(str(tmp_path))}"):
        tfds_sources.tfds_source("mnist", str(tmp_path))


def test_imagenet2012_names_everything_it_lacks_at_once(tmp_path):
    nowhere = tmp_path / "nowhere"
    with pytest.raises(ValueError) as raised:
        tfds_sources.tfds_source("imagenet2012", str(nowhere))
    message = str(raised.value)
    assert f"data_dir {nowhere} does not exist" in message
    assert "no manual_dir: the folder of ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar" in (
        message
    )
    with pytest.raises(ValueError, match=f"it is not prepared in {re.escape(str(tmp_path))};"):
        tfds_sources.tfds_source("imagenet2012", str(tmp_path))
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(ValueError) as raised:
        tfds_sources.check_imagenet2012("imagenet2012", None, str(manual))
    message = str(raised.value)
    assert "no data_dir" in message
    assert f"manual_dir {manual} lacks ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar" in (
        message
    )
