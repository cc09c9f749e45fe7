"""A run's images: the --dataset settings checked, and a recorded run's images found again."""

import image_data
import pytest
import tiny

from keras_alexnet.data import folder_sources
from keras_alexnet.runs import dataset as run_dataset
from keras_alexnet.training import config as config_lib


@pytest.mark.parametrize(
    "settings, message",
    [
        (
            dict(dataset="folder"),
            "data_dir must name the image folder for dataset=folder. Received: data_dir=None",
        ),
        (
            dict(dataset="cifar10"),
            "data_dir must name the TFDS data folder for cifar10. Received: data_dir=None",
        ),
        (dict(dataset="prepared:"), "dataset must be prepared:DIR. Received: dataset='prepared:'"),
        (
            dict(dataset="shapes", manual_dir="/tmp"),
            "manual_dir is only read for dataset=imagenet2012. Received: manual_dir='/tmp'",
        ),
        (
            dict(dataset="shapes", validation_split=0.1),
            "validation_split is read for dataset=folder only. Received: validation_split=0.1",
        ),
    ],
)
def test_bad_settings_are_refused_as_train_refuses_them(tmp_path, settings, message):
    with pytest.raises(ValueError) as error:
        run_dataset.check(**settings)
    assert str(error.value) == message
    # train's own check of the same settings in a whole TrainConfig says the same.
    defaults = dict(data_dir=None, manual_dir=None, validation_split=None)
    config = tiny.train_config(tmp_path / "run", None, **{**defaults, **settings})
    with pytest.raises(ValueError) as from_config:
        config_lib.resolve(config)
    assert str(from_config.value) == message


def test_a_runs_images_are_found_where_it_recorded_them_or_where_they_moved(tmp_path):
    root = image_data.make_folder(tmp_path / "images")
    run = dict(dataset_flag="folder", data_dir=root, class_names=["cat", "dog", "fox"])
    source = run_dataset.run_source(run)
    assert list(source.class_names) == run["class_names"]
    reference = folder_sources.folder_source(root)  # the data layer's own reading
    for split in ("train", "validation"):
        assert sorted(source.files(split)[0]) == sorted(reference.files(split)[0])
    assert source.num_examples("train") == 3 * 8 + 1  # make_folder's 8 a class and a PNG

    moved = tmp_path / "moved"
    (tmp_path / "images").rename(moved)
    with pytest.raises(ValueError) as error:
        run_dataset.run_source(run, purpose="int8 quantization calibrates on")
    assert str(error.value).startswith("int8 quantization calibrates on the run's images, which")
    assert str(error.value).endswith(f"Point --data_dir at them. Received: data_dir={root}")
    assert run_dataset.run_source(run, data_dir=str(moved)).num_examples("validation") == 9

    with pytest.raises(ValueError, match="The images' classes differ from the run's"):
        run_dataset.run_source(dict(run, class_names=["cat", "dog"]), data_dir=str(moved))
