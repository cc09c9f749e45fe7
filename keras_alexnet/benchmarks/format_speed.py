"""What each exported format costs and keeps (`python -m keras_alexnet.format_benchmark`).

For the SavedModel, model.keras and every LiteRT and ONNX file of an export version (see
formats.py), on the run's validation images (central patch), in one run:

- the file size, and its share of the float32 LiteRT file's;
- batch-1 latency and images/s at --batch_size (medians). Each file runs in a process of
  its own with its runtime only (`format_process`), all with the same threads: in one
  process TensorFlow's, LiteRT's and ONNX Runtime's thread pools compete and slow each
  other down. The processes take turns, round after round, one computing at a time, so
  that a load that comes and goes on the machine falls on all of them (all batch-1 rounds
  first, then the others: a LiteRT interpreter is resized only between the two). The
  first run of each turn finds the caches full of the other processes' weights and the
  processor slowed down: it is reported apart, as the cold latency, and the figures are
  medians of the second half of each turn's runs (see `TURN_S`);
- what it takes: every file of this package's exports raw RGB 0-255 pixels (uint8 for
  the int8 LiteRT file, float32 for the others), the mean image inside; each process is
  given the central patches (float32 raw RGB) and makes them its file's input once, before
  any timing (`format_process.file_input`; less the mean for a file exported by 0.1.0);
- top-1 agreement with the float32 Keras model (model.keras), and the top-1 error;
- for each LiteRT file, the time of each operation, summed per layer, at batch 1 and at
  --batch_size (`format_process.op_times`): where the time goes.

`format_table` makes the report Markdown tables (docs/serving.md's).
Absolute times move with the machine and its load: compare the ratios of one run.
"""

import os
import re
import statistics
import tempfile
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_alexnet.benchmarks import format_process
from keras_alexnet.data import preprocessing
from keras_alexnet.models import features
from keras_alexnet.models import layers
from keras_alexnet.models import mean_image
from keras_alexnet.runs import dataset as run_dataset
from keras_alexnet.runs import folder as run_dir
from keras_alexnet.serving import formats
from keras_alexnet.serving import graph_ops
from keras_alexnet.serving import runtimes
from keras_alexnet.serving import saved_model

SAVED_MODEL = "SavedModel"
SETTLE_S = 0.05  # the pause before each timed request (see _in_turn)
# Each turn of a round runs a file at least this many times and for at least this long.
# The first run of a turn finds the caches holding the other processes' weights, its
# threads asleep and the processor slowed down: it is reported apart, as "cold". The next
# runs speed up (int8 at batch 1: 6.7, 5.8, 5.4, 5.0 ... 4.2 ms from the eighth on), so
# the figures are medians of the second half of each turn's runs.
RUNS_PER_TURN = 4
TURN_S = 0.3


def validation_pixels(model_dir, data_dir=None, crop=preprocessing.CROP_SIZE):
    """The run's validation images as the exported files take them: the central patch of
    the 256x256 image, raw RGB 0-255 (float32), as evaluation preprocesses them but for
    the mean. Returns (pixels, labels)."""
    run = run_dir.read_run(model_dir)
    source = run_dataset.run_source(run, data_dir, "The benchmark measures on")
    size = run_dir.read_stats(model_dir).mean_image.shape[0]
    ds = source.examples("validation").map(
        lambda ref, label: (
            preprocessing.central_patch(source.load(ref), size=size, crop=crop),
            label,
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    pixels, labels = zip(*ds.as_numpy_iterator())
    return np.stack(pixels), np.array(labels)


def mean_window(stats, crop):
    """The central crop x crop window of a `stats.Stats`' mean image: what a file exported
    by 0.1.0 wants subtracted from the central patch (float32 [crop, crop, 3])."""
    mean = np.asarray(stats.mean_image, np.float32)
    top = (len(mean) - crop) // 2
    return mean[top : top + crop, top : top + crop]


def _saved_model_size(version):
    total = 0
    for name in ("saved_model.pb", "fingerprint.pb", "variables", "assets"):
        path = os.path.join(version, name)
        if os.path.isdir(path):
            total += sum(
                os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files
            )
        elif os.path.exists(path):
            total += os.path.getsize(path)
    return total


def format_files(version):
    """(name, path, size in bytes) of every format in an export version folder, the
    SavedModel (the folder itself) first."""
    found = [(SAVED_MODEL, version, _saved_model_size(version))]
    names = [saved_model.KERAS_FILE]
    names += [formats.litert_file(q) for q in formats.QUANTIZATIONS]
    names += [formats.ONNX_FILE]
    for name in names:
        path = os.path.join(version, name)
        if os.path.exists(path):
            found.append((name, path, os.path.getsize(path)))
    return found


def _in_turn(processes, rounds, *time_args):
    """`rounds` rounds of `process.time(*time_args)` on each process in turn;
    {name: [the seconds of each run]}, one list per turn.

    Before each request the previous process's threads get `SETTLE_S` to go idle, so that
    no runtime's spinning threads fall on the next one's measurement."""
    results = {name: [] for name in processes}
    for _ in range(rounds):
        for name, process in processes.items():
            time.sleep(SETTLE_S)
            results[name].append(process.time(*time_args))
    return results


def _warm_and_cold(turns):
    """The median of the second half of each turn's runs, and of the first runs."""
    warm = [seconds for turn in turns for seconds in turn[len(turn) // 2 :]]
    return statistics.median(warm), statistics.median(turn[0] for turn in turns)


def run_benchmark(
    model_dir,
    version,
    data_dir=None,
    batch_size=32,
    rounds=20,
    threads=None,
    profile_repeat=5,
    turn_seconds=TURN_S,
    trust_model=False,
):
    """Measures every format of an export version on the run's validation images, each
    in a process of its own (`format_process.FormatProcess`).

    Args:
        model_dir: the training run (its validation images and labels).
        version: an export version folder holding the formats (export --format=...).
        data_dir: where the run's images are, if not where the run found them.
        batch_size: the batch of the images/s figure and of the validation passes.
        rounds: timed rounds; in each, every format runs in turn, at least
            `RUNS_PER_TURN` inferences and `turn_seconds` (all batch-1 rounds first, then
            the batch_size ones). The figures are medians of the second half of each
            turn's runs; the first runs, after the other processes ran, give the "cold"
            figures.
        threads: every runtime's threads (default: the machine's CPUs).
        profile_repeat: timed runs per cut of the LiteRT files' per-operation profile
            (`format_process.op_times`), at batch 1 and at batch_size; 0 skips it.
        turn_seconds: the least time of each turn (`TURN_S`).
        trust_model: run the SavedModel even if its graph uses operations this
            package's exports never use (`graph_ops.check`).

    Raises:
        ValueError: a bad number, or no SavedModel in `version`, before any work.
        errors.InputError: a SavedModel of foreign operations, unless trust_model.

    Returns:
        A dict: "rows" (one per format), "profiles" ({LiteRT file: {batch: ops}}),
        "int8_layer_errors" (`int8_layer_errors` on the first batch), "images", and the
        machine's facts.
    """
    for name, value, least in (
        ("batch_size", batch_size, 1),
        ("rounds", rounds, 1),
        ("threads", 1 if threads is None else threads, 1),
        ("profile_repeat", profile_repeat, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}. Received: {name}={value!r}")
    if not os.path.exists(os.path.join(version, "saved_model.pb")):
        raise ValueError(f"No SavedModel in the export version folder. Received: {version}")
    graph_ops.check(version, trust_model)
    threads = threads or os.cpu_count()
    found = format_files(version)
    stats = run_dir.read_stats(version) or run_dir.read_stats(model_dir)
    with tempfile.TemporaryDirectory() as scratch:
        pixels_file = os.path.join(scratch, "pixels.npy")
        mean_file = os.path.join(scratch, "mean.npy")
        processes = {
            name: format_process.FormatProcess(path, pixels_file, threads, mean=mean_file)
            for name, path, _ in found
        }
        try:
            infos = {name: process.ready() for name, process in processes.items()}
            crop = infos[SAVED_MODEL]["input_size"]
            pixels, labels = validation_pixels(model_dir, data_dir, crop=crop)
            np.save(mean_file, mean_window(stats, crop))
            np.save(pixels_file, pixels)
            probabilities = {
                name: process.predict(os.path.join(scratch, f"{i}.npy"), batch_size)
                for i, (name, process) in enumerate(processes.items())
            }
            batch = min(batch_size, len(pixels))
            times = {}
            for size in (1, batch):
                _in_turn(processes, 1, size, 2)  # warm-up
                turns = _in_turn(processes, rounds, size, RUNS_PER_TURN, turn_seconds)
                times[size] = {name: _warm_and_cold(t) for name, t in turns.items()}
            profiles = {}
            if profile_repeat:
                for name, process in processes.items():
                    if infos[name]["runtime"] == "LiteRT":
                        profiles[name] = {
                            size: process.profile(size, profile_repeat) for size in (1, batch)
                        }
        finally:
            for process in processes.values():
                process.close()
    errors = []
    int8_file = os.path.join(version, formats.litert_file("int8"))
    if os.path.exists(int8_file):
        keras_model = keras.models.load_model(os.path.join(version, saved_model.KERAS_FILE))
        errors = int8_layer_errors(int8_file, keras_model, pixels[:batch], mean_window(stats, crop))
    reference = probabilities[saved_model.KERAS_FILE].argmax(-1)
    float_size = {n: s for n, _, s in found}.get(formats.litert_file("none"))
    rows = []
    for name, _, size in found:
        top1 = probabilities[name].argmax(-1)
        rows.append(
            {
                "format": name,
                "runtime": infos[name]["runtime"],
                "input": _input_text(infos[name]),
                "pid": infos[name]["pid"],
                "tensorflow_loaded": infos[name]["tensorflow_loaded"],
                "bytes": size,
                "size_vs_float32": size / float_size if float_size else None,
                "latency_ms": 1000 * times[1][name][0],
                "cold_latency_ms": 1000 * times[1][name][1],
                "images_per_s": batch / times[batch][name][0],
                "cold_images_per_s": batch / times[batch][name][1],
                "agreement": float(np.mean(top1 == reference)),
                "top1_error": float(np.mean(top1 != labels)),
            }
        )
    return {
        "rows": rows,
        "profiles": profiles,
        "int8_layer_errors": errors,
        "images": len(labels),
        "batch_size": batch,
        "rounds": rounds,
        "turn_seconds": turn_seconds,
        "threads": threads,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def _input_text(info):
    """What a file takes, for the table: "uint8 RGB", "float32 RGB" (raw 0-255), or
    "float32 less mean" (0.1.0's exports)."""
    return f"{info['input_dtype']} " + ("RGB" if info["takes_raw"] else "less mean")


def layer_of(name, kind):
    """The Keras layer an operation of a LiteRT file belongs to.

    The converter names a tensor after the TensorFlow ops it came from, "model/layer/op..."
    ("alexnet_1/lrn1_1/Log", "alexnet_1/flatten_1/Reshape/shape", a "_1" added to each
    scope; several names, ";"-separated, when it fused ops): the layer is the scope after
    the model's, without the "_1". An operation whose output has no such name (the
    input's QUANTIZE, the softmax) is named by its kind.

    Args:
        name: the name of the operation's output tensor.
        kind: the operation's builtin name (QUANTIZE, ...).
    """
    parts = name.split(";")[0].split("/")
    if len(parts) < 3:
        return kind
    return re.sub(r"_\d+$", "", parts[1])


def layer_times(ops):
    """Per-operation times summed per layer: [(layer, ms, the operations' names)]."""
    layers = {}
    for op in ops:
        layer = layers.setdefault(layer_of(op["output"], op["op"]), [0.0, []])
        layer[0] += op["ms"]
        layer[1].append(op["op"])
    return [(name, ms, names) for name, (ms, names) in layers.items()]


def int8_layer_errors(path, model, pixels, mean=None):
    """How far an int8 LiteRT file is from the float32 model, layer by layer.

    The file runs with every intermediate tensor kept; the last tensor of each layer
    (`layer_of`), dequantized, is compared with the Keras layer's float32 output on the
    same images. For an LRN layer, also its own error: against the float32 LRN of the
    file's own (quantized) LRN input, which leaves out what the layers before it lost.

    Args:
        path: the int8 .tflite file.
        model: the float32 Keras model it was converted from (model.keras: with or
            without the mean image inside).
        pixels: raw RGB 0-255 central patches, float32 [n, size, size, 3].
        mean: the mean image's central window [size, size, 3], subtracted for a file or
            model that takes mean-subtracted pixels (0.1.0's exports); None if neither does.

    Returns:
        A list of dicts in the network's order: "layer", "error" (the relative RMS error
        ||int8 - float32|| / ||float32|| of the layer's output) and, for LRN layers,
        "own_error" (the same, against float32 LRN of the int8 input).
    """
    ops = runtimes.litert_operations(path)
    last = {}
    for op in ops:
        last[layer_of(op["name"], op["op"])] = op
    names = [layer.name for layer in model.layers]
    layers_here = [name for name in last if name in names]
    with warnings.catch_warnings():  # "for debugging purposes only": that is what it does here
        warnings.simplefilter("ignore", UserWarning)
        runner = runtimes.LiteRTModel(path, experimental_preserve_all_tensors=True)
    runner(format_process.file_input(runner, pixels, mean))
    interpreter = runner.interpreter
    details = {d["index"]: d for d in interpreter.get_tensor_details()}

    def tensor(index):
        return runtimes.dequantize(interpreter.get_tensor(index), details[index])

    producer = {op["output"]: op for op in ops}
    # A model.keras of this package subtracts the mean itself; 0.1.0's took it subtracted.
    inputs = pixels if mean_image.find(model) is not None or mean is None else pixels - mean
    wanted = features.feature_extractor(model, layers_here)(inputs, training=False)
    rows = []
    for name in layers_here:
        layer = model.get_layer(name)
        got = tensor(last[name]["output"])
        if getattr(getattr(layer, "activation", None), "__name__", "") == "softmax":
            got = tensor(runner.output["index"])  # the file's SOFTMAX is an op of its own
        want = keras.ops.convert_to_numpy(wanted[name])
        row = {"layer": name, "error": _relative_error(got, want)}
        if isinstance(layer, layers.LocalResponseNormalization):
            first = next(op for op in ops if layer_of(op["name"], op["op"]) == name)
            source = next(i for i in first["inputs"] if i in producer)
            reference = layer(tensor(source), training=False)
            row["own_error"] = _relative_error(got, keras.ops.convert_to_numpy(reference))
        rows.append(row)
    return rows


def _relative_error(got, want):
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


def format_table(report):
    """The report as Markdown: the formats table, then the LiteRT files' time per layer.

    Latency and images/s are also given as multiples of the SavedModel's (x1.00), the
    figures to compare.
    """
    base = next(r for r in report["rows"] if r["format"] == SAVED_MODEL)
    lines = [
        f"| file | runtime | input | size | of float32 | batch-1 latency | images/s, batch "
        f"{report['batch_size']} | batch-1 latency, cold | top-1 agreement with Keras "
        "| top-1 error |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        share = f"{row['size_vs_float32']:.1%}" if row["size_vs_float32"] else ""
        lines.append(
            f"| `{row['format']}` | {row['runtime']} | {row.get('input', '')} "
            f"| {row['bytes'] / 1e6:.1f} MB | {share} "
            f"| {row['latency_ms']:.1f} ms (x{row['latency_ms'] / base['latency_ms']:.2f}) "
            f"| {row['images_per_s']:.1f} (x{row['images_per_s'] / base['images_per_s']:.2f}) "
            f"| {row['cold_latency_ms']:.1f} ms "
            f"(x{row['cold_latency_ms'] / base['cold_latency_ms']:.2f}) "
            f"| {row['agreement']:.2%} | {row['top1_error']:.2%} |"
        )
    lines.append("")
    lines.append(
        f"{report['images']} validation images; each file in a process of its own with "
        f"{report['threads']} threads, the files in turn, {report['rounds']} rounds of at "
        f"least {RUNS_PER_TURN} runs and {report['turn_seconds']} s each; medians of the "
        f"second half of each turn's runs (cold: of its first run, after the other processes ran); "
        f"{report['cpus']} CPUs, load average {report['load_average']:.1f} at the end; "
        f"TensorFlow {report['tensorflow']}, Keras {report['keras']}."
    )
    if report["int8_layer_errors"]:
        lines.append("")
        lines.append(
            f"int8 error per layer, relative RMS against the float32 Keras model on "
            f"{report['batch_size']} images: "
            + ", ".join(
                f"{row['layer']} {row['error']:.2%}"
                + (f" (its own {row['own_error']:.2%})" if "own_error" in row else "")
                for row in report["int8_layer_errors"]
            )
            + "."
        )
    if report["profiles"]:
        lines.append("")
        lines.append(profile_table(report))
    return "\n".join(lines)


def profile_table(report):
    """The LiteRT files' time per layer (ms at batch 1 / batch N), as a Markdown table.

    Works on a report read back from its JSON too (where the batch sizes are strings).
    """
    profiles = {
        name: {int(size): layer_times(ops) for size, ops in by_size.items()}
        for name, by_size in report["profiles"].items()
    }
    sizes = sorted({size for by_size in profiles.values() for size in by_size})
    ms = {
        (name, size, layer): value
        for name, by_size in profiles.items()
        for size, rows in by_size.items()
        for layer, value, _ in rows
    }
    order = list(dict.fromkeys(layer for (_, _, layer) in ms))
    batches = " / ".join(map(str, sizes))
    lines = [
        "| layer | " + " | ".join(f"`{name}` ms, batch {batches}" for name in profiles) + " |",
        "|---" + "|---:" * len(profiles) + "|",
    ]
    for layer in order:
        cells = [
            " / ".join(
                f"{ms[(name, size, layer)]:.2f}" if (name, size, layer) in ms else "-"
                for size in sizes
            )
            for name in profiles
        ]
        lines.append(f"| {layer} | {' | '.join(cells)} |")
    totals = [
        " / ".join(
            f"**{sum(value for _, value, _ in profiles[name][size]):.2f}**" for size in sizes
        )
        for name in profiles
    ]
    lines.append(f"| all | {' | '.join(totals)} |")
    lrn_ops = {
        layer: " ".join(kinds)
        for by_size in profiles.values()
        for rows in by_size.values()
        for layer, _, kinds in rows
        if layer.startswith("lrn")
    }
    lines.append("")
    lines.append(
        "Time per layer: each operation's time, from copies of the file cut after each "
        "operation (the interpreter's invoke, median of each cut's runs, less the previous "
        "cut's), summed over the operations of the layer"
        + "".join(f"; {layer}: {kinds}" for layer, kinds in lrn_ops.items())
        + "."
    )
    return "\n".join(lines)
