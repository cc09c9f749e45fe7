"""How fast is the training input pipeline: `python -m keras_alexnet.input_benchmark`.

    python -m keras_alexnet.input_benchmark [--data_dir DIR] [--num_images N] [--batch_size 128]

prints, from one run, for the same images as files and prepared (256x256 JPEG shards), the
images/s and CPU ms per image of each stage (read, plain decode, the full training
pipeline) and the ratios the project aims at. Without --data_dir it writes --num_images
JPEGs of 500x375 into a temporary folder. Compare ratios, not absolute numbers from other
runs.

`benchmarks.input_speed` says what each stage does.
"""

import json
import os

from absl import flags

from keras_alexnet import cli
from keras_alexnet.benchmarks import input_speed
from keras_alexnet.data import shards

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags; only the entry point calls this."""
    flags.DEFINE_string(
        "data_dir", None, "Image folder (DIR/train/<class>/*.jpg); default: generated."
    )
    flags.DEFINE_integer("num_images", 500, "Images to generate when --data_dir is not given.")
    flags.DEFINE_integer("batch_size", 128, "Batch size of both pipelines.")
    flags.DEFINE_integer("epochs", 3, "Passes over the files in one timed run.")
    flags.DEFINE_integer("repeats", 3, "Timed runs of each pipeline, alternated; the best counts.")
    flags.DEFINE_enum(
        "encoding", "jpeg", list(shards.ENCODINGS), "How the shards store images (prepare's)."
    )
    flags.DEFINE_integer("quality", 90, "JPEG quality of the shards (prepare's).")
    flags.DEFINE_boolean("json", False, "Print the results as one JSON line instead of text.")


def main(argv):
    del argv
    r = input_speed.run_benchmark(
        FLAGS.data_dir,
        num_images=FLAGS.num_images,
        batch_size=FLAGS.batch_size,
        epochs=FLAGS.epochs,
        repeats=FLAGS.repeats,
        encoding=FLAGS.encoding,
        quality=FLAGS.quality,
    )
    if FLAGS.json:
        print(json.dumps(dict(r, cpus=os.cpu_count(), load_average=os.getloadavg()[0])))
        return
    where = FLAGS.data_dir or f"{r['num_files']} generated 500x375 JPEGs"
    print(
        f"files: {where}; batch {FLAGS.batch_size}; best of {FLAGS.repeats} runs each; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} after the runs"
    )
    if "prepared_full" in r:
        print(
            f"prepare (256x256, {r['prepared_encoding']}): {r['prepare_images_per_s']:.1f} "
            f"images/s, {r['prepared_bytes_per_image'] / 1024:.1f} KB per image, differs from "
            f"decoding on the fly by {r['prepared_difference']:.2f} per value on average "
            f"(worst image {r['prepared_max_difference']:.2f})"
        )
    stages = (
        ("read", "read (order, bytes; no decode)"),
        ("plain", "plain decode (decode_jpeg, batch)"),
        ("full", "full training pipeline (to the step)"),
    )
    print(f"{'stage':36s} {'files img/s':>12s} {'CPU ms':>7s} {'shards img/s':>13s} {'CPU ms':>7s}")
    for key, name in stages:
        line = f"{name:36s} {r[key]:12.1f} {r[key + '_cpu_ms']:7.2f}"
        if f"prepared_{key}" in r:
            line += f" {r['prepared_' + key]:13.1f} {r['prepared_' + key + '_cpu_ms']:7.2f}"
        print(line)
    print(
        f"the training step's float work (train_batch_finisher, batch {FLAGS.batch_size}), "
        f"where the model runs: {r['finish_cpu_ms']:.2f} CPU ms per image on this CPU"
    )
    print(
        f"files: full/plain {r['ratio']:.2f} in images/s, {r['cpu_ratio']:.2f} in CPU time per "
        f"image"
    )
    if "prepared_full" not in r:
        return
    print(
        f"shards full / files full: {r['prepared_speedup']:.2f}x in images/s, "
        f"{r['prepared_cpu_speedup']:.2f}x in CPU time (target >= 2.5)"
    )
    print(
        f"shards full / shards plain: {r['prepared_ratio']:.2f} in images/s, "
        f"{r['prepared_cpu_ratio']:.2f} in CPU time (target >= 0.90)"
    )


def run():
    cli.run(main, define_flags)


if __name__ == "__main__":
    run()
