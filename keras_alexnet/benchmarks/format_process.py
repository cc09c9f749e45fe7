"""One exported file in a process of its own, timed on request: the formats benchmark's runner.

TensorFlow, LiteRT and ONNX Runtime each keep a pool of threads. In one process the pools
compete for the same cores, and whichever runs second is slowed by the others' spinning
threads: measured, TensorFlow's SavedModel took 34.6 ms per image beside LiteRT and ONNX
Runtime against 17.8 ms alone. `FormatProcess` starts this file as a script,

    python .../keras_alexnet/benchmarks/format_process.py --file=PATH --pixels=NPY \
        --mean=NPY --threads=N

which loads the one runtime the file needs (LiteRT for .tflite, ONNX Runtime for .onnx,
TensorFlow for a SavedModel folder, Keras and this package for .keras) and nothing else:
the LiteRT and ONNX runners come from `serving/runtimes.py`, loaded by its path, so these
processes do not import TensorFlow. The benchmark keeps one process per format alive and
asks them in turn, so that the formats alternate while only one computes at a time.

The two talk in lines of JSON. Once the file is loaded, the process prints
{"info": ...}; then, for each request line it reads, it prints one reply:

    {"time": n, "repeat": k,        {"seconds": [...]}: k runs or more on the first n
     "min_seconds": t}              images, until t seconds have passed
    {"predict": npy, "batch": b}    {"done": npy}: probabilities of every image, saved
    {"profile": n, "repeat": k}     {"ops": [...]}: per-operation time (LiteRT files)
    {"quit": true}                  the process ends (also at the end of its input)

The info holds the file's input size, and what it takes (`takes_raw`, `input_dtype`); the
pixels (float32 raw RGB 0-255, the central patches, [images, size, size, 3]) are read at
the first request from the .npy file the benchmark writes once it knows that size, and
made once what the file takes, before any run is timed: uint8 for an int8 LiteRT file,
and, for a file exported by 0.1.0 (which takes pixels with the training mean subtracted),
less the mean image's central window, from the --mean .npy file.
"""

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import sys
import time

import numpy as np

if __package__:
    from keras_alexnet.benchmarks import child_process
else:  # run as a script, which imports nothing of the package: its folder is on sys.path
    import child_process

RUNTIMES_FILE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "serving", "runtimes.py"
)


class FormatProcess(child_process.ChildProcess):
    """An exported file in a child process, run on request (see the module docstring).

    The process starts at construction and loads the file meanwhile; `ready` waits for it.

    Args:
        path: a .tflite, .onnx or .keras file, or a SavedModel folder (its
            `predict_pixels` signature).
        pixels: a .npy file of float32 raw RGB 0-255 images (central patches).
        threads: the runtime's threads.
        mean: a .npy file of the mean image's central window, for files that take
            mean-subtracted pixels (exported by 0.1.0).
    """

    def __init__(self, path, pixels, threads, mean=None):
        super().__init__(
            os.path.abspath(__file__),
            [f"--file={path}", f"--pixels={pixels}", f"--threads={threads}"]
            + ([f"--mean={mean}"] if mean else []),
            f"The benchmark's process for {path}",
        )
        self.path = path

    def time(self, images, repeat=1, min_seconds=0.0):
        """Runs the first `images` images `repeat` times, and more until `min_seconds`
        have passed; returns the seconds of each run, measured in the child process."""
        request = {"time": images, "repeat": repeat, "min_seconds": min_seconds}
        return self._ask(request)["seconds"]

    def predict(self, output, batch_size):
        """Saves the probabilities of every image to the .npy file `output`; returns them."""
        self._ask({"predict": output, "batch": batch_size})
        return np.load(output)

    def profile(self, images, repeat):
        """Per-operation times of a LiteRT file on `images` images (see `op_times`)."""
        return self._ask({"profile": images, "repeat": repeat})["ops"]

    def close(self):
        super().close(json.dumps({"quit": True}))

    def _ask(self, message):
        reply = self.request(json.dumps(message))
        if "error" in reply:
            raise RuntimeError(f"{self.path}: {reply['error']}")
        return reply


def _load_runtimes():
    spec = importlib.util.spec_from_file_location("keras_alexnet_runtimes", RUNTIMES_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _SavedModelRunner:
    """A SavedModel's predict_pixels signature in TensorFlow: raw RGB pixels in (its input
    named "rgb"), or mean-subtracted ones (0.1.0's, "pixels")."""

    def __init__(self, path, threads):
        import tensorflow as tf

        _tensorflow_threads(threads)
        self._tf = tf
        self.function = tf.saved_model.load(path).signatures["predict_pixels"]
        ((self.input_name, spec),) = self.function.structured_input_signature[1].items()
        self.input_size = int(spec.shape[1])
        self.takes_raw = self.input_name == _load_runtimes().RAW_INPUT

    def __call__(self, pixels):
        outputs = self.function(**{self.input_name: self._tf.constant(pixels)})
        return outputs["probabilities"].numpy()


def file_input(runner, pixels, mean=None):
    """Raw float32 pixels as the runner's file takes them: less the mean window for a file
    that takes mean-subtracted pixels (0.1.0's), and in the file's input type (uint8 for
    an int8 LiteRT file), so that no conversion is timed."""
    pixels = np.asarray(pixels, np.float32)
    if not runner.takes_raw:
        if mean is None:
            raise ValueError("The file takes mean-subtracted pixels: the mean image is needed")
        pixels = pixels - np.asarray(mean, np.float32)
    details = getattr(runner, "input", None)
    if details is not None and details["dtype"] != np.float32:
        pixels = _load_runtimes().quantize(pixels, details)
    return np.ascontiguousarray(pixels)


def input_dtype(runner):
    """The dtype name of the runner's file's input: float32, or uint8 for an int8 file."""
    details = getattr(runner, "input", None)
    return np.dtype(details["dtype"]).name if details is not None else "float32"


def _tensorflow_threads(threads):
    """TensorFlow's thread pools, set before it runs anything (None: left as they are, for a
    process where TensorFlow already ran)."""
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def open_file(path, threads):
    """The runner of an exported file: a callable from float32 pixels to probabilities,
    with `takes_raw` (raw RGB 0-255 in, else mean-subtracted pixels: 0.1.0's exports).

    Returns:
        (runner, runtime name).
    """
    extension = os.path.splitext(path)[1].lower()
    if os.path.isdir(path):
        return _SavedModelRunner(path, threads), "TensorFlow"
    if extension == ".tflite":
        return _load_runtimes().LiteRTModel(path, threads), "LiteRT"
    if extension == ".onnx":
        return _load_runtimes().OnnxModel(path, threads), "onnxruntime"
    if extension == ".keras":
        _tensorflow_threads(threads)
        from keras_alexnet.serving import formats

        return formats.KerasModel(path), "Keras (TensorFlow)"
    raise ValueError(f"Not an exported model file or SavedModel folder. Received: {path}")


def _timed(function, *args):
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def op_times(path, pixels, threads, repeat):
    """The time of each operation of a LiteRT file, from copies cut after each operation.

    The interpreter of the `ai_edge_litert` wheel has no profiler that Python can read.
    So the file is cut after its first operation, its second, ..., (the operations after
    the cut left out, the cut's tensor made the output, the weights of the left-out
    operations dropped) and the interpreter's `invoke` of each cut is timed, `repeat`
    runs, median, with the same threads and input (reading the output is not timed: a
    cut's output can be large); an operation's time is its cut's median less the
    previous cut's.
    Operations XNNPACK fuses or runs together are timed as they run in the whole file, up
    to the noise of two medians (an operation can come out slightly negative).

    Args:
        path: the .tflite file.
        pixels: the input, as the file takes it (`file_input`), [batch, size, size, 3].
        threads: the interpreter's threads.
        repeat: timed runs per cut.

    Returns:
        A list, in execution order, of dicts: "index", "op" (the builtin's name, e.g.
        CONV_2D; "+"-joined with the operations of constants only before it, which are
        not cut after, such as a float16 file's weight DEQUANTIZE), "output" (the name of
        its output tensor, which names the Keras layer), "dtype" (of that tensor) and "ms".
    """
    runtimes = _load_runtimes()
    schema, flatbuffer_utils = runtimes.flatbuffers()
    model = flatbuffer_utils.read_model(path)
    graph = model.subgraphs[0]
    operators = list(graph.operators)
    buffers = [buffer.data for buffer in model.buffers]
    described = runtimes.model_operations(model)  # kinds and output names, before the cuts
    types = {value: key for key, value in vars(schema.TensorType).items()}

    def constant(tensor):
        return buffers[graph.tensors[tensor].buffer] is not None

    ops = []
    previous = 0.0
    pending = []  # operations of constants only (a float16 file's weight DEQUANTIZE): no cut
    for count, (op, about) in enumerate(zip(operators, described), start=1):
        pending.append(about["op"])
        if all(constant(i) for i in op.inputs if i >= 0) and count < len(operators):
            continue
        kept = operators[:count]
        graph.operators = kept
        graph.outputs = [op.outputs[0]]
        used = {graph.tensors[i].buffer for o in kept for i in o.inputs if i >= 0}
        for index, buffer in enumerate(model.buffers):
            buffer.data = buffers[index] if index in used else None
        content = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
        with _quiet_stderr():  # the runtime's "Created ... delegate" line, once per cut
            runner = runtimes.LiteRTModel(path, threads, content=content)
        runner(pixels)  # allocates and sets the input; then the interpreter's runs alone
        invoke = runner.interpreter.invoke
        seconds = statistics.median(_timed(invoke) for _ in range(repeat))
        output = graph.tensors[op.outputs[0]]
        ops.append(
            {
                "index": count - 1,
                "op": "+".join(pending),
                "output": about["name"],
                "dtype": types.get(output.type, str(output.type)).lower(),
                "ms": 1000 * (seconds - previous),
            }
        )
        previous = seconds
        pending = []
    return ops


def _runs(runner, batch, request):
    seconds, start = [], time.perf_counter()
    while len(seconds) < request["repeat"] or (
        time.perf_counter() - start < request.get("min_seconds", 0.0)
    ):
        seconds.append(_timed(runner, batch))
    return seconds


@contextlib.contextmanager
def _quiet_stderr():
    """Silences what native code writes to stderr (file descriptor 2) in the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _serve(runner, pixels_file, mean_file, path, threads):
    pixels = None
    for line in sys.stdin:
        request = json.loads(line)
        if "quit" in request:
            return
        try:
            if pixels is None:  # written by the benchmark once the processes are up
                mean = np.load(mean_file) if mean_file else None
                pixels = file_input(runner, np.load(pixels_file, mmap_mode="r"), mean)
            if "time" in request:
                batch = np.ascontiguousarray(pixels[: request["time"]])
                reply = {"seconds": _runs(runner, batch, request)}
            elif "predict" in request:
                size = request["batch"]
                probabilities = np.concatenate(
                    [
                        runner(np.ascontiguousarray(pixels[i : i + size]))
                        for i in range(0, len(pixels), size)
                    ]
                )
                np.save(request["predict"], probabilities)
                reply = {"done": request["predict"]}
            elif "profile" in request:
                batch = np.ascontiguousarray(pixels[: request["profile"]])
                reply = {"ops": op_times(path, batch, threads, request["repeat"])}
            else:
                reply = {"error": f"Unknown request. Received: {line.strip()}"}
        except Exception as error:  # the parent shows it and stops
            reply = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(reply), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", required=True)
    parser.add_argument("--pixels", required=True)
    parser.add_argument("--mean", default=None)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args(argv)
    # The runtime's own output (XNNPACK's "Created delegate" line, ...) goes to stderr,
    # so that stdout carries the JSON replies only.
    stdout = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(stdout, "w")
    runner, runtime = open_file(args.file, args.threads)
    info = {"runtime": runtime, "pid": os.getpid(), "threads": args.threads}
    info.update(input_size=runner.input_size, tensorflow_loaded="tensorflow" in sys.modules)
    info.update(takes_raw=bool(runner.takes_raw), input_dtype=input_dtype(runner))
    print(json.dumps({"info": info}), flush=True)
    _serve(runner, args.pixels, args.mean, args.file, args.threads)


if __name__ == "__main__":
    main()
