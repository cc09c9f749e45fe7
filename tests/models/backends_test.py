"""The exported .keras file under the JAX and PyTorch backends, each in a fresh process.

The layers compute with `keras.ops` there (layers_test.py checks that path against NumPy
and per-tower convolutions under TensorFlow); these tests load the file a tiny trained run
exported (`exported`, a session fixture in conftest.py) where TensorFlow is never imported,
and compare its probabilities with TensorFlow's.
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from keras_alexnet.runs import folder as run_dir
from keras_alexnet.serving import saved_model as export

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras_alexnet  # registers the layers
    import keras
    path, x_path, out_path = sys.argv[1:4]
    model = keras.models.load_model(path)
    np.save(out_path, keras.ops.convert_to_numpy(model(np.load(x_path), training=False)))
    print(json.dumps({
        "backend": keras.backend.backend(),
        "tensorflow_imported": "tensorflow" in sys.modules,
    }))
""")


BACKENDS = ("jax", "torch")


@pytest.fixture(scope="module")
def pixels(tmp_path_factory):
    x = np.random.default_rng(0).uniform(0, 255, (3, 227, 227, 3)).astype(np.float32)
    path = tmp_path_factory.mktemp("backends") / "x.npy"
    np.save(path, x)
    return x, path


@pytest.fixture(scope="module")
def loaded_elsewhere(exported, pixels):
    """The exported model.keras run under every installed backend, the processes started
    at once (most of their time is imports): {backend: (process, probabilities path)}."""
    _, first, _ = exported
    _, x_path = pixels
    started = {}
    for backend in BACKENDS:
        if importlib.util.find_spec(backend) is None:
            continue
        out = x_path.parent / f"{backend}.npy"
        keras_file = os.path.join(first, export.KERAS_FILE)
        process = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, keras_file, str(x_path), str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, KERAS_BACKEND=backend),
        )
        started[backend] = (process, out)
    yield started
    for process, _ in started.values():
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.parametrize("backend", BACKENDS)
def test_keras_file_predicts_the_same_under_another_backend(
    backend, loaded_elsewhere, trained, pixels
):
    if backend not in loaded_elsewhere:
        pytest.skip(f"{backend} is not installed (pip install -e '.[test]' installs it)")
    process, out = loaded_elsewhere[backend]
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    info = json.loads(stdout.strip().splitlines()[-1])
    assert info == {"backend": backend, "tensorflow_imported": False}
    x, _ = pixels
    model, _ = run_dir.restore_model(trained[0])
    # The file takes raw pixels: it subtracts the central window of the run's mean image.
    mean = run_dir.read_stats(trained[0]).mean_image
    top = (mean.shape[0] - x.shape[1]) // 2
    window = mean[top : top + x.shape[1], top : top + x.shape[2]]
    np.testing.assert_allclose(np.load(out), model(x - window, training=False).numpy(), rtol=1e-5)
