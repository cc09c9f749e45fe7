"""LiteRT and ONNX exports of a tiny trained run (`trained`, conftest.py): each file run by
its own runtime in a fresh process on raw RGB pixels against the Keras model, the int8
file's uint8 input and integer weights, the ONNX graph's checker and LRN nodes, and
`predict` on every format."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from fresh_process import run_module
from image_data import raw_validation_pixels
from image_data import validation_pixels

from keras_alexnet.paper import onnx_reader
from keras_alexnet.runs import folder as run_dir
from keras_alexnet.serving import formats
from keras_alexnet.serving import prediction as predict
from keras_alexnet.serving import runtimes
from keras_alexnet.serving import saved_model as export

# The test extra installs them (pip install -e ".[test]").
onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
Interpreter = pytest.importorskip(
    "ai_edge_litert.interpreter", reason="the litert extra is not installed"
).Interpreter

QUANTIZED = ("float16", "dynamic", "int8")
QUANTIZED_FILES = {formats.litert_file(q) for q in QUANTIZED}
FILES = [formats.litert_file(q) for q in formats.QUANTIZATIONS] + [formats.ONNX_FILE]


@pytest.fixture(scope="module")
def version(exported_formats):
    return exported_formats


@pytest.fixture(scope="module")
def validation(trained):
    """The run's 18 validation images: (paths, raw RGB central patches, the probabilities of
    the run's checkpoint on them as evaluation preprocesses them, mean subtracted)."""
    model, _ = run_dir.restore_model(trained[0])
    paths, pixels = validation_pixels(*trained)
    raw_paths, raw = raw_validation_pixels(trained[1])
    assert raw_paths == paths
    return paths, raw, model(pixels, training=False).numpy()


# Only the runtimes: neither TensorFlow nor keras_alexnet is imported. Every file gets the
# raw RGB pixels, the int8 file as uint8 (a camera's image), the others as float32.
RUNTIMES = textwrap.dedent("""
    import json, sys
    import numpy as np
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter
    folder, names, pixels = sys.argv[1], sys.argv[2].split(","), np.load(sys.argv[3])
    out = {}
    for name in names:
        path = f"{folder}/{name}"
        if name.endswith(".onnx"):
            session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
            probs = session.run(["probabilities"], {"rgb": pixels})[0]
            inputs = [i.name for i in session.get_inputs()]
        else:
            interpreter = Interpreter(model_path=path)
            (inp,), (output,) = interpreter.get_input_details(), interpreter.get_output_details()
            interpreter.resize_tensor_input(inp["index"], pixels.shape)
            interpreter.allocate_tensors()
            if inp["dtype"] == np.uint8:
                interpreter.set_tensor(inp["index"], np.round(pixels).astype(np.uint8))
            else:
                interpreter.set_tensor(inp["index"], pixels)
            interpreter.invoke()
            probs = interpreter.get_tensor(output["index"])
            inputs = interpreter.get_signature_list()["serve"]["inputs"]
            inputs += [np.dtype(inp["dtype"]).name, list(map(float, inp["quantization"]))]
        out[name] = {"probs": probs.tolist(), "inputs": inputs}
    out["tensorflow_imported"] = "tensorflow" in sys.modules
    print(json.dumps(out))
""")


def test_export_writes_every_format_beside_the_saved_model(version):
    names = set(os.listdir(version))
    assert set(FILES) | {"saved_model.pb", export.KERAS_FILE, "labels.txt"} <= names
    # Each file holds the mean image's central window as a constant (227x227x3 values:
    # float32 in the float32 and dynamic-range files, float16, int8), large beside the
    # tiny model's 120k weights: the weights' share is compared. AlexNet's ratios are in
    # docs/serving.md's table.
    window = 227 * 227 * 3
    constant = {"model.tflite": 4, "model_float16.tflite": 2, "model_dynamic.tflite": 4}
    constant.update({"model_int8.tflite": 1, "model.onnx": 4})
    sizes = {
        name: os.path.getsize(os.path.join(version, name)) - constant[name] * window
        for name in FILES
    }
    assert sizes["model_int8.tflite"] < 0.4 * sizes["model.tflite"]
    assert sizes["model_dynamic.tflite"] < 0.4 * sizes["model.tflite"]
    assert sizes["model_float16.tflite"] < 0.6 * sizes["model.tflite"]


def test_every_file_runs_in_its_own_runtime_in_a_fresh_process(version, validation, tmp_path):
    _, pixels, want = validation
    np.save(tmp_path / "pixels.npy", pixels)
    result = subprocess.run(
        [sys.executable, "-c", RUNTIMES, version, ",".join(FILES), str(tmp_path / "pixels.npy")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got.pop("tensorflow_imported") is False
    # Every file takes raw RGB 0-255 named "rgb": float32, the int8 file uint8 with scale 1
    # and zero point 0 (its values are the pixels').
    assert got["model.onnx"]["inputs"] == ["rgb"]
    for q in formats.QUANTIZATIONS:
        dtype = "uint8" if q == "int8" else "float32"
        scale = [1.0, 0.0] if q == "int8" else [0.0, 0.0]
        assert got[formats.litert_file(q)]["inputs"] == ["rgb", dtype, scale], q
    # The raw pixels through each file, against the run's checkpoint on the pixels less the
    # mean, as evaluation gives them.
    for name in ("model.tflite", "model.onnx"):
        np.testing.assert_allclose(got[name]["probs"], want, rtol=1e-4, atol=1e-6, err_msg=name)
    for q in QUANTIZED:
        probs = np.array(got[formats.litert_file(q)]["probs"])
        agreement = np.mean(probs.argmax(-1) == want.argmax(-1))
        print(
            f"{q}: top-1 agreement with Keras {agreement:.0%}, max |dp| "
            f"{np.max(np.abs(probs - want)):.4f}"
        )
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-2)
        assert agreement >= 0.5, (q, agreement)
        assert np.max(np.abs(probs - want)) < 0.25, q


def test_quantized_files_hold_integer_weights(version, trained):
    model, _ = run_dir.restore_model(trained[0])
    # conv1 ... fc8; a grouped kernel is stored as one tensor per tower.
    kernels = []
    for layer in model.layers:
        if hasattr(layer, "kernel"):
            groups = getattr(layer, "groups", 1)
            kernels += [int(np.prod(layer.kernel.shape)) // groups] * groups
    assert len(kernels) == 8 + 3  # conv1 ... fc8, conv2, conv4 and conv5 in two towers
    for q, dtype in (("int8", np.int8), ("dynamic", np.int8), ("float16", np.float16)):
        tensors = Interpreter(model_path=os.path.join(version, formats.litert_file(q)))
        stored = [
            int(np.prod(t["shape"])) for t in tensors.get_tensor_details() if t["dtype"] == dtype
        ]
        # Every kernel (transposed as TFLite stores them) is a tensor of dtype; dynamic
        # range quantization leaves tensors under 1024 values (tiny's fc8) in float32, and
        # the int8 file keeps fc8 in float32 (formats._int8_bytes).
        expected = kernels[:-1] if q == "int8" else kernels
        for size in expected if q != "dynamic" else [k for k in kernels if k >= 1024]:
            assert size in stored, (q, size)
            stored.remove(size)
        if q == "int8":
            floats = [
                int(np.prod(t["shape"]))
                for t in tensors.get_tensor_details()
                if t["dtype"] == np.float32
            ]
            assert kernels[-1] in floats
    float_file = Interpreter(model_path=os.path.join(version, "model.tflite"))
    assert not [t for t in float_file.get_tensor_details() if t["dtype"] == np.int8]


def test_onnx_file_passes_the_checker_and_its_lrn_reads_as_the_papers(version):
    proto = onnx.load(os.path.join(version, formats.ONNX_FILE))
    onnx.checker.check_model(proto, full_check=True)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [
        formats.ONNX_OPSET
    ]
    # LRN written out (layers.lrn_from_ops): x*x, a banded 1x1 Conv, Log, Mul, Exp, Mul.
    kinds = [n.op_type for n in proto.graph.node]
    assert "LRN" not in kinds and kinds.count("Log") == 2 and kinds.count("Exp") == 2
    network = onnx_reader.read_onnx(os.path.join(version, formats.ONNX_FILE))
    lrns = [r.lrn for r in network.records if r.subkind == "lrn"]
    assert len(lrns) == 2
    for lrn in lrns:  # the tiny variant's LRN is the paper's
        assert lrn["n"] == 5 and lrn["k"] == 2.0 and lrn["beta"] == pytest.approx(0.75)
        assert lrn["alpha"] == pytest.approx(1e-4)
    # tf2onnx's layout Transposes read as no layer: every tower pair is one grouped
    # convolution, with the bias added after its concat; the input is NHWC. (Before conv1,
    # the mean image's Sub and the input scaling's Mul are preprocessing.)
    assert network.input_shape == (227, 227, 3)
    first_conv = next(i for i, r in enumerate(network.records) if r.kind == "conv")
    assert not [r for r in network.records[first_conv:] if r.kind == "unknown"]
    convs = [r for r in network.records if r.kind == "conv"]
    assert [r.groups for r in convs] == [1, 2, 1, 2, 2]  # the tiny variant's towers
    keras_model = keras.models.load_model(os.path.join(version, "model.keras"))
    weights = sum(int(np.prod(w.shape)) for w in keras_model.weights if "mean" not in w.path)
    assert sum(r.params for r in network.records) == weights
    # The LRN's banded kernels (12x12 and 32x32 here) and the mean image before conv1 are
    # constants, not weights: the total counts the weights and a few scalars (shapes).
    assert weights <= network.params < weights + 100
    assert [i.name for i in proto.graph.input] == ["rgb"]
    assert [o.name for o in proto.graph.output] == ["probabilities"]


def test_predict_gives_the_same_top5_on_every_format(version, validation):
    paths, _, _ = validation
    saved = tf.saved_model.load(version).signatures["serving_default"]
    want = predict.predict_files(saved, paths[:3])
    for name in [export.KERAS_FILE, *FILES]:
        got = predict.predict_files(
            formats.serving_function(os.path.join(version, name)), paths[:3]
        )
        for (path, result, error), (_, expected, _) in zip(got, want):
            assert error is None, (name, error)
            labels = [label for label, _ in result]
            assert labels[0] == expected[0][0] or name in {
                formats.litert_file(q) for q in QUANTIZED
            }
            if name in ("model.tflite", "model.onnx", export.KERAS_FILE):
                assert labels == [label for label, _ in expected], (name, path)
                np.testing.assert_allclose(
                    [p for _, p in result], [p for _, p in expected], rtol=1e-4, atol=1e-6
                )


def test_predict_cli_runs_a_litert_file(version, validation, tmp_path):
    paths, _, _ = validation
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    model = os.path.join(version, "model_int8.tflite")
    result = run_module("predict", f"--model={model}", paths[0], str(bad))
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"Model {model}" in result.stdout and paths[0] in result.stdout
    assert result.stdout.count("%") == 5
    assert f"error: {bad}: not a readable JPEG, PNG, BMP, GIF or WebP image" in result.stderr


def test_bad_formats_and_missing_calibration_images_fail_before_writing(trained, tmp_path):
    model_dir, _ = trained
    with pytest.raises(
        ValueError, match=r"format must be one or more of .* Received: format='tflite'"
    ):
        export.export_run(model_dir, str(tmp_path), formats="tflite")
    with pytest.raises(ValueError, match="add litert to --format"):
        export.export_run(model_dir, str(tmp_path), quantize="int8")
    with pytest.raises(ValueError, match="Point --data_dir at them"):
        export.export_run(
            model_dir,
            str(tmp_path),
            formats="litert",
            quantize="int8",
            data_dir=str(tmp_path / "nowhere"),
        )
    with pytest.raises(ValueError, match="without --mixed_precision"):
        export.export_run(model_dir, str(tmp_path), formats="onnx", mixed_precision="bfloat16")
    assert not os.listdir(tmp_path)


def test_onnx_without_the_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    with pytest.raises(ImportError, match=r"pip install keras-alexnet\[onnx\]"):
        formats.check_formats("onnx", "none")


def test_model_files_need_their_labels_and_mean_image(version, tmp_path):
    lone = tmp_path / "model.tflite"
    lone.write_bytes(open(os.path.join(version, "model.tflite"), "rb").read())
    with pytest.raises(ValueError, match="labels.txt must sit beside the model file"):
        formats.serving_function(str(lone))
    with pytest.raises(ValueError, match="must end in"):
        formats.open_runtime(str(tmp_path / "model.pt"))


def test_every_file_gives_what_model_keras_gives_on_the_same_raw_pixels(version, validation):
    _, raw, want = validation
    keras_model = keras.models.load_model(os.path.join(version, export.KERAS_FILE))
    reference = keras_model(raw, training=False).numpy()
    # model.keras itself: the checkpoint's probabilities, the mean subtracted inside.
    np.testing.assert_allclose(reference, want, rtol=1e-4, atol=1e-6)
    saved = tf.saved_model.load(version).signatures["predict_pixels"]
    assert list(saved.structured_input_signature[1]) == ["rgb"]
    files = {"predict_pixels": saved(rgb=tf.constant(raw))["probabilities"].numpy()}
    for name in FILES:
        runner = formats.open_runtime(os.path.join(version, name))
        assert runner.takes_raw, name
        files[name] = runner(raw)
    for name, probs in files.items():
        if name in QUANTIZED_FILES:
            assert np.mean(probs.argmax(-1) == reference.argmax(-1)) >= 0.5, name
            assert np.max(np.abs(probs - reference)) < 0.25, name
        else:
            np.testing.assert_allclose(probs, reference, rtol=1e-4, atol=1e-6, err_msg=name)


def test_int8_file_takes_a_cameras_uint8_image(version, validation):
    path = os.path.join(version, formats.litert_file("int8"))
    runner = formats.open_runtime(path)
    assert runner.input["dtype"] == np.uint8
    assert runner.input["quantization"] == (1.0, 0)  # a uint8 value is the pixel's value
    # Its first operation shifts them into int8, losslessly: the whole 0-255 range.
    first = runtimes.litert_operations(path)[0]
    assert first["op"] == "QUANTIZE"
    inner = next(
        t for t in runner.interpreter.get_tensor_details() if t["index"] == first["output"]
    )
    assert inner["dtype"] == np.int8 and inner["quantization"] == (1.0, -128)
    # A camera's images: uint8 RGB at the input's size (here the validation images'
    # central patches, rounded), straight into the interpreter.
    _, raw, _ = validation
    images = np.clip(np.round(raw[:4]), 0, 255).astype(np.uint8)
    interpreter = runner.interpreter
    interpreter.resize_tensor_input(runner.input["index"], images.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(runner.input["index"], images)
    interpreter.invoke()
    got = interpreter.get_tensor(runner.output["index"])
    keras_model = keras.models.load_model(os.path.join(version, export.KERAS_FILE))
    want = keras_model(images.astype(np.float32), training=False).numpy()
    assert got.dtype == np.float32
    assert np.mean(got.argmax(-1) == want.argmax(-1)) >= 0.5
    assert np.max(np.abs(got - want)) < 0.25
    # The runtime gives float pixels of those values the same probabilities.
    np.testing.assert_array_equal(formats.open_runtime(path)(images.astype(np.float32)), got)


def test_without_ai_edge_litert_tensorflows_interpreter_runs_the_file(
    version, validation, monkeypatch
):
    _, pixels, want = validation
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    model = formats.open_runtime(os.path.join(version, "model.tflite"))
    assert isinstance(model.interpreter, tf.lite.Interpreter) and model.takes_raw
    np.testing.assert_allclose(model(pixels[:2]), want[:2], rtol=1e-4, atol=1e-6)
