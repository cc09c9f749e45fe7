"""A run's images: the dataset that --dataset names, checked and opened, and found again.

--dataset names the built-in set (`BUILTIN_DATASET`, no download), an image folder
("folder", with --data_dir), the shards `prepare` wrote (`PREPARED` DIR) or a TFDS dataset
(with --data_dir; imagenet2012 with --manual_dir). A run records what it was given in its
run.json (dataset_flag, data_dir, manual_dir), and `run_source` opens those images again for
what reads the run later: export's int8 calibration, the formats benchmark.
"""

import tensorflow as tf

from keras_alexnet.data import folder_sources
from keras_alexnet.data import shapes as shapes_dataset
from keras_alexnet.data import shards as prepared
from keras_alexnet.data import sources
from keras_alexnet.data import tfds_sources

BUILTIN_DATASET = "shapes"
FOLDER_DATASET = "folder"
PREPARED = "prepared:"  # --dataset=prepared:DIR reads what `prepare` wrote into DIR


def check(dataset, data_dir=None, manual_dir=None, validation_split=None):
    """Checks the settings that say where the images come from.

    Raises:
        ValueError: naming the first bad setting and its value.
    """
    settings = dict(
        dataset=dataset, data_dir=data_dir, manual_dir=manual_dir, validation_split=validation_split
    )
    if dataset == FOLDER_DATASET:
        _check(
            settings, "data_dir", bool(data_dir), "must name the image folder for dataset=folder"
        )
    elif dataset.startswith(PREPARED):
        _check(settings, "dataset", len(dataset) > len(PREPARED), "must be prepared:DIR")
    elif tfds_sources.is_imagenet2012(dataset) and not data_dir:
        # Everything it lacks in one message (the tar files are checked too).
        tfds_sources.check_imagenet2012(dataset, data_dir, manual_dir)
    elif dataset != BUILTIN_DATASET:
        _check(
            settings, "data_dir", bool(data_dir), f"must name the TFDS data folder for {dataset}"
        )
    if validation_split is not None:
        _check(
            settings,
            "validation_split",
            dataset == FOLDER_DATASET,
            "is read for dataset=folder only",
        )
        sources.check_validation_split(validation_split)
    if manual_dir and not tfds_sources.is_imagenet2012(dataset):
        _check(settings, "manual_dir", False, "is only read for dataset=imagenet2012")


def _check(settings, name, ok, requirement):
    """Raises a ValueError naming setting `name`, its value and `requirement` unless `ok`."""
    if not ok:
        raise ValueError(f"{name} {requirement}. Received: {name}={settings[name]!r}")


def open_source(
    dataset, data_dir=None, manual_dir=None, on_bad_image="skip", validation_split=None, seed=0
):
    """The `sources.Source` of settings `check` passed, checked before any work.

    Args:
        dataset, data_dir, manual_dir, validation_split: as `check` takes them.
        on_bad_image: what an image folder does with files that are not images
            (`sources.ON_BAD_IMAGE`).
        seed: an image folder's validation split draws its images with it.
    """
    if dataset == BUILTIN_DATASET:
        root = shapes_dataset.ensure_shapes_dataset(data_dir or shapes_dataset.DEFAULT_ROOT)
        return folder_sources.folder_source(root, on_bad_image=on_bad_image)
    if dataset.startswith(PREPARED):
        return prepared.prepared_source(dataset)
    if dataset == FOLDER_DATASET:
        return folder_sources.folder_source(
            data_dir,
            on_bad_image=on_bad_image,
            validation_split=validation_split,
            seed=seed,
        )
    return tfds_sources.tfds_source(dataset, data_dir, manual_dir)


def run_source(run, data_dir=None, purpose="this needs"):
    """The images of a training run: its dataset, where it was found or in `data_dir`.

    Args:
        run: the run's settings (`folder.read_run`).
        data_dir: where the images are now, if not where the run found them.
        purpose: what needs them, for the error ("int8 quantization calibrates on").

    Raises:
        ValueError: the images are not there, or their classes are not the run's.
    """
    dataset = run.get("dataset_flag", BUILTIN_DATASET)
    data_dir = data_dir or run.get("data_dir")
    try:
        check(dataset, data_dir, run.get("manual_dir"))
        source = open_source(dataset, data_dir, run.get("manual_dir"))
    except (ValueError, OSError, tf.errors.OpError) as error:
        raise ValueError(
            f"{purpose} the run's images, which cannot be read ({error}). Point "
            f"--data_dir at them. Received: data_dir={data_dir}"
        ) from error
    if list(source.class_names) != list(run["class_names"]):
        raise ValueError(
            f"The images' classes differ from the run's. Received: data_dir="
            f"{data_dir} with classes {list(source.class_names)[:3]}..."
        )
    return source
