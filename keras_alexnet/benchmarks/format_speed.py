"""What each exported format costs and keeps (`python -m keras_alexnet.format_benchmark`).

For the SavedModel, model.keras and every LiteRT and ONNX file of an export version (see
formats.py), on the run's validation images (central patch), in one run:

- the file size, and its share of the float32 LiteRT file's;
- batch-1 latency (median) and images/s at --batch_size (median), the formats taking
  turns round after round, so that a load that comes and goes on the machine falls on all
  of them (all batch-1 rounds first, then the others: a LiteRT interpreter is resized
  only between the two);
- top-1 agreement with the float32 Keras model (model.keras), and the top-1 error;
- for the int8 file, what its float LRNs (DEQUANTIZE, float LRN, QUANTIZE) cost: the same
  network without its LRNs, quantized the same way, timed in the same rounds.

`format_table` makes the report a Markdown table (README.md's).
Absolute times move with the machine and its load: compare the ratios of one run.
"""

import os
import statistics
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from keras_alexnet.data import preprocessing
from keras_alexnet.models import layers
from keras_alexnet.models import mean_image
from keras_alexnet.serving import formats
from keras_alexnet.serving import saved_model
from keras_alexnet.training.run import folder as run_dir

SAVED_MODEL = "SavedModel"
NO_LRN = "int8 without LRN"


def validation_pixels(model_dir, data_dir=None, crop=preprocessing.CROP_SIZE):
    """The run's validation images, preprocessed as evaluation does: (pixels, labels)."""
    run = run_dir.read_run(model_dir)
    source = saved_model.run_source(run, model_dir, data_dir, "The benchmark measures on")
    stats = run_dir.read_stats(model_dir)
    ds = source.examples("validation").map(
        lambda ref, label: (
            preprocessing.preprocess_for_eval(source.load(ref), stats, crop=crop),
            label,
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    pixels, labels = zip(*ds.as_numpy_iterator())
    return np.stack(pixels), np.array(labels)


class _SavedModelRunner:
    """The SavedModel's predict_pixels signature, called as `formats.open_runtime`'s runners."""

    def __init__(self, version):
        self.path = version
        self.function = tf.saved_model.load(version).signatures["predict_pixels"]

    def __call__(self, pixels):
        return self.function(pixels=tf.constant(pixels))["probabilities"].numpy()


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


def runners(version):
    """(name, file size in bytes, runner) of every format in an export version folder."""
    found = [(SAVED_MODEL, _saved_model_size(version), _SavedModelRunner(version))]
    names = [saved_model.KERAS_FILE]
    names += [formats.litert_file(q) for q in formats.QUANTIZATIONS]
    names += [formats.ONNX_FILE]
    for name in names:
        path = os.path.join(version, name)
        if os.path.exists(path):
            found.append((name, os.path.getsize(path), formats.open_runtime(path)))
    return found


def _predict_all(runner, pixels, batch_size):
    return np.concatenate(
        [runner(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)]
    )


def _timed(runner, batch):
    start = time.perf_counter()
    runner(batch)
    return time.perf_counter() - start


def int8_without_lrn(model, calibration, path):
    """Writes the int8 LiteRT file of `model` with its LRNs left out, and loads it.

    Only to time what the int8 file's float LRNs cost: the same network, quantized the
    same way, without the DEQUANTIZE, float LRN, QUANTIZE of each LRN. Its outputs are not
    AlexNet's.

    Args:
        model: the Keras model.
        calibration: preprocessed pixels to calibrate the int8 scales on.
        path: where to write the .tflite file.

    Returns:
        The file's runner (`formats.open_runtime`).
    """

    def clone(layer):
        if isinstance(layer, layers.LocalResponseNormalization):
            return keras.layers.Identity(name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    stripped = keras.models.clone_model(model, clone_function=clone)
    stripped.set_weights(model.get_weights())  # LRN has no weights: the same list
    with open(path, "wb") as f:
        f.write(formats.litert_bytes(stripped, "int8", calibration))
    return formats.open_runtime(path)


def run_benchmark(model_dir, version, data_dir=None, batch_size=32, rounds=20):
    """Measures every format of an export version on the run's validation images.

    Args:
        model_dir: the training run (its validation images and labels).
        version: an export version folder holding the formats (export --format=...).
        data_dir: where the run's images are, if not where the run found them.
        batch_size: the batch of the images/s figure and of the validation passes.
        rounds: timed rounds; in each, every format runs one batch-1 and one batch_size
            inference in turn.

    Returns:
        A dict: "rows" (one per format), "images", "int8_without_lrn" (the int8 file's
        times without its LRNs), and the machine's facts.
    """
    found = runners(version)
    pixels, labels = validation_pixels(model_dir, data_dir, crop=found[1][2].input_size)
    probabilities = {name: _predict_all(r, pixels, batch_size) for name, _, r in found}
    reference = probabilities[saved_model.KERAS_FILE].argmax(-1)
    batch = pixels[:batch_size]
    with tempfile.TemporaryDirectory() as scratch:
        if os.path.exists(os.path.join(version, formats.litert_file("int8"))):
            keras_model, _ = mean_image.split(
                keras.models.load_model(os.path.join(version, saved_model.KERAS_FILE))
            )
            runner = int8_without_lrn(
                keras_model, pixels[:64], os.path.join(scratch, "no_lrn.tflite")
            )
            found.append((NO_LRN, None, runner))
        timed = [pixels[:1], batch]
        times = [{name: [] for name, _, _ in found} for _ in timed]
        for x, group_times in zip(timed, times):
            for _, _, runner in found:  # warm-up at this batch size
                runner(x)
            for _ in range(rounds):
                for name, _, runner in found:
                    group_times[name].append(_timed(runner, x))
    latency, throughput = times
    without = {}
    if found[-1][0] == NO_LRN:
        found.pop()
        without = {
            "latency_ms": 1000 * statistics.median(latency[NO_LRN]),
            "images_per_s": len(batch) / statistics.median(throughput[NO_LRN]),
        }
    float_size = dict((n, s) for n, s, _ in found).get(formats.litert_file("none"))
    rows = []
    for name, size, _ in found:
        top1 = probabilities[name].argmax(-1)
        rows.append(
            {
                "format": name,
                "bytes": size,
                "size_vs_float32": size / float_size if float_size else None,
                "latency_ms": 1000 * statistics.median(latency[name]),
                "images_per_s": len(batch) / statistics.median(throughput[name]),
                "agreement": float(np.mean(top1 == reference)),
                "top1_error": float(np.mean(top1 != labels)),
            }
        )
    return {
        "rows": rows,
        "images": len(labels),
        "batch_size": len(batch),
        "rounds": rounds,
        "int8_without_lrn": without,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


RUNTIME = {
    SAVED_MODEL: "TensorFlow",
    saved_model.KERAS_FILE: "Keras (TensorFlow)",
    formats.ONNX_FILE: "onnxruntime",
}


def format_table(report):
    """The report as README.md's Markdown table, and a line on the int8 file's LRNs.

    Latency and images/s are also given as multiples of the SavedModel's (x1.00), the
    figures to compare.
    """
    base = next(r for r in report["rows"] if r["format"] == SAVED_MODEL)
    lines = [
        f"| file | runtime | size | of float32 | batch-1 latency | images/s, batch "
        f"{report['batch_size']} | top-1 agreement with Keras | top-1 error |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        share = f"{row['size_vs_float32']:.1%}" if row["size_vs_float32"] else ""
        lines.append(
            f"| `{row['format']}` | {RUNTIME.get(row['format'], 'LiteRT')} "
            f"| {row['bytes'] / 1e6:.1f} MB | {share} "
            f"| {row['latency_ms']:.1f} ms (x{row['latency_ms'] / base['latency_ms']:.2f}) "
            f"| {row['images_per_s']:.1f} (x{row['images_per_s'] / base['images_per_s']:.2f}) "
            f"| {row['agreement']:.2%} | {row['top1_error']:.2%} |"
        )
    if report["int8_without_lrn"]:
        int8 = next(r for r in report["rows"] if r["format"] == formats.litert_file("int8"))
        without = report["int8_without_lrn"]
        cost = int8["latency_ms"] - without["latency_ms"]
        lines.append("")
        lines.append(
            f"The int8 file's two LRNs run in float32 (DEQUANTIZE, LRN, QUANTIZE): the same "
            f"int8 file without them takes {without['latency_ms']:.1f} ms at batch 1 and "
            f"{without['images_per_s']:.1f} images/s, so they cost {cost:.1f} ms "
            f"({cost / int8['latency_ms']:.0%} of its {int8['latency_ms']:.1f} ms) and "
            f"{1 - int8['images_per_s'] / without['images_per_s']:.0%} of its images/s."
        )
    lines.append("")
    lines.append(
        f"{report['images']} validation images; medians of {report['rounds']} rounds, the "
        f"formats in turn; {report['cpus']} CPUs, load average {report['load_average']:.1f} "
        f"at the end; TensorFlow {report['tensorflow']}, Keras {report['keras']}."
    )
    return "\n".join(lines)
