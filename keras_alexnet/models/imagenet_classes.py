"""The 1000 ILSVRC-2012 classes, in the order pretrained AlexNet weights use.

Caffe's bvlc_alexnet and torchvision's alexnet number the classes in sorted synset-id order
(class 0 n01440764 tench, ..., class 281 n02123045 tabby, ...). `imagenet_classes.txt`, in
this package, holds one class a line, "<synset id> <readable name>", in that order. It was
written from two files TensorFlow Datasets (a dependency, Apache-2.0) ships:

  - the synset ids: `tensorflow_datasets/datasets/imagenet2012/labels.txt`, the class order
    of TFDS's imagenet2012 builder (its ClassLabel names);
  - the readable names: `IMAGENET_LABELS_LIST` of
    `tensorflow_datasets/datasets/siscore/labels.py` (WordNet's lemmas, as Caffe's
    synset_words.txt has them).

tests/imagenet_classes_test.py checks the file against both, so a drift in either shows.
Nothing is downloaded at run time.
"""

import functools
import importlib.resources
import re

FILE = "imagenet_classes.txt"
NUM_CLASSES = 1000
_SYNSET = re.compile(r"n\d{8}")


@functools.cache
def class_names():
    """The 1000 classes as "<synset id> <readable name>", e.g. "n02123045 tabby, tabby cat"."""
    text = importlib.resources.files("keras_alexnet.models").joinpath(FILE).read_text("utf-8")
    names = tuple(line for line in text.splitlines() if line.strip())
    if len(names) != NUM_CLASSES:
        raise ValueError(f"{FILE} must hold {NUM_CLASSES} classes. Received: {len(names)} lines")
    return names


def synsets():
    """The 1000 synset ids in class order ("n01440764", ...)."""
    return tuple(name.split(" ", 1)[0] for name in class_names())


def with_readable_names(names):
    """Class names, each bare ILSVRC-2012 synset id given its readable name.

    A run trained on folders named by synset ("n02123045") carries the names converted
    models carry ("n02123045 tabby, tabby cat"), so that predictions read the same; any
    other name (and a synset of no ILSVRC-2012 class) stays as it is. `split_label` gives
    the id back.

    Args:
        names: class names, e.g. a training run's class folders.

    Returns:
        A list of the names, in the same order.
    """
    readable = {name.split(" ", 1)[0]: name for name in class_names()}
    return [readable.get(name, name) for name in names]


def split_label(label):
    """A class name as (id, readable name).

    "n02123045 tabby, tabby cat" -> ("n02123045", "tabby, tabby cat"); any other name, such as
    a training run's folder name, is its own id: "circle" -> ("circle", "circle").
    """
    head, _, rest = label.partition(" ")
    if _SYNSET.fullmatch(head) and rest:
        return head, rest
    return label, label
