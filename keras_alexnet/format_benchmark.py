"""What each exported format costs and keeps: `python -m keras_alexnet.format_benchmark`.

    python -m keras_alexnet.format_benchmark --model_dir=runs/alexnet \\
        --version=saved_models/alexnet/1

Measures the size, speed and agreement of the SavedModel, model.keras and every LiteRT and
ONNX file of an export version on the run's validation images, each file in a process of
its own, and where the LiteRT files spend their time, layer by layer. It prints Markdown
tables and, with --output, writes the figures as JSON.

The measurements are `benchmarks.format_speed`'s.
"""

import json
import os
import sys

from absl import flags

from keras_alexnet import cli
from keras_alexnet import errors
from keras_alexnet.benchmarks import format_speed
from keras_alexnet.serving import saved_model

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags; only the entry point calls this."""
    flags.DEFINE_string("model_dir", None, "The training run (its validation images).")
    flags.DEFINE_string("version", None, "An export version folder (default: the latest).")
    flags.DEFINE_string("data_dir", None, "The run's images, if moved since.")
    flags.DEFINE_integer("batch_size", 32, "Batch of the images/s figure.")
    flags.DEFINE_integer("rounds", 20, "Timed rounds, every format in turn in each.")
    flags.DEFINE_integer("threads", None, "Every runtime's threads (default: the CPUs).")
    flags.DEFINE_integer(
        "profile_repeat",
        5,
        "Timed runs per cut of the LiteRT files' per-layer profile; 0 skips the profile.",
    )
    flags.DEFINE_string("output", None, "Also write the figures as JSON to this file.")
    flags.DEFINE_bool(
        "trust_model",
        False,
        "Run the SavedModel even if its graph uses operations this package's exports never "
        "use (file reads and writes, Python functions, ...): a SavedModel is a program.",
    )
    flags.mark_flag_as_required("model_dir")


def main(argv):
    del argv
    version = FLAGS.version
    try:
        if version and not os.path.exists(os.path.join(version, "saved_model.pb")):
            version = saved_model.latest_version(version)
        if not version:
            raise ValueError("Name an export version with --version. Received: none")
        report = format_speed.run_benchmark(
            FLAGS.model_dir,
            version,
            FLAGS.data_dir,
            FLAGS.batch_size,
            FLAGS.rounds,
            threads=FLAGS.threads,
            profile_repeat=FLAGS.profile_repeat,
            trust_model=FLAGS.trust_model,
        )
    except errors.InputError:
        raise  # a file it cannot use: one line and exit 2 (cli.run)
    except (ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    print(f"{version}\n")
    print(format_speed.format_table(report), flush=True)
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump(report, f, indent=1)
    return 0


def run():
    cli.run(main, define_flags)


if __name__ == "__main__":
    run()
