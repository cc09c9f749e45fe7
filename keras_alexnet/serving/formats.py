"""LiteRT (TensorFlow Lite) and ONNX files of a trained model, and the runtimes that run them.

`python -m keras_alexnet.export --format=litert,onnx` writes them into the export's version
folder, beside the SavedModel, `labels.txt` and `dataset_stats.npz`:

    model.tflite            LiteRT, float32.
    model_float16.tflite    LiteRT, weights stored in float16 (computed in float32).
    model_dynamic.tflite    LiteRT, dynamic-range quantization: int8 weights; the
                            activations are quantized on the fly for the int8 kernels.
    model_int8.tflite       LiteRT, full-integer post-training quantization: int8 weights
                            and activations, calibrated on training images of the run,
                            but for the last layer and softmax (float32; see _int8_bytes).
    model.onnx              ONNX, opset `ONNX_OPSET`, through tf2onnx (the optional extra
                            `pip install keras-alexnet[onnx]`).
    keras_hub/              with --format=keras_hub, a KerasHub preset folder (`hub.presets`,
                            the optional extra `pip install keras-alexnet[hub]`): raw images
                            in, for `keras_hub.models.ImageClassifier.from_preset`.

In every LiteRT and ONNX file the paper's LRN is computed by `layers.lrn_from_ops`: a
product, a 1x1 convolution with a fixed banded kernel, a log, an exp and two products, each
with int8 kernels in TFLite, instead of TFLite's float-only LOCAL_RESPONSE_NORMALIZATION
(`layers.graph_for_conversion`); onnxruntime also runs it faster than its LRN node, and
`verify` reads it as LRN. In float32 it is the same to about 1e-7.

Every file takes what the SavedModel's `predict_pixels` and model.keras take: raw RGB
0-255 pixels [batch, 227, 227, 3], the central patch of the 256x256 image, with the
training mean image subtracted inside (`mean_image.with_mean`), under the input name
"rgb" (`runtimes.RAW_INPUT`); float32, but for the int8 file, which takes uint8 (scale 1,
zero point 0: the pixel values themselves, as a camera gives them). Each returns float32
probabilities [batch, classes]. The batch size is free. Files exported by 0.1.0 take
float32 pixels with the mean already subtracted, under the name "pixels": the runtimes
here tell them apart by that name (`takes_raw`) and still run them.

`open_runtime(path)` runs any of them (and a `.keras` file) behind one interface: `.tflite` through
the LiteRT interpreter (`ai_edge_litert`, or TensorFlow's own `tf.lite.Interpreter` where it
is not installed), `.onnx` through onnxruntime.
"""

import os
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_alexnet import errors
from keras_alexnet import hub
from keras_alexnet.data import preprocessing
from keras_alexnet.models import inspection
from keras_alexnet.models import layers
from keras_alexnet.models import loading
from keras_alexnet.models import mean_image
from keras_alexnet.runs import folder as run_dir
from keras_alexnet.serving import runtimes

EXPORT_FORMATS = ("saved_model", "litert", "onnx", "keras_hub")
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
ONNX_OPSET = 17
ONNX_FILE = "model.onnx"
INPUT_NAME = runtimes.RAW_INPUT
OUTPUT_NAME = "probabilities"
ONNX_EXTRA = runtimes.ONNX_EXTRA


def litert_file(quantize):
    """The file name of the LiteRT model of a quantization: model.tflite, model_int8.tflite..."""
    check_choices("quantize", [quantize], QUANTIZATIONS)
    return "model.tflite" if quantize == "none" else f"model_{quantize}.tflite"


def check_choices(name, values, choices):
    """The values of a list flag, checked against its choices, without repeats.

    Args:
        name: the flag's name, for the error.
        values: a comma-separated string or a list of strings.
        choices: the allowed values.

    Returns:
        A tuple of the values, in the order given.

    Raises:
        ValueError: a value that is not a choice, or no value.
    """
    if isinstance(values, str):
        values = values.split(",")
    values = tuple(dict.fromkeys(v.strip() for v in values if v.strip()))
    bad = [v for v in values if v not in choices]
    if bad or not values:
        raise ValueError(
            f"{name} must be one or more of {', '.join(choices)}, comma-separated. "
            f"Received: {name}={','.join(values)!r}"
        )
    return values


def _pixel_signature(model):
    crop = model.input_shape[1]
    return [tf.TensorSpec([None, crop, crop, 3], tf.float32, name=INPUT_NAME)]


def _probabilities(model):
    def probabilities(rgb):  # a signature's input is named after the argument too
        return {OUTPUT_NAME: tf.cast(model(rgb, training=False), tf.float32)}

    return probabilities


def litert_bytes(model, quantize="none", calibration=None):
    """Converts a model to a LiteRT flatbuffer.

    Args:
        model: the Keras model (raw RGB 0-255 pixels in, the mean image inside:
            `saved_model.raw_pixels_model`; probabilities out).
        quantize: "none", "float16", "dynamic" or "int8".
        calibration: for "int8", float32 raw RGB pixels [n, 227, 227, 3] (central
            patches, `calibration_pixels`) whose activation ranges set the int8 scales.

    Returns:
        The .tflite file's bytes.
    """
    if quantize == "int8" and (calibration is None or not len(calibration)):
        raise ValueError("int8 quantization needs calibration images. Received: none")
    with tempfile.TemporaryDirectory() as scratch:
        # Traced for converters (layers.graph_for_conversion): every convolution and its
        # weights in the main graph, where the converter folds the weights into constants
        # and quantizes them, and LRN from operations that have int8 kernels.
        with layers.graph_for_conversion(model):
            archive = keras.export.ExportArchive()
            archive.track(model)
            archive.add_endpoint("serve", _probabilities(model), _pixel_signature(model))
            archive.write_out(scratch, verbose=False)

        def converter():
            return tf.lite.TFLiteConverter.from_saved_model(scratch, signature_keys=["serve"])

        if quantize == "int8":
            return _int8_bytes(converter, calibration, scratch)
        litert = converter()
        if quantize != "none":
            litert.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            litert.target_spec.supported_types = [tf.float16]
        return litert.convert()


def _int8_bytes(converter, calibration, scratch):
    """Full-integer quantization, but for the classifier's last layer and softmax.

    Their float32 outputs decide the top class: quantized, the probabilities of the two
    first classes of an image the model hesitates on came out equal (int8 steps of 1/256),
    and the tie went to the lower class index. On the demo's 400 validation images that
    changed 4 top-1 answers, all four such ties; with the last layer (4096 x classes
    weights) and softmax in float32, none. Selective quantization is TensorFlow Lite's
    `QuantizationDebugger` (tf.lite.experimental) with those nodes denylisted; their
    name comes from the float32 file.

    The input is then made uint8 (`_uint8_input`): raw pixels as a camera gives them.

    Returns:
        The .tflite file's bytes: uint8 pixels in, float32 probabilities out.
    """
    path = os.path.join(scratch, "float32.tflite")
    with open(path, "wb") as f:
        f.write(converter().convert())
    dense = [op["name"] for op in runtimes.litert_operations(path) if op["op"] == "FULLY_CONNECTED"]
    litert = converter()
    litert.optimizations = [tf.lite.Optimize.DEFAULT]
    litert.representative_dataset = lambda: ([image[None]] for image in calibration)
    # Integer kernels wherever TFLite has them, float builtins for the denylisted nodes.
    litert.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
        tf.lite.OpsSet.TFLITE_BUILTINS,
    ]
    with warnings.catch_warnings():
        # The debugger runs TensorFlow's own tf.lite.Interpreter, which warns that it is
        # deprecated for ai_edge_litert's: not a concern of the file written here.
        warnings.filterwarnings("ignore", "(?s).*tf.lite.Interpreter is deprecated")
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=litert,
            debug_dataset=lambda: ([image[None]] for image in calibration[:1]),
            debug_options=tf.lite.experimental.QuantizationDebugOptions(
                denylisted_ops=["SOFTMAX"], denylisted_nodes=dense[-1:]
            ),
        )
        return _uint8_input(debugger.get_nondebug_quantized_model())


def _uint8_input(content):
    """A full-integer LiteRT file whose float32 input is quantized by its first operation,
    with a uint8 input instead: scale 1, zero point 0, the pixel values themselves.

    The debugger's quantizer leaves the input float32 (it has no `inference_input_type`),
    quantized by a QUANTIZE to int8 at the scale calibrated on raw 0-255 images (the
    range of their darkest and brightest pixels: about 1, a little less when no image
    holds a 0 or a 255). Here the input becomes uint8 at scale 1 and zero point 0, and
    that QUANTIZE's int8 output scale 1 and zero point -128: the whole 0-255 range, a
    step of 1, so that a camera's uint8 pixel passes exactly (shifted by 128) whatever
    images calibrated the file, and none is clipped to the calibration images' range. The
    operation after it reads the scale from that tensor.

    Raises:
        ValueError: the input is not read by one QUANTIZE operation into int8.
    """
    schema, flatbuffer_utils = runtimes.flatbuffers()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    graph = model.subgraphs[0]
    (index,) = graph.inputs
    ops = runtimes.model_operations(model)
    readers = [op for op in ops if index in op["inputs"]]
    if (
        [op["op"] for op in readers] != ["QUANTIZE"]
        or graph.tensors[index].type != schema.TensorType.FLOAT32
        or graph.tensors[readers[0]["output"]].type != schema.TensorType.INT8
    ):
        raise ValueError(
            "The int8 file's input is not quantized to int8 by one operation: it is read by "
            f"{[op['op'] for op in readers]}"
        )
    graph.tensors[index].type = schema.TensorType.UINT8
    for tensor, zero in ((index, 0), (readers[0]["output"], -128)):
        quantization = schema.QuantizationParametersT()
        quantization.scale, quantization.zeroPoint = [1.0], [zero]
        graph.tensors[tensor].quantization = quantization
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def onnx_model(model, opset=ONNX_OPSET):
    """Converts a model to ONNX through tf2onnx, checked by `onnx.checker`.

    Args:
        model: the Keras model (raw RGB 0-255 pixels in, the mean image inside).
        opset: the ONNX opset.

    Returns:
        The `onnx.ModelProto`: input "rgb", output "probabilities".

    Raises:
        ImportError: tf2onnx or onnx is not installed (the `onnx` extra).
    """
    tf2onnx, onnx = _import_onnx_converter()
    with layers.graph_for_conversion(model):
        proto, _ = tf2onnx.convert.from_function(
            tf.function(_probabilities(model)),
            input_signature=_pixel_signature(model),
            opset=opset,
        )
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _import_onnx_converter():
    try:
        import onnx
        import tf2onnx
    except ImportError as error:
        raise ImportError(
            f"--format=onnx needs tf2onnx and onnx: {ONNX_EXTRA}. ({error})"
        ) from error
    return tf2onnx, onnx


def check_formats(formats, quantize):
    """Checks the formats and quantizations before any work; returns them as tuples.

    Raises:
        ValueError: an unknown format or quantization, or quantizations without litert.
        ImportError: onnx asked for without the onnx extra.
    """
    formats = check_choices("format", formats, EXPORT_FORMATS)
    quantize = check_choices("quantize", quantize, QUANTIZATIONS)
    if quantize != ("none",) and "litert" not in formats:
        raise ValueError(
            "quantize applies to LiteRT files: add litert to --format. "
            f"Received: quantize={','.join(quantize)!r}, format={','.join(formats)!r}"
        )
    if "onnx" in formats:
        _import_onnx_converter()
    if "keras_hub" in formats:
        hub.require()
    return formats, quantize


def write(model, folder, formats, quantize=("none",), calibration=None):
    """Writes the LiteRT and ONNX files of `formats` into `folder` (the SavedModel is not
    written here). An existing file is never overwritten.

    Args:
        model: the Keras model (raw RGB 0-255 pixels in, the mean image inside:
            `saved_model.raw_pixels_model`; probabilities out).
        folder: an existing folder, e.g. an export version being written.
        formats: formats from `EXPORT_FORMATS`; "saved_model" is skipped here.
        quantize: the LiteRT quantizations to write, from `QUANTIZATIONS`.
        calibration: float32 raw pixels [n, 227, 227, 3] for "int8" (`calibration_pixels`).

    Returns:
        The names of the files written, in `folder`.
    """
    formats, quantize = check_formats(formats, quantize)
    targets = []
    if "litert" in formats:
        targets += [(litert_file(q), q) for q in quantize]
    if "onnx" in formats:
        targets.append((ONNX_FILE, None))
    for name, _ in targets:
        if tf.io.gfile.exists(os.path.join(folder, name)):
            raise ValueError(f"{os.path.join(folder, name)} exists; not overwriting it.")
    for name, q in targets:
        if name == ONNX_FILE:
            data = onnx_model(model).SerializeToString()
        else:
            data = litert_bytes(model, q, calibration)
        with tf.io.gfile.GFile(os.path.join(folder, name), "wb") as f:
            f.write(data)
    return [name for name, _ in targets]


def calibration_pixels(source, stats, count, crop=preprocessing.CROP_SIZE, seed=0, split="train"):
    """Images to calibrate int8 quantization with, as the exported files take them.

    The first `count` images of the split (the training split by default) in the shuffled
    order of (seed, epoch 0), so every class is represented, preprocessed as evaluation and
    serving preprocess them but for the mean (the central patch, raw RGB 0-255): the inputs
    the files will see, whose model subtracts the mean inside.

    Args:
        source: the images' `sources.Source`.
        stats: the training set's `stats.Stats`: the size of its mean image is the side
            the images are brought to (256).
        count: how many images.
        crop: the side of the central patch.
        seed: the shuffled order's seed.
        split: the split to take them from.

    Returns:
        float32 [n, crop, crop, 3], n = min(count, the split's images).
    """
    if count < 1:
        raise ValueError(f"calibration_images must be >= 1. Received: {count}")
    size = stats.mean_image.shape[0]
    ds = source.examples(split, order=(seed, 0)).take(count)
    ds = ds.map(
        lambda ref, label: preprocessing.central_patch(source.load(ref), size=size, crop=crop),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return np.stack(list(ds.as_numpy_iterator()))


class KerasModel:
    """A .keras file saved by this package: float32 pixels in, probabilities out.

    An exported model.keras takes raw RGB 0-255 pixels (the mean image inside,
    `mean_image`), as does a converted one (its input normalisation inside): `takes_raw`.
    A .keras file with neither, as 0.1.0 exported, takes mean-subtracted pixels.
    """

    def __init__(self, path):
        self.path = path
        self.model = loading.load_keras(path)
        self.takes_raw = mean_image.find(self.model) is not None or (
            inspection.normalizes_input(self.model)
        )
        self.input_size = int(self.model.input_shape[1])

    def __call__(self, pixels):
        outputs = self.model(np.asarray(pixels, np.float32), training=False)
        return keras.ops.convert_to_numpy(outputs).astype(np.float32)


LiteRTModel = runtimes.LiteRTModel
OnnxModel = runtimes.OnnxModel
RUNTIMES = {".tflite": LiteRTModel, ".onnx": OnnxModel, ".keras": KerasModel}


def is_model_file(path):
    """Whether `path` names a model file that `open_runtime` runs (.tflite, .onnx, .keras)."""
    return os.path.splitext(str(path))[1].lower() in RUNTIMES


def open_runtime(path):
    """Opens a .tflite, .onnx or .keras file in its runtime.

    Returns:
        A callable from float32 pixels [batch, size, size, 3] to float32 probabilities,
        with `input_size` (the side of its square input), `path` and `takes_raw` (raw RGB
        0-255 pixels in, else pixels with the training mean subtracted: 0.1.0's exports).

    Raises:
        ValueError: the file is of another kind.
        errors.InputError: the file does not exist or its runtime cannot open it.
    """
    extension = os.path.splitext(str(path))[1].lower()
    if extension not in RUNTIMES:
        raise ValueError(f"A model file must end in {', '.join(RUNTIMES)}. Received: {path}")
    if not os.path.isfile(path):
        raise errors.InputError(f"{path}: no such model file")
    try:
        return RUNTIMES[extension](path)
    except (ImportError, errors.InputError):
        raise
    except Exception as error:  # noqa: BLE001 - a file from anywhere: any fault is its own
        message = _one_line(error)
        if str(path) not in message:
            message = f"{path}: its runtime cannot open it ({type(error).__name__}: {message})"
        raise errors.InputError(message) from error


def _one_line(error, limit=300):
    """An error's message on one line of at most `limit` characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def serving_function(path, top_k=5):
    """Runs a model file of an export folder on image files, as the SavedModel's
    `serving_default` does: decoding and the evaluation preprocessing (the central patch of
    the 256x256 image, raw RGB 0-255), then the model, which subtracts the mean inside.

    The folder must hold the export's `labels.txt`; for a file that takes mean-subtracted
    pixels (exported by 0.1.0), `dataset_stats.npz` too (the mean image), which is then
    subtracted here.

    Returns:
        A function of `images` (a string tensor of encoded image files) returning a dict of
        tensors: probabilities [batch, classes], top5_indices and top5_labels [batch, k].

    Raises:
        ValueError: the file, its labels or its mean image is missing.
    """
    model = open_runtime(path)
    folder = os.path.dirname(os.path.abspath(path))
    labels_path = os.path.join(folder, run_dir.LABELS_FILE)
    if not tf.io.gfile.exists(labels_path):
        raise ValueError(f"{run_dir.LABELS_FILE} must sit beside the model file. Received: {path}")
    labels = run_dir.read_labels(folder)
    stats = run_dir.read_stats(folder)
    if stats is None and not model.takes_raw:
        raise ValueError(
            f"{run_dir.STATS_FILE} must sit beside a model file that takes mean-subtracted "
            f"pixels. Received: {path}"
        )
    size = preprocessing.IMAGE_SIZE if stats is None else stats.mean_image.shape[0]
    k = min(top_k, len(labels))

    def pixels_of(image):
        if model.takes_raw:
            return preprocessing.central_patch(image, size=size, crop=model.input_size)
        return preprocessing.preprocess_for_eval(image, stats, crop=model.input_size)

    def serve(images):
        pixels = np.stack([pixels_of(image).numpy() for image in tf.unstack(images)])
        probs = model(pixels)
        top = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
        return {
            "probabilities": tf.constant(probs),
            "top5_indices": tf.constant(top.astype(np.int32)),
            "top5_labels": tf.constant([[labels[i].encode() for i in row] for row in top]),
        }

    return serve
