"""Model files someone else wrote, loaded or refused in one line: Keras files, PyTorch state dicts.

A model file may be empty, cut short, of another kind, hostile, or a valid file of layers
this package cannot build. The loaders here raise `errors.InputError` naming the file and
what is wrong with it, for every tool that reads one (`verify`, `predict`, `evaluate`,
`export`, `explain`, `train --init_from`, `AlexNet(weights=...)`): never a library's
traceback, never "File not found" for a file that is there.
"""

import os
import re
import zipfile

import keras

from keras_alexnet import errors
from keras_alexnet.models import model_archive

# Model folders that an optional extra reads as a Keras model: (is_one(path), load(path))
# pairs the extra registers when `import keras_alexnet` runs (`hub`: KerasHub preset
# folders), so that what reads model files (`paper.readers`) finds them without importing
# the extra, which builds on more of the package than they do.
_FOLDER_FORMATS = []


def register_folder_format(is_one, load):
    """Makes `folder_loader` find the folders `is_one(path)` tells, for `load(path)`: their
    Keras model, or errors.InputError naming the folder and what is wrong with it."""
    if (is_one, load) not in _FOLDER_FORMATS:
        _FOLDER_FORMATS.append((is_one, load))


def folder_loader(path):
    """The `load` of the registered model folder format `path` is in, or None."""
    for is_one, load in _FOLDER_FORMATS:
        if is_one(path):
            return load
    return None


# What Keras' safe mode refuses (keras.saving.load_model(safe_mode=True)): the layer or
# object, in its own error message, and what it would do when loaded.
_UNSAFE = (
    ("`Lambda` layer", "a Lambda layer, whose Python code runs when it is loaded"),
    ("Python lambda", "a Python lambda, whose code runs when it is loaded"),
    ("`TFSMLayer`", "a TFSMLayer, which loads and runs an external SavedModel"),
    ("`torch.nn.Module`", "a pickled torch.nn.Module, whose code runs when it is loaded"),
    ("vocabulary file outside", "a layer that reads a vocabulary file outside the archive"),
)


def _messages(error):
    """The messages of an error and of the errors it was raised from."""
    seen = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return " ".join(str(e) for e in seen)


def first_line(error, limit=200):
    """An error's message cut to its first line and `limit` characters, for one line."""
    text = str(error).strip().split("\n", 1)[0] or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def keras_fault(path, error):
    """What is wrong with a Keras file whose loading raised `error`, in words."""
    if isinstance(error, RecursionError):
        return "its configuration is nested too deeply to read"
    text = _messages(error)
    for marker, what in _UNSAFE:
        if marker in text:
            return f"it has {what}; pass --trust_model to load it anyway"
    unknown = re.search(r"Could not locate (class|function) '([^']+)'", text)
    if unknown:
        return (
            f"its {unknown.group(1)} {unknown.group(2)!r} is neither Keras' nor this "
            "package's (a custom layer whose code is not imported?)"
        )
    # Keras wraps a layer's own error in its deserialisation errors, each quoting the one
    # inside after "Exception encountered:": the innermost says what is wrong.
    inner = re.findall(r"Exception encountered: ([^\n]+)", str(error))
    if inner:
        return f"it cannot be loaded as a Keras model: {first_line(inner[-1])}"
    return f"it cannot be loaded as a Keras model ({type(error).__name__}: {first_line(error)})"


def load_keras(path, trust=False):
    """A Keras model file (.keras, .h5), loaded without compiling.

    Args:
        path: the file.
        trust: load with safe_mode=False: Lambda layers' code runs, TFSMLayers load.

    Raises:
        errors.InputError: the file is missing, not a Keras file (empty, cut short, another
            kind), refused by safe mode, or cannot be built; the message names it.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        what = "is a folder" if os.path.isdir(path) else "does not exist"
        raise errors.InputError(f"{path}: the model file {what}")
    if path.lower().endswith(".keras") and not zipfile.is_zipfile(path):
        size = os.path.getsize(path)
        raise errors.InputError(
            f"{path} is not a .keras file: not a zip archive ({size:,} bytes; empty, cut "
            "short or another kind of file)"
        )
    model_archive.check(path)  # the sizes its zip declares, before Keras reads them
    try:
        return keras.models.load_model(path, compile=False, safe_mode=not trust)
    except ImportError:
        raise
    except Exception as error:  # noqa: BLE001 - a file from anywhere: any fault is its own
        raise errors.InputError(f"{path}: {keras_fault(path, error)}") from error


def _torch_load(torch, path):
    """`torch.load` of a file's tensors only (`weights_only`), mapped from the file rather
    than read into memory where its format allows (`mmap`): a tensor's data is never
    larger than the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as error:
        if "mmap" not in str(error):
            raise
    # The legacy (before PyTorch 1.6) format, which cannot be mapped.
    return torch.load(path, map_location="cpu", weights_only=True)


def load_state_dict(path):
    """What a PyTorch file (.pth, .pt) holds, loaded with `torch.load(weights_only=True)`,
    which restores tensors and plain containers only and runs no code from the file.

    Raises:
        ImportError: PyTorch is not installed.
        errors.InputError: the file is missing, empty, cut short, not a PyTorch file, or
            holds objects other than tensors and plain containers; the message names it.
    """
    import pickle

    import torch

    path = os.fspath(path)
    if not os.path.isfile(path):
        what = "is a folder" if os.path.isdir(path) else "does not exist"
        raise errors.InputError(f"{path}: the PyTorch file {what}")
    if os.path.getsize(path) == 0:
        raise errors.InputError(f"{path} is not a PyTorch file: it is empty")
    try:
        return _torch_load(torch, path)
    except pickle.UnpicklingError as error:
        # weights_only=True refuses any object but tensors and plain containers.
        found = re.search(r"(?:Unsupported global: |unsupported )GLOBAL ([\w.]+)", str(error))
        if found:
            raise errors.InputError(
                f"{path} holds a Python object ({found.group(1)}), not only tensors, which "
                "torch.load(weights_only=True) refuses: loading it could run code from the "
                "file (save model.state_dict(), not the model)"
            ) from error
        detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(error))
        raise errors.InputError(
            f"{path} is not a PyTorch file that loads with weights_only=True (cut short or "
            f"another kind of file: {detail.group(1) if detail else first_line(error, 100)})"
        ) from error
    except Exception as error:  # noqa: BLE001 - a file from anywhere: any fault is its own
        raise errors.InputError(
            f"{path} is not a PyTorch file that loads (cut short or another kind of file: "
            f"{type(error).__name__}: {first_line(error, 100)})"
        ) from error
