"""Shared fixtures. Importing keras_alexnet first sets TensorFlow's environment."""

# isort: off
import keras_alexnet  # first: it sets TensorFlow's environment before TensorFlow loads
# isort: on


import ctypes
import ctypes.util
import fcntl
import gc
import json
import os
import pathlib

import image_data
import keras
import pytest
import tiny

from keras_alexnet.data import folder_sources
from keras_alexnet.data import shapes as shapes_dataset
from keras_alexnet.serving import saved_model as export
from keras_alexnet.training import trainer as train


@pytest.fixture(scope="session")
def paper_model():
    """The paper's AlexNet, built once: building 61M parameters takes seconds."""
    keras.utils.set_random_seed(0)
    return keras_alexnet.AlexNet()


def _resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# Above this, a test module's end frees what its models hold. The freeing takes a second or
# two (most of it the collector walking TensorFlow's graphs); most modules stay below.
FREE_ABOVE = 1536 * 2**20


@pytest.fixture(autouse=True, scope="module")
def _free_memory_after_each_module():
    """Frees what a test module's models hold, so the suite's memory does not add up."""
    yield
    if _resident_bytes() < FREE_ABOVE:
        return
    keras.backend.clear_session()
    gc.collect()
    # glibc keeps freed memory for reuse; give it back, so the suite's peak is one module's.
    ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)


@pytest.fixture(autouse=True)
def _collect_large_garbage():
    """Collects the garbage of a test that built large models (Keras' layers and models
    hold reference cycles, which Python's collector frees late), before the next test adds
    its own: the process's peak memory is then one test's, not several."""
    before = _resident_bytes()
    yield
    if _resident_bytes() - before > 200 * 2**20:
        gc.collect()


@pytest.fixture(autouse=True)
def _no_publishers(monkeypatch, tmp_path_factory):
    """Named weights are fetched from nowhere real and cached in a folder of the test's own:
    the mirror is a closed port on 127.0.0.1 (refused at once), KERAS_HOME a fresh folder.
    A test that serves files points the mirror at its own server."""
    monkeypatch.setenv("KERAS_ALEXNET_MIRROR", "http://127.0.0.1:9/")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("keras_home")))


@pytest.fixture(autouse=True)
def _float32_policy():
    """Each test starts and ends under the float32 policy, whatever it sets."""
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """A small built-in image set written once per test session (see tiny.SHAPES)."""
    root = tmp_path_factory.mktemp("data") / "shapes"
    return shapes_dataset.ensure_shapes_dataset(root, **tiny.SHAPES)


def shared(tmp_path_factory, name, make):
    """make(folder) run once per test session, its JSON result returned to every caller.

    Under pytest-xdist each worker is a session of its own: the first worker to get here
    makes the result in a folder all workers see (beside their own temporary folders),
    under a file lock; the others wait for it and read it. Only for results that the
    tests read and never change.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return make(tmp_path_factory.mktemp(name))
    folder = tmp_path_factory.getbasetemp().parent / name
    with open(f"{folder}.lock", "w") as lock:  # closing the file releases the lock
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = folder / "result.json"
        if not done.exists():
            folder.mkdir(exist_ok=True)
            done.write_text(json.dumps(make(folder)))
        return json.loads(done.read_text())


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """The tiny variant trained one epoch (6 steps) on a small built-in set: (model_dir, root).

    Trained once per session for the evaluate, export and predict tests, which count on
    its 6 classes and 18 validation images; none of them may change its checkpoint.
    """

    def make(base):
        root = shapes_dataset.ensure_shapes_dataset(
            base / "shapes", num_classes=6, train_per_class=8, val_per_class=3, image_size=(64, 80)
        )
        model_dir = str(base / "run")
        train.train(tiny.train_config(model_dir, root, init="he", input_scale="auto"))
        return model_dir, str(root)

    # The run's variant, known in every worker, also one that did not train the run.
    tiny.register()
    model_dir, root = shared(tmp_path_factory, "trained", make)
    return model_dir, pathlib.Path(root)


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory):
    """The trained run exported twice under the name "tiny": (directory, version 1, version 2)."""
    model_dir, _ = trained

    def make(out):
        first = export.export_run(model_dir, str(out), name="tiny")
        second = export.export_run(model_dir, str(out), name="tiny")
        return str(out), first, second

    out, first, second = shared(tmp_path_factory, "saved_models", make)
    return pathlib.Path(out), first, second


@pytest.fixture(scope="session")
def exported_formats(trained, tmp_path_factory):
    """The trained run exported in every format and quantization: the version folder.

    int8 calibrates on 24 of the run's training images.
    """
    model_dir, _ = trained

    def make(out):
        return export.export_run(
            model_dir,
            str(out),
            name="tiny",
            formats="saved_model,litert,onnx",
            quantize="none,float16,dynamic,int8",
            calibration_images=24,
        )

    return shared(tmp_path_factory, "formats", make)


@pytest.fixture(scope="session")
def folder(tmp_path_factory):
    """A small image folder of every format (see image_data.make_folder)."""
    return image_data.make_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def source(folder):
    """The folder source of `folder`."""
    return folder_sources.folder_source(folder)


@pytest.fixture(scope="session")
def stats():
    """Random training-set statistics (image_data.random_stats)."""
    return image_data.random_stats()
