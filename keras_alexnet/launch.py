"""Several training workers on this machine: `python -m keras_alexnet.launch`.

    python -m keras_alexnet.launch --workers=2 [--timeout=SECONDS] -- [flags of keras_alexnet.train]

Every worker runs `python -m keras_alexnet.train --strategy=multi_worker` with the flags
after `--`. Exit status: 0 when every worker exited 0; 75 when every worker stopped on a
signal after saving a checkpoint; 1 when a worker failed; 2 for bad arguments; 124 when
--timeout passed; 128 + N after signal N when a worker did not save.

The workers' TensorFlow servers listen on every interface (IPv4 and IPv6) without
authentication, as the first line printed says: keep the machine's network trusted, or run
the launcher in a network namespace of its own (docs/security.md).
"""

import sys

from absl import flags

from keras_alexnet import cli
from keras_alexnet.training import launcher

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags; only the entry point calls this."""
    flags.DEFINE_integer("workers", None, "Worker processes (worker 0 is the chief).", 1)
    flags.DEFINE_integer(
        "port_base",
        0,
        "0: ports free now, chosen here; else worker i uses port_base + i. The workers reach "
        "each other at 127.0.0.1, but each listens on its port on every interface (IPv4 and "
        "IPv6), unauthenticated: TensorFlow's server binds no single address "
        "(docs/security.md).",
    )
    flags.DEFINE_float("timeout", None, "Stop the job and fail after this many seconds.")
    flags.DEFINE_float(
        "grace_period",
        60.0,
        "Seconds between SIGTERM and SIGKILL: time for the workers to finish a step and save.",
    )
    flags.DEFINE_float(
        "progress_interval", 10.0, "Show a worker's progress bar at most once per this many s."
    )
    flags.mark_flag_as_required("workers")


def main(argv):
    train_args = argv[1:]
    try:
        status = launcher.launch(
            FLAGS.workers,
            train_args,
            port_base=FLAGS.port_base,
            timeout=FLAGS.timeout,
            grace_period=FLAGS.grace_period,
            progress_interval=FLAGS.progress_interval,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    if status != 0:
        print(f"[launch] failed with exit status {status}", file=sys.stderr, flush=True)
    return status


def run():
    cli.run(main, define_flags)


if __name__ == "__main__":
    run()
