"""The paper's test measure: `python -m keras_alexnet.evaluate`.

    python -m keras_alexnet.evaluate --model_dir=runs/alexnet --crops=10
    python -m keras_alexnet.evaluate --model=alexnet.keras --dataset=imagenet2012 --data_dir=TFDS

Prints the top-1 and top-5 error of a training run (--model_dir) or a model file (--model)
on a dataset's validation images, beside the paper's (section 6, table 2): on the central
patch, or averaged over the paper's ten patches with --crops=10.

The work is `training.evaluation.evaluate`.
"""

import json
import sys

import tensorflow as tf
from absl import app
from absl import flags

from keras_alexnet import cli
from keras_alexnet import errors
from keras_alexnet.data import sources
from keras_alexnet.models import alexnet as model_lib
from keras_alexnet.paper import numbers as paper
from keras_alexnet.training import cluster
from keras_alexnet.training import distribute
from keras_alexnet.training import evaluation


def format_report(report):
    """The report as a small console table, with the paper's figures for comparison.

    Args:
        report: what `evaluation.evaluate` returns.

    Returns:
        The table's lines, joined by newlines.
    """
    crops = "ten patches" if report["crops"] == "10" else "central patch"
    paper_1, paper_5 = paper.RESULTS["ILSVRC-2012 val, 1 CNN"]
    rows = [
        ("top-1 error", f"{report['top1_error']:.2%}", f"{paper_1}%"),
        ("top-5 error", f"{report['top5_error']:.2%}", f"{paper_5}%"),
        ("cross-entropy", f"{report['cross_entropy']:.4f}", ""),
        ("images evaluated", f"{report['images']:,}", "50,000"),
        ("images skipped as bad", f"{report['skipped']:,}", ""),
    ]
    replicas = f"{report['replicas']} replica" + ("s" if report["replicas"] > 1 else "")
    lines = [
        f"{report['dataset']} {report['split']}, {crops}, {report['checkpoint']}, "
        f"on {replicas} ({', '.join(report['devices'])})",
        f"{'':22}{'this model':>12}  {'paper (ILSVRC-2012 val, 1 CNN)':>32}",
    ]
    lines += [f"{name:22}{value:>12}  {ref:>32}" for name, value, ref in rows]
    return "\n".join(lines)


FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags; only the entry point calls this."""
    cli.define_image_flags()
    cli.define_model_flags("The training run's model_dir.", model_lib.PRECISIONS)
    flags.DEFINE_string(
        "dataset", None, "As for training; default: the run's dataset (needed with --model)."
    )
    flags.DEFINE_string("data_dir", None, "As for training.")
    flags.DEFINE_string("manual_dir", None, "As for training (imagenet2012).")
    flags.DEFINE_enum(
        "split", "validation", list(sources.SPLITS), "Split to evaluate (test: a folder's test/)."
    )
    flags.DEFINE_enum("crops", "center", ["center", "10"], "Central patch, or the paper's ten.")
    flags.DEFINE_integer("batch_size", 64, "Images per batch.")
    flags.DEFINE_enum("on_bad_image", "skip", list(sources.ON_BAD_IMAGE), "As for training.")
    flags.DEFINE_string("output", None, "Also write the report as JSON to this file.")
    distribute.define_flags()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        # The strategy comes first: it must exist before any other TensorFlow work.
        found = cluster.for_strategy(FLAGS.strategy, FLAGS.slurm_port_base, FLAGS.gpus_per_task)
        if found:
            print("\n".join(found.lines()), flush=True)
        strategy = distribute.make_strategy(
            FLAGS.strategy,
            FLAGS.cpu_replicas,
            FLAGS.worker_timeout,
            cluster_resolver=found and found.resolver,
        )
        report = evaluation.evaluate(
            FLAGS.model_dir,
            model=FLAGS.model,
            checkpoint=FLAGS.checkpoint,
            dataset=FLAGS.dataset,
            data_dir=FLAGS.data_dir,
            manual_dir=FLAGS.manual_dir,
            split=FLAGS.split,
            crops=FLAGS.crops,
            batch_size=FLAGS.batch_size,
            on_bad_image=FLAGS.on_bad_image,
            strategy=strategy,
            mixed_precision=FLAGS.mixed_precision,
        )
    except errors.InputError:
        raise  # a file it cannot use: one line and exit 2 (cli.run)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    print(format_report(report), flush=True)
    if FLAGS.output:
        with tf.io.gfile.GFile(FLAGS.output, "w") as f:
            json.dump(report, f, indent=1)
    return 0


def run():
    cli.run(main, define_flags)


if __name__ == "__main__":
    run()
