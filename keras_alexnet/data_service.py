"""Input on other machines: a tf.data service dispatcher or worker, serving until killed.

    python -m keras_alexnet.data_service --dispatcher --port=5050 [--work_dir=DIR]
    python -m keras_alexnet.data_service --worker --dispatcher_address=HOST:5050 \\
        [--port=5051] [--host=THIS_HOST]
    python -m keras_alexnet.train --data_service=grpc://HOST:5050 ...

A dispatcher hands out the training input's work; each worker, on another machine, reads
the same image or record files at the same paths, decodes and augments the batches and
sends them to the training job (train --data_service). Both serve until killed.

Both listen on every interface (IPv4 and IPv6) without authentication, whatever --host
says, and a worker runs whatever dataset graph a client registers with the dispatcher:
whoever reaches their ports runs code as this user. Keep them on a trusted network
(docs/security.md); the first line each prints says so.

How the work is shared, and what holds and does not with the service: `data.service`.
"""

import socket
import sys
import time

import tensorflow as tf
from absl import flags

from keras_alexnet import cli
from keras_alexnet.data import service

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    """Defines the command-line flags; for the entry point (and tests, on their own
    `flag_values`)."""
    flags.DEFINE_boolean(
        "dispatcher", False, "Run the dispatcher (one per cluster).", flag_values=flag_values
    )
    flags.DEFINE_boolean(
        "worker", False, "Run a worker (as many as the input needs).", flag_values=flag_values
    )
    flags.DEFINE_integer(
        "port",
        None,
        f"The port to listen on. Default: {service.DISPATCHER_PORT} for the dispatcher, any "
        "free port for a worker.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "work_dir",
        None,
        "Dispatcher: journal its state in this folder, so that a dispatcher restarted on "
        "it (same port) takes its jobs up again (TensorFlow's fault-tolerant mode).",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "dispatcher_address",
        None,
        "Worker: the dispatcher's HOST:PORT.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "host",
        socket.gethostname(),
        "Worker: the name or address the dispatcher gives the trainers to reach this worker "
        "at. It does not choose where the worker listens: TensorFlow's worker listens on every "
        "interface (IPv4 and IPv6) whatever --host is (docs/security.md).",
        flag_values=flag_values,
    )


def check_flags(flag_values):
    """Raises a ValueError unless the flags name one role and only that role's flags."""
    if flag_values.dispatcher == flag_values.worker:
        raise ValueError(
            "Give exactly one of --dispatcher and --worker. Received: "
            f"dispatcher={flag_values.dispatcher}, worker={flag_values.worker}"
        )
    role, others = ("dispatcher", ("dispatcher_address", "host"))
    if flag_values.worker:
        role, others = ("worker", ("work_dir",))
        if not flag_values.dispatcher_address:
            raise ValueError("--worker needs --dispatcher_address=HOST:PORT. Received: none")
        service.parse_address(flag_values.dispatcher_address, "dispatcher_address")
    for name in others:
        if flag_values[name].present:
            raise ValueError(
                f"--{name} is not a flag of the {role}. "
                f"Received: --{name}={flag_values[name].value}"
            )


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments: {argv[1:]}", file=sys.stderr, flush=True)
        return 2
    try:
        check_flags(FLAGS)
        if FLAGS.dispatcher:
            server = service.start_dispatcher(
                service.DISPATCHER_PORT if FLAGS.port is None else FLAGS.port,
                FLAGS.work_dir,
            )
            _, _, port = service.parse_address(server.target, "target")
            host = socket.gethostname()
            print(
                f"tf.data service dispatcher listening on port {port} {service.LISTENS_ON}"
                + (f", its journal in {FLAGS.work_dir}" if FLAGS.work_dir else "")
                + f": workers --dispatcher_address={host}:{port}, training "
                f"--data_service=grpc://{host}:{port}",
                flush=True,
            )
        else:
            address = FLAGS.dispatcher_address
            try:
                service.check_reachable(address, seconds=2)
            except ValueError:
                print(f"Waiting for the dispatcher at {address} to answer", flush=True)
            server, port = service.start_worker(address, FLAGS.port or 0, FLAGS.host)
            print(
                f"tf.data service worker listening on port {port} {service.LISTENS_ON}, "
                f"announced as {FLAGS.host}:{port}, for the dispatcher at {address}",
                flush=True,
            )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    except tf.errors.OpError as error:  # e.g. the port is taken
        print(f"error: {error.message}", file=sys.stderr, flush=True)
        return 1
    _serve_until_killed(server)
    return 0


def _serve_until_killed(server):
    # Waiting in Python, not in the server's join(), lets Ctrl-C through.
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


def run():
    cli.run(main, define_flags)


if __name__ == "__main__":
    run()
