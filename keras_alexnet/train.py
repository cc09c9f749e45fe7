"""Training AlexNet with the paper's recipe: `python -m keras_alexnet.train`.

    python -m keras_alexnet.train --model_dir=runs/alexnet [--dataset=...] [--strategy=...]

Trains AlexNet on the built-in image set, an image folder, prepared shards or ImageNet;
checkpoints, TensorBoard logs and the run's settings go to --model_dir, and a rerun with the
same --model_dir resumes from its latest checkpoint. Without flags: the built-in demo.
"""

import os
import sys

import tensorflow as tf
from absl import app
from absl import flags

from keras_alexnet import cli
from keras_alexnet import errors
from keras_alexnet.data import input_timeout
from keras_alexnet.runs import folder as run_folder
from keras_alexnet.runs import write_errors
from keras_alexnet.training import cluster
from keras_alexnet.training import config as config_lib
from keras_alexnet.training import distribute
from keras_alexnet.training import preemption
from keras_alexnet.training import trainer

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags; only the entry point calls this."""
    cli.define_image_flags()
    config_lib.define_flags()
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
        result = trainer.train(config_lib.from_flags(FLAGS), strategy=strategy)
    except preemption.Preempted as stopped:
        print(f"\n{stopped}", flush=True)  # on a line of its own after a progress bar
        return preemption.EXIT_PREEMPTED
    except errors.InputError:
        raise  # a file or folder it cannot use: one line and exit 2 (cli.run)
    except (
        ValueError,
        FloatingPointError,
        write_errors.WriteFailed,
        input_timeout.InputStalled,
    ) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as error:
        _lost_worker(error)
    print_result(result)
    return 0


def _lost_worker(error):
    """Leaves at once after a collective operation failed: another worker is gone.

    TensorFlow's shutdown may wait on the lost peer; rerunning the job resumes it.
    """
    latest = run_folder.latest_checkpoint(FLAGS.model_dir)
    print(
        f"error: lost contact with another worker ({type(error).__name__}: "
        f"{str(error).strip().splitlines()[0]}). Rerun the job to resume from {latest}.",
        file=sys.stderr,
        flush=True,
    )
    sys.stdout.flush()
    os._exit(1)


def print_result(result):
    """Prints the run's last step, validation errors, checkpoint and weights' digest.

    Args:
        result: what `trainer.train` returns.
    """
    val = result.get("validation")
    summary = f"Done: step {result['step']}"
    if val:
        summary += (
            f", validation top-1 error {val['top1_error']:.2%}, top-5 error {val['top5_error']:.2%}"
        )
    print(f"{summary}; checkpoint {result.get('checkpoint')}", flush=True)
    print(f"Weights sha256 {result.get('weights_sha256')}", flush=True)


def run():
    cli.run(main, define_flags, groups={"model_dir": "run"})


if __name__ == "__main__":
    run()
