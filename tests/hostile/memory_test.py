"""Small files that claim to be large cost no more than their headers: every reader checks
the sizes a file declares before it allocates (an image's pixels, SubtractMean's size, a
state dict's tensors, a .keras archive's members, an .npz's arrays).

Each runs in a child process under the harness' address-space limit (where the same file
took gigabytes, or aborted the process, before), and its peak memory is read back.
"""

import concurrent.futures
import io
import json
import os
import re
import zipfile

import bombs
import harness
import keras
import numpy as np
import pytest
import tiny
from PIL import Image

import keras_alexnet
from keras_alexnet.data import image_headers
from keras_alexnet.data import stats as stats_lib
from keras_alexnet.models import mean_image
from keras_alexnet.serving import saved_model
from keras_alexnet.weights import weight_files

LIMIT = f"{image_headers.MAX_PIXELS:,}"


@pytest.fixture(scope="module")
def version(tmp_path_factory):
    """A tiny model exported as the export tool writes it: its version folder."""
    tiny.register()
    keras.utils.set_random_seed(0)
    model = keras_alexnet.AlexNet(4, variant="tiny")
    rng = np.random.default_rng(0)
    stats = stats_lib.Stats(rng.uniform(0, 255, (256, 256, 3)), np.ones(3), np.eye(3))
    out = tmp_path_factory.mktemp("saved_models")
    return saved_model.export(model, stats, list("abcd"), str(out), "tiny")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Over-limit images (refused) and a small GIF of many large frames (read), by name."""
    folder = tmp_path_factory.mktemp("bombs")
    files = {
        "huge.png": bombs.png(20000, 20000),
        "huge_screen.gif": bombs.gif((60000, 60000), [(0, 0, 0), (9, 9, 9)], []),
        "huge_frame.gif": bombs.gif(
            (8, 8), [(0, 0, 0), (9, 9, 9)], [((0, 0, 60000, 60000), bombs.ONE_PIXEL)]
        ),
        "huge.webp": bombs.webp_canvas(16384, 16384),
        "frames.gif": bombs.full_frames_gif(),
    }
    paths = {}
    for name, data in files.items():
        assert len(data) < 10 * 2**20
        paths[name] = folder / name
        paths[name].write_bytes(data)
    paths["valid.png"] = folder / "valid.png"
    Image.fromarray(np.full((40, 50, 3), 200, np.uint8)).save(paths["valid.png"])
    return paths


_LOADS = r"""
import sys
import keras
import keras_alexnet
import tensorflow as tf
from keras_alexnet.data import stats
from keras_alexnet.models import model_archive

version, huge_png, frames_gif, subtract_mean, stride_0, bomb, npz = sys.argv[1:]
serving = tf.saved_model.load(version).signatures["serving_default"]

def attempt(name, load):
    try:
        load()
        print(name, "LOADED")
    except Exception as error:
        print(name, type(error).__name__, " ".join(str(error).split())[-400:])
    sys.stdout.flush()

attempt("serving", lambda: serving(images=tf.constant([open(huge_png, "rb").read()])))
out = serving(images=tf.constant([open(frames_gif, "rb").read()]))
print("frames", out["probabilities"].shape)
attempt("subtract_mean", lambda: keras.models.load_model(subtract_mean))
attempt("stride_0", lambda: keras_alexnet.AlexNet(weights=stride_0))
attempt("bomb", lambda: model_archive.load_model(bomb))
attempt("npz", lambda: stats.Stats.load(npz))
"""


def _subtract_mean_file(path, size):
    """A .keras file of one SubtractMean layer whose config claims `size`."""
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, mean_image.SubtractMean(16, name="subtract_mean")(inputs))
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    config["config"]["layers"][1]["config"]["size"] = size
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return members


def _stride_0_state_dict(path):
    """torchvision's AlexNet keys, each tensor one stored number expanded to its shape."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (the test extra)")
    state = {}
    for name, prefix in weight_files.TORCHVISION_KEYS.items():
        shape = tuple(100_000 if n is None else n for n in weight_files.TORCHVISION_SHAPES[name])
        state[f"{prefix}.weight"] = torch.zeros(1).expand(*shape)
        state[f"{prefix}.bias"] = torch.zeros(1).expand(shape[0])
    torch.save(state, path)


def _big_npz(path):
    """dataset_stats.npz whose mean_image header declares 20000x20000x3 float32."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in (("eigval", np.ones(3)), ("eigvec", np.eye(3))):
            buffer = io.BytesIO()
            np.save(buffer, array)
            archive.writestr(f"{name}.npy", buffer.getvalue())
        archive.writestr("num_images.npy", bombs.npy_header_only((), "<i8") + bytes(8))
        archive.writestr("mean_image.npy", bombs.npy_header_only((20000, 20000, 3)) + bytes(64))


@pytest.fixture(scope="module")
def runs(version, images, tmp_path_factory):
    """predict on the images, and the model files and the serving signature loaded in
    Python: two children under the address limit, run at the same time (each starts
    TensorFlow, most of its time)."""
    folder = tmp_path_factory.mktemp("model_files")
    members = _subtract_mean_file(folder / "subtract_mean.keras", 20000)
    _stride_0_state_dict(folder / "stride_0.pth")
    bombs.zip_bomb_member(folder / "bomb.keras", members, "config.json", 2**30)
    _big_npz(folder / "dataset_stats.npz")
    sizes = [os.path.getsize(folder / n) for n in ("stride_0.pth", "bomb.keras")]
    assert max(sizes) < 10 * 2**20, sizes
    names = ["huge.png", "huge_screen.gif", "huge_frame.gif", "huge.webp", "frames.gif"]
    files = ["subtract_mean.keras", "stride_0.pth", "bomb.keras", "dataset_stats.npz"]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        predict = pool.submit(
            harness.run_tool, "predict", f"--model={version}", *(images[n] for n in names)
        )
        loads = pool.submit(
            harness.run_python,
            _LOADS,
            version,
            images["huge.png"],
            images["frames.gif"],
            *(folder / n for n in files),
        )
        return {"predict": predict.result(), "loads": loads.result()}


def test_model_files_and_the_serving_signature_check_sizes_first(runs):
    result = runs["loads"]
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["serving"].startswith("InvalidArgumentError"), lines
    assert LIMIT in lines["serving"] and "20000x20000" in lines["serving"], lines
    assert lines["frames"] == "(1, 4)", lines
    assert "SubtractMean layer 'subtract_mean'" in lines["subtract_mean"], lines
    assert "size=20000" in lines["subtract_mean"], lines
    assert lines["stride_0"].startswith("InputError"), lines
    assert "features.0.weight" in lines["stride_0"] and "stride-0" in lines["stride_0"]
    assert lines["bomb"].startswith("InputError") and "config.json" in lines["bomb"], lines
    # Its declared size, read from the zip: 1 GiB and the config's own bytes.
    assert re.search(r"unpacks to 1,073,7\d\d,\d{3} bytes", lines["bomb"]), lines
    assert lines["npz"].startswith("InputError") and "mean_image" in lines["npz"], lines
    assert "[20000, 20000, 3]" in lines["npz"], lines
    assert result.peak_bytes < harness.PEAK_LIMIT, result.peak_bytes


def test_predict_refuses_over_limit_images_by_name_and_reads_many_frames(images, runs):
    over = ["huge.png", "huge_screen.gif", "huge_frame.gif", "huge.webp"]
    result = runs["predict"]
    context = result.stderr[-3000:]
    assert "Traceback" not in result.stderr, context
    assert result.returncode == 1, context  # per-image failures, the others predicted
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(over), context
    for name, line in zip(over, errors):
        assert str(images[name]) in line and LIMIT in line and "pixels" in line, line
    assert "60000x60000" in errors[1] and "60000x60000" in errors[2]
    assert f"{images['frames.gif']}\n" in result.stdout, result.stdout
    assert result.peak_bytes < harness.PEAK_LIMIT, result.peak_bytes


def test_subtract_mean_refuses_a_size_over_its_bound_in_the_constructor():
    with pytest.raises(ValueError, match=r"SubtractMean layer 'm'.*size=4097"):
        mean_image.SubtractMean(mean_image.MAX_SIZE + 1, name="m")
    assert mean_image.SubtractMean(mean_image.MAX_SIZE).size == mean_image.MAX_SIZE


def test_a_claimed_subtract_mean_size_is_named_by_every_tool_that_loads_the_file(tmp_path):
    """The file's loader (`loading.load_keras`, which verify, predict, evaluate, export and
    AlexNet(weights=...) share) names the layer's own fault, which Keras wraps twice."""
    from keras_alexnet import errors
    from keras_alexnet.models import loading

    path = tmp_path / "subtract_mean.keras"
    _subtract_mean_file(path, 20000)
    with pytest.raises(errors.InputError) as raised:
        loading.load_keras(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: it cannot be loaded as a Keras model: ")
    assert "SubtractMean layer 'subtract_mean'" in message and "size=20000" in message
    assert "\n" not in message and message.count("size=20000") == 1


def test_the_peak_is_the_childs_own_not_the_test_process_s():
    """A child forked from a test process that holds 600 MB reports its own peak: a few
    megabytes doing nothing, and 400 MB more when it fills 400 MB."""
    held = np.ones(600 * 2**20, np.uint8)  # resident in this process while the children run
    idle = harness.run_python("pass")
    filled = harness.run_python("import numpy as np; x = np.ones(400 * 2**20, np.uint8)")
    assert held.sum() == held.size
    assert idle.returncode == filled.returncode == 0, (idle.stderr, filled.stderr)
    assert idle.peak_bytes < 200 * 2**20, idle.peak_bytes / 2**20
    assert filled.peak_bytes - idle.peak_bytes > 400 * 2**20, filled.peak_bytes / 2**20
