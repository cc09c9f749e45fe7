""".keras files opened within bounds: the sizes the zip declares checked before Keras reads.

A .keras file is a zip archive; Keras reads its config.json (and its model.weights.h5) whole
into memory. A 4 MB archive may declare a config.json of gigabytes of compressed spaces, so
`load_model` reads the sizes the archive declares for its members first (Python's zipfile
never returns more than a member's declared size) and refuses a config beyond
`MAX_CONFIG_BYTES`, or a large member that unpacks to more than `MAX_RATIO` times its
packed size (weights barely compress; a bomb is thousands of times its size).
"""

import os
import zipfile

import keras

from keras_alexnet import errors

# An AlexNet's config.json is about 20 KB, a ResNet-152's about 500 KB.
MAX_CONFIG_BYTES = 16 * 2**20
# Members up to this size are not asked to be incompressible.
SMALL_MEMBER_BYTES = 64 * 2**20
MAX_RATIO = 10


def check(path):
    """Refuses a .keras archive whose members declare more than they may unpack to.

    Other files (a legacy .h5 model, a SavedModel folder) are left to Keras.

    Raises:
        errors.InputError: a member over its bound, named with its declared size.
    """
    path = os.fspath(path)
    if not os.path.isfile(path) or not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # Keras says what is wrong with it.
    for info in infos:
        is_config = os.path.basename(info.filename) in ("config.json", "metadata.json")
        if is_config and info.file_size > MAX_CONFIG_BYTES:
            raise errors.InputError(
                f"{path}: its {info.filename} unpacks to {info.file_size:,} bytes, over the "
                f"{MAX_CONFIG_BYTES:,} a model's config may take"
            )
        if info.file_size > max(SMALL_MEMBER_BYTES, MAX_RATIO * info.compress_size):
            raise errors.InputError(
                f"{path}: its {info.filename} unpacks to {info.file_size:,} bytes from "
                f"{info.compress_size:,} (more than {MAX_RATIO} times: not a model's weights)"
            )


def load_model(path, **kwargs):
    """`keras.models.load_model(path, **kwargs)` after `check(path)`."""
    check(path)
    return keras.models.load_model(path, **kwargs)
