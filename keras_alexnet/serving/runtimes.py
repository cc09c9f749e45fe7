"""The runtimes of exported LiteRT and ONNX files: pixels in, probabilities out.

A file this package exports takes raw RGB 0-255 pixels, the training mean subtracted
inside: its input is named `RAW_INPUT` ("rgb"). Files exported by 0.1.0 take pixels with
the training mean already subtracted, under the name "pixels". Each runtime says which
its file takes (`takes_raw`), read from the file's own input name, never guessed from
values.

This module imports neither TensorFlow nor the rest of the package (only NumPy and, when
a file is opened, its runtime), so that a process running one file holds one runtime
only: the formats benchmark starts a process per format that loads this file by its path
(`benchmarks/format_process.py`). `formats.open_runtime` is the package's way in.
"""

import os

import numpy as np

ONNX_EXTRA = "pip install keras-alexnet[onnx]"
# The input name of every exported file and signature that takes raw RGB 0-255 pixels
# (the mean image inside); 0.1.0's files named their mean-subtracted input "pixels".
RAW_INPUT = "rgb"


def litert_interpreter(num_threads=None, **kwargs):
    """A LiteRT interpreter: `ai_edge_litert`'s, or TensorFlow's `tf.lite.Interpreter`
    where it is not installed. Keyword arguments go to the interpreter (model_path=...)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter(num_threads=num_threads or os.cpu_count(), **kwargs)


class LiteRTModel:
    """A .tflite file in the LiteRT interpreter: pixels in, float32 probabilities out.

    The pixels may be given as float32 (or uint8): they are cast, or quantized, to the
    file's input type (float32, or uint8 for an int8 file). `takes_raw`: whether the file
    takes raw RGB 0-255 pixels (its input is named `RAW_INPUT`), else pixels with the
    training mean subtracted (an export of 0.1.0).

    Args:
        path: the .tflite file.
        num_threads: the interpreter's threads (default: every CPU).
        content: the file's bytes, if already read (a profile's cut-down copies).
        **options: more interpreter arguments (experimental_preserve_all_tensors=True).
    """

    def __init__(self, path, num_threads=None, content=None, **options):
        self.path = path
        if content is None:
            options["model_path"] = path
        else:
            options["model_content"] = content
        self.interpreter = litert_interpreter(num_threads, **options)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.input_size = int(self.input["shape"][1])
        self.input_name = litert_input_name(self.interpreter, self.input)
        self.takes_raw = self.input_name == RAW_INPUT
        self._batch = None

    def __call__(self, pixels):
        pixels = np.asarray(pixels)
        if pixels.dtype != self.input["dtype"]:
            pixels = quantize(pixels.astype(np.float32), self.input)
        if self._batch != len(pixels):
            self.interpreter.resize_tensor_input(self.input["index"], pixels.shape)
            self.interpreter.allocate_tensors()
            self._batch = len(pixels)
        self.interpreter.set_tensor(self.input["index"], pixels)
        self.interpreter.invoke()
        return dequantize(self.interpreter.get_tensor(self.output["index"]), self.output)


def litert_input_name(interpreter, details):
    """The name of a LiteRT file's input: its signature's ("rgb"), else its tensor's
    ("serve_rgb:0" -> "rgb", the converter's name for a signature's input)."""
    try:
        signatures = interpreter.get_signature_list()
    except (AttributeError, ValueError, RuntimeError):
        signatures = {}
    for signature in signatures.values():
        inputs = signature.get("inputs") or []
        if len(inputs) == 1:
            return str(inputs[0])
    name = text(details["name"]).split(":")[0]
    for key in signatures:
        name = name.removeprefix(f"{key}_")
    return name


def quantize(values, details):
    """Float values as a tensor of `details` (the interpreter's tensor details) takes them."""
    dtype = details["dtype"]
    if np.issubdtype(dtype, np.floating):
        return values.astype(dtype)
    scale, zero = details["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale + zero), info.min, info.max).astype(dtype)


def dequantize(values, details):
    """A tensor of `details` (the interpreter's tensor details) as float32 values."""
    if np.issubdtype(values.dtype, np.floating):
        return values.astype(np.float32)
    scale, zero = details["quantization"]
    return ((values.astype(np.float32) - zero) * scale).astype(np.float32)


class OnnxModel:
    """A .onnx file in onnxruntime: float32 pixels in, probabilities out.

    `takes_raw`: whether the file takes raw RGB 0-255 pixels (its input is named
    `RAW_INPUT`), else pixels with the training mean subtracted (an export of 0.1.0).

    Args:
        path: the .onnx file.
        num_threads: onnxruntime's intra-op threads (default: its own choice, every core).
    """

    def __init__(self, path, num_threads=None):
        try:
            import onnxruntime
        except ImportError as error:
            raise ImportError(f"Running .onnx files needs onnxruntime: {ONNX_EXTRA}") from error
        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        self.path = path
        try:
            self.session = onnxruntime.InferenceSession(
                path, options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # noqa: BLE001 - a file from anywhere: any fault is its own
            # "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from P failed:WHY"
            why = " ".join(str(error).split()).rsplit("failed:", 1)[-1].strip()
            raise ValueError(
                f"{path}: not an ONNX model onnxruntime can load (empty, cut short or another "
                f"kind of file: {why[:150]})"
            ) from error
        inputs = self.session.get_inputs()
        shape = inputs[0].shape if inputs else ()
        if len(shape) != 4 or not isinstance(shape[1], int) or shape[1] < 1:
            raise ValueError(
                f"{path}: its input is {shape}, not a batch of square images [batch, size, "
                "size, 3] as this package's exports take"
            )
        self.input_name = inputs[0].name
        self.takes_raw = self.input_name == RAW_INPUT
        self.input_size = int(shape[1])

    def __call__(self, pixels):
        feed = {self.input_name: np.asarray(pixels, np.float32)}
        return self.session.run(None, feed)[0].astype(np.float32)


def flatbuffers():
    """The flatbuffer schema and tools of LiteRT's wheel, or TensorFlow's copy of them:
    (schema_py_generated, flatbuffer_utils)."""
    try:
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.tools import flatbuffer_utils
    except ImportError:
        from tensorflow.lite.python import schema_py_generated as schema
        from tensorflow.lite.tools import flatbuffer_utils
    return schema, flatbuffer_utils


def litert_operations(path):
    """The operations of a LiteRT file in execution order, as dicts: "op" (CONV_2D, ...),
    "inputs" and "output" (tensor indices; -1 for an absent input), "name" (of the output
    tensor, which the converter names after the TensorFlow ops it came from)."""
    _, flatbuffer_utils = flatbuffers()
    return model_operations(flatbuffer_utils.read_model(path))


def model_operations(model):
    """`litert_operations` of a LiteRT model read as flatbuffer objects (`ModelT`)."""
    schema, _ = flatbuffers()
    graph = model.subgraphs[0]
    names = {value: key for key, value in vars(schema.BuiltinOperator).items()}
    ops = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        ops.append(
            {
                "op": names.get(builtin, str(builtin)),
                "inputs": [int(i) for i in op.inputs],
                "output": int(op.outputs[0]),
                "name": text(graph.tensors[op.outputs[0]].name),
            }
        )
    return ops


def text(name):
    """A flatbuffer string (bytes) as str."""
    return name.decode() if isinstance(name, bytes) else str(name)
