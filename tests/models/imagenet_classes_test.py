"""The ILSVRC-2012 class list shipped in the package, against TensorFlow Datasets' files."""

import tensorflow_datasets as tfds
from tensorflow_datasets.datasets.siscore import labels as siscore_labels

from keras_alexnet.models import imagenet_classes


def test_order_is_tfds_imagenet2012_synset_ids():
    # The class order of TFDS's imagenet2012 builder (its ClassLabel), read without data.
    builder = tfds.builder("imagenet2012", data_dir="/nonexistent/tfds")
    tfds_synsets = builder.info.features["label"].names
    assert list(imagenet_classes.synsets()) == list(tfds_synsets)
    assert list(tfds_synsets) == sorted(tfds_synsets)  # Caffe's and torchvision's order


def test_readable_names_are_tfds_imagenet_labels_in_order():
    names = [imagenet_classes.split_label(c)[1] for c in imagenet_classes.class_names()]
    assert names == list(siscore_labels.IMAGENET_LABELS_LIST)
    # A second table of the same module maps SI-Score's short names to class indices
    # independently; a few are synonyms ("jeans": "jean, blue jean, denim"), any shift of
    # the list would break nearly all of them.
    table = siscore_labels.IMAGENET_LABELS
    found = [s for s, i in table.items() if s.split(" (")[0].lower() in names[i].lower()]
    assert len(found) >= len(table) - 10, sorted(set(table) - set(found))
    assert names[table["zebra"]] == "zebra"


def test_split_label():
    assert imagenet_classes.class_names()[281] == "n02123045 tabby, tabby cat"
    assert imagenet_classes.split_label("n02123045 tabby, tabby cat") == (
        "n02123045",
        "tabby, tabby cat",
    )
    assert imagenet_classes.split_label("red circle") == ("red circle", "red circle")
    assert imagenet_classes.split_label("n0212") == ("n0212", "n0212")
