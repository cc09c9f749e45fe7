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

from keras_alexnet import export
from keras_alexnet import run_dir

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


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_keras_file_predicts_the_same_under_another_backend(backend, exported, trained, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (pip install -e '.[test]' installs it)")
    model_dir, _ = trained
    _, first, _ = exported
    model, _ = run_dir.restore_model(model_dir)
    x = np.random.default_rng(0).normal(0, 40, (3, 227, 227, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            os.path.join(first, export.KERAS_FILE),
            str(tmp_path / "x.npy"),
            str(tmp_path / "got.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, KERAS_BACKEND=backend),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info == {"backend": backend, "tensorflow_imported": False}
    want = model(x, training=False).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "got.npy"), want, rtol=1e-5)
