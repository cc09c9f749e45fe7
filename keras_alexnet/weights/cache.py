"""Named weights in the Keras cache: fetched once, verified, converted once.

For a name of `catalog` (`AlexNet(weights="imagenet")`, `--model=bvlc_alexnet`):

    <cache>/bvlc_alexnet.caffemodel   the publisher's file, its hash checked (`downloads`)
    <cache>/bvlc_alexnet.keras        its conversion (`conversion.build_model`)

The .keras file is written to a temporary name and renamed once whole, so it exists only
complete; once it does, it is loaded without touching the network or the raw file. A
cached raw file whose hash no longer matches is fetched again. `resolve` is where every
tool and `AlexNet(weights=...)` turn a name into that .keras file.
"""

import importlib.util
import os
import tempfile

from absl import logging

from keras_alexnet.weights import catalog
from keras_alexnet.weights import conversion
from keras_alexnet.weights import downloads
from keras_alexnet.weights import weight_files


def raw_path(entry):
    """Where an entry's file is cached."""
    return os.path.join(downloads.cache_dir(), entry.file_name)


def keras_path(entry):
    """Where an entry's converted .keras file is cached."""
    return os.path.join(downloads.cache_dir(), f"{entry.name}.keras")


def status(entry):
    """ "converted", "downloaded" (not yet converted) or "no"."""
    if os.path.exists(keras_path(entry)):
        return "converted"
    return "downloaded" if os.path.exists(raw_path(entry)) else "no"


def torch_installed():
    """Whether PyTorch can be imported (found, not imported: that takes seconds)."""
    return importlib.util.find_spec("torch") is not None


def check_reader(entry):
    """Raises before any download if the entry's file cannot be read here (PyTorch)."""
    if entry.format == "torch" and not torch_installed():
        raise downloads.DownloadError(
            f"{entry.name} is torchvision's {entry.file_name}, a PyTorch file, and reading "
            "it needs PyTorch, which is not installed: pip install keras-alexnet[torch] "
            "(nothing was downloaded). bvlc_alexnet (alias imagenet) needs nothing more."
        )


def fetch(name, progress=True):
    """The verified raw file of a name: the cached one, else downloaded.

    Args:
        name: a name or alias of `catalog`.
        progress: show a progress line on stderr while downloading.

    Returns:
        The cached file's path.

    Raises:
        ValueError: an unknown name.
        downloads.DownloadError: PyTorch missing for a torch file, or the download failed.
    """
    entry = catalog.entry(name)
    check_reader(entry)
    downloads.clean_stale(downloads.cache_dir())
    path = raw_path(entry)
    if os.path.exists(path):
        found = downloads.file_hash(entry, path)
        if entry.hash_matches(found):
            return path
        logging.warning(
            "%s: the cached file's %s is %s, not %s: fetching it again.",
            path,
            entry.hash_algorithm,
            found,
            entry.stated_hash(),
        )
    downloads.download(entry, path, progress=progress)
    return path


def model_file(name, progress=True):
    """The converted .keras file of a name: cached, else fetched and converted first.

    Args:
        name: a name or alias of `catalog`.
        progress: show a progress line on stderr while downloading.

    Returns:
        The path of the cached .keras file: an AlexNet of the entry's variant taking raw
        0-255 RGB (the normalisation inside), carrying the ILSVRC-2012 class names.

    Raises:
        ValueError: an unknown name, or a file that does not convert.
        downloads.DownloadError: PyTorch missing for a torch file, or the download failed.
    """
    entry = catalog.entry(name)
    path = keras_path(entry)
    if os.path.exists(path):
        downloads.clean_stale(downloads.cache_dir())
        return path
    check_reader(entry)
    _convert(entry, fetch(name, progress), path)
    return path


def add_file(name, path):
    """Caches a file downloaded by other means (`pretrained --file=NAME=PATH`) and converts it.

    Args:
        name: a name or alias of `catalog`.
        path: the file; it must have the entry's hash.

    Returns:
        The path of the cached .keras file.

    Raises:
        ValueError: an unknown name.
        downloads.DownloadError: PyTorch missing for a torch file, or the file's hash is
            not the entry's (nothing is cached then).
    """
    entry = catalog.entry(name)
    check_reader(entry)
    raw = raw_path(entry)
    downloads.add_file(entry, os.path.expanduser(path), raw)
    target = keras_path(entry)
    if not os.path.exists(target):
        _convert(entry, raw, target)
    return target


def resolve(value, progress=True):
    """A weights= or --model value as a path: a name becomes its cached .keras file
    (`model_file`); anything else is a path and is returned as it is.

    A name always means the named weights; a file or folder of that name is ./NAME.
    """
    return model_file(value, progress) if catalog.is_name(value) else value


def _convert(entry, raw, target):
    """Converts a verified raw file and saves it as the cached .keras file, atomically."""
    pretrained = weight_files.read_weights(raw, entry.format)
    model = conversion.build_model(pretrained, variant=entry.variant)
    folder = os.path.dirname(target)
    fd, temp = tempfile.mkstemp(prefix=f".{entry.name}.", suffix=".keras", dir=folder)
    os.close(fd)
    try:
        os.remove(temp)  # Keras writes the file itself; the name is this process's own.
        model.save(temp)
        os.replace(temp, target)
    finally:
        if os.path.exists(temp):
            os.remove(temp)
