"""AlexNet as a KerasHub model (the optional extra: `pip install keras-alexnet[hub]`).

    import keras_alexnet  # registers the classes below with Keras once keras_hub loads
    import keras_hub

    classifier = keras_hub.models.ImageClassifier.from_preset("saved_models/alexnet/1/keras_hub")
    classifier.predict(images)  # raw RGB pixels, any size: the preset preprocesses them

The classes (`models.py`) are KerasHub's Backbone, ImageConverter, preprocessor and image
classifier for AlexNet: `AlexNetBackbone` (conv1 ... pool5 of any variant),
`AlexNetImageConverter` (the paper's central patch and the weights' normalisation),
`AlexNetImageClassifierPreprocessor` and `AlexNetImageClassifier` (fc6 ... fc8, the class
names carried). `presets.py` maps the weights one-to-one from an AlexNet Keras model and
back, and writes a preset folder (`python -m keras_alexnet.export --format=keras_hub`).

keras_hub is imported by `models.py` and `presets.py` only, never by `import keras_alexnet`:
the classes are importable from here (`keras_alexnet.hub.AlexNetBackbone`), which imports
keras_hub then, and `register()` (which `import keras_alexnet` calls) registers them with
Keras as soon as keras_hub is imported, so that `from_preset` finds them.
"""

import importlib
import importlib.abc
import importlib.util
import os
import sys

from keras_alexnet import errors
from keras_alexnet.models import loading

EXTRA = "keras-alexnet[hub] (pip install keras-hub)"
PRESET_FOLDER = "keras_hub"  # export's preset folder, in the version folder
# The files of a preset folder that say what it is (KerasHub's names).
CONFIG_FILE = "config.json"
TASK_FILE = "task.json"

_CLASSES = (
    "AlexNetBackbone",
    "AlexNetImageClassifier",
    "AlexNetImageClassifierPreprocessor",
    "AlexNetImageConverter",
)


def __getattr__(name):
    if name in _CLASSES:
        return getattr(importlib.import_module("keras_alexnet.hub.models"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def available():
    """Whether keras_hub is installed (without importing it)."""
    return "keras_hub" in sys.modules or importlib.util.find_spec("keras_hub") is not None


def require():
    """Raises ImportError, naming the extra, unless keras_hub is installed."""
    if not available():
        raise ImportError(f"KerasHub presets need keras_hub: install {EXTRA}.")


class _RegisterAfterKerasHub(importlib.abc.MetaPathFinder):
    """Finds keras_hub as the other finders do, and imports `models` (registering the
    classes) right after keras_hub's own module has run."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras_hub":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_register(module):
            exec_module(module)
            importlib.import_module("keras_alexnet.hub.models")

        spec.loader.exec_module = exec_and_register
        return spec


def register():
    """Registers the AlexNet KerasHub classes with Keras when keras_hub is imported: now if
    it is already, else right after it is. Costs nothing until then. Preset folders are
    registered as model folders (`loading.register_folder_format`), read by `load_preset`."""
    loading.register_folder_format(is_preset, load_preset)
    if "keras_hub" in sys.modules:
        importlib.import_module("keras_alexnet.hub.models")
    elif not any(isinstance(f, _RegisterAfterKerasHub) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterKerasHub())


def is_preset(path):
    """Whether `path` is a KerasHub preset folder (its config.json and task.json)."""
    return os.path.isfile(os.path.join(path, CONFIG_FILE)) and os.path.isfile(
        os.path.join(path, TASK_FILE)
    )


def load_preset(path):
    """The AlexNet Keras model of a preset folder (`presets.load_keras_model`).

    Raises:
        errors.InputError: keras_hub is not installed, or the folder is not a preset of an
            AlexNet classifier.
    """
    if not available():
        raise errors.InputError(f"{path} is a KerasHub preset: reading it needs {EXTRA}.")
    from keras_alexnet.hub import presets

    return presets.load_keras_model(path)
