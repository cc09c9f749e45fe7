"""Several training workers on this machine, the work of `python -m keras_alexnet.launch`.

`launch` starts `python -m keras_alexnet.train --strategy=multi_worker FLAGS` once per
worker, each with its own TF_CONFIG naming a cluster at 127.0.0.1 on ports free now, so that
MultiWorkerMirroredStrategy runs (and is tested) on one machine without GPUs.

127.0.0.1 is only where the workers reach each other: TensorFlow's server in each worker
listens on its port on every interface, IPv4 and IPv6 (it binds "0.0.0.0:PORT", which gRPC
takes for both wildcards, whatever TF_CONFIG's host), without authentication, and runs what
it is sent with the worker's rights. The installed wheel offers no way to bind loopback
only (no bind address in TF_CONFIG or the ServerDef, no protocol but plain "grpc"), so the
launcher says so in its first line; docs/security.md shows how to keep the ports private
(a network namespace of their own, a firewall).

Every line a worker prints is forwarded with its name ("[worker 1] ..."). The job is as
strong as its weakest worker: when one exits with an error or is killed, the launcher says
which and how, stops the others (SIGTERM, then SIGKILL after --grace_period) instead of
leaving them waiting in a collective operation for --worker_timeout, and fails. Rerunning
the same command resumes from the chief's last checkpoint.

The workers stay in the launcher's process group, so killing that group ends the whole
job even if the launcher itself is killed first. SIGTERM or SIGINT to the launcher is
forwarded to every worker as SIGTERM: the workers agree on a step, all save a checkpoint
there and exit with `preemption.EXIT_PREEMPTED` (see `training.preemption`); one
still running --grace_period seconds later is killed. A worker that stops on its own
signal (a machine preempted) takes the others along the same way; the launcher waits for
them.

Exit status: 0 when every worker exited 0; 75 (`EXIT_PREEMPTED`) when every worker
stopped on a signal after saving a checkpoint; 1 when a worker failed; 124 when
--timeout passed; 128 + N when the launcher received signal N and a worker did not save
(130 for Ctrl-C).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from keras_alexnet.training import worker_output

LOCALHOST = "127.0.0.1"
TRAIN_MODULE = "keras_alexnet.train"
# The launcher chooses these; a worker given its own would not be part of the cluster.
RESERVED_TRAIN_FLAGS = ("strategy", "cpu_replicas")
EXIT_WORKER_FAILED = 1
EXIT_TIMEOUT = 124
# A worker's status when it stopped on a signal after saving a checkpoint: the value of
# `training.preemption.EXIT_PREEMPTED`, not imported (it would load TensorFlow).
EXIT_PREEMPTED = 75
# Where each worker's TensorFlow server listens (see the module docstring).
LISTENS_ON = (
    "of every interface (IPv4 and IPv6), not only 127.0.0.1, unauthenticated "
    "(whoever reaches them runs code as this user: docs/security.md)"
)


def free_ports(count, host=LOCALHOST):
    """Ports on `host` that are free now, found by binding to port 0.

    All sockets stay open until every port is chosen, so the ports are distinct. Another
    program may still take one before a worker binds it; the worker then fails to start
    and the launcher reports it.

    Args:
        count: how many ports, >= 1.
        host: the address to bind ("" for every IPv4 interface).

    Returns:
        A list of `count` distinct port numbers.
    """
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be an integer >= 1. Received: count={count!r}")
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def cluster_configs(num_workers, ports, host=LOCALHOST):
    """The TF_CONFIG of each worker of a cluster of `num_workers` on one host.

    There is no "chief" task: worker 0 is the chief (it writes model_dir).

    Args:
        num_workers: how many workers, >= 1.
        ports: one port per worker.
        host: the workers' address.

    Returns:
        A list of `num_workers` dicts, to pass as json.dumps(config) in TF_CONFIG:
        {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}.
    """
    _check_num_workers(num_workers)
    ports = list(ports)
    if len(ports) != num_workers:
        raise ValueError(f"ports must hold one port per worker ({num_workers}). Received: {ports}")
    if len(set(ports)) != len(ports) or not all(
        isinstance(p, int) and 0 < p < 65536 for p in ports
    ):
        raise ValueError(f"ports must be distinct integers in [1, 65535]. Received: {ports}")
    workers = [f"{host}:{port}" for port in ports]
    return [
        {"cluster": {"worker": list(workers)}, "task": {"type": "worker", "index": i}}
        for i in range(num_workers)
    ]


def _check_num_workers(num_workers):
    if not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers < 1:
        raise ValueError(
            f"num_workers must be an integer >= 1. Received: num_workers={num_workers!r}"
        )


def train_command(train_args, python=sys.executable):
    """The command line of one training worker.

    Args:
        train_args: flags of `keras_alexnet.train`, without --strategy.
        python: the Python interpreter.

    Returns:
        A list of strings: python -m keras_alexnet.train --strategy=multi_worker ARGS.

    Raises:
        ValueError: train_args sets a flag the launcher chooses (--strategy, --cpu_replicas).
    """
    for arg in train_args:
        name = arg.lstrip("-").split("=", 1)[0]
        if arg.startswith("-") and name in RESERVED_TRAIN_FLAGS:
            raise ValueError(
                f"train_args must not set --{name}: the launcher runs every worker with "
                f"--strategy=multi_worker and one CPU device per worker. Received: {arg}"
            )
    return [python, "-m", TRAIN_MODULE, "--strategy=multi_worker", *train_args]


def describe_exit(returncode):
    """How a process ended, in words: "exited with status 1", "was killed by SIGKILL"."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with status {returncode}"


class _Worker:
    def __init__(self, index, process, threads):
        self.index = index
        self.process = process
        self.threads = threads

    @property
    def name(self):
        return f"worker {self.index} (pid {self.process.pid})"


class _Interrupt:
    """Turns SIGINT/SIGTERM into a request that the monitoring loop sees."""

    def __init__(self):
        self.event = threading.Event()
        self.signum = None
        self._previous = {}

    def install(self):
        if threading.current_thread() is not threading.main_thread():
            return  # Only the main thread may set handlers; the caller then stops us.
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum, frame):
        del frame
        if self.signum is None:
            self.signum = signum
        self.event.set()


def _wait(workers, seconds):
    """Waits up to `seconds` for every worker to exit by itself."""
    deadline = time.monotonic() + seconds
    for worker in workers:
        try:
            worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return


def _all_saved(workers):
    return bool(workers) and all(w.process.returncode == EXIT_PREEMPTED for w in workers)


def _stop(workers, grace_period, console):
    """SIGTERM to every running worker, SIGKILL to those still running after the grace."""
    running = [w for w in workers if w.process.poll() is None]
    for worker in running:
        console.say(f"stopping {worker.name} with SIGTERM")
        worker.process.terminate()
    deadline = time.monotonic() + grace_period
    for worker in running:
        try:
            worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            console.say(f"{worker.name} still runs {grace_period:g} s after SIGTERM: SIGKILL")
            worker.process.kill()
    for worker in running:
        try:
            worker.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            console.say(f"{worker.name} did not end 30 s after SIGKILL")


def launch(
    num_workers,
    train_args,
    *,
    port_base=0,
    timeout=None,
    grace_period=60.0,
    command=None,
    env=None,
    output=None,
    errors=None,
    progress_interval=10.0,
    poll_interval=0.2,
):
    """Runs a cluster of `num_workers` training workers on this machine until they finish.

    Says first on which ports the workers will listen, and that they listen on every
    interface (see the module docstring).

    Installs SIGINT/SIGTERM handlers while it runs (when called from the main thread):
    either signal stops the workers and makes it return 128 + the signal number.

    Args:
        num_workers: how many worker processes, >= 1. Worker 0 is the chief.
        train_args: flags of `keras_alexnet.train` (not --strategy), the same for all.
        port_base: 0 to choose free ports, else worker i listens on port_base + i (on
            every interface).
        timeout: seconds after which the workers are stopped and the job fails; None for
            no limit.
        grace_period: seconds between SIGTERM and SIGKILL when stopping workers: time
            for a training step and a checkpoint.
        command: each worker's command line; default `train_command(train_args)`.
        env: the workers' environment (default: this process's) without TF_CONFIG, which
            is set per worker.
        output: where workers' stdout lines go (default sys.stdout).
        errors: where workers' stderr lines and the launcher's messages go (default
            sys.stderr).
        progress_interval: at most one progress-bar update per worker and this many
            seconds is shown.
        poll_interval: seconds between checks of the workers.

    Returns:
        The exit status: 0 when every worker exited 0, `EXIT_PREEMPTED` when every worker
        stopped on a signal after saving a checkpoint, `EXIT_WORKER_FAILED` when one
        failed, `EXIT_TIMEOUT` after `timeout`, 128 + N after signal N (when a worker did
        not save).
    """
    _check_launch_arguments(num_workers, port_base, timeout, grace_period)
    command = list(command) if command is not None else train_command(train_args)
    environments = _worker_environments(num_workers, port_base, env)
    console = worker_output.Console(output or sys.stdout, errors or sys.stderr)
    ports = ", ".join(str(port) for port, _ in environments)
    console.say(f"the workers' TensorFlow servers will listen on ports {ports} {LISTENS_ON}")
    interrupt = _Interrupt()
    interrupt.install()
    workers = []
    start = time.monotonic()
    status = None
    try:
        _start_workers(workers, environments, command, console, progress_interval, interrupt)
        status = _monitor(workers, num_workers, interrupt, console, start, timeout, poll_interval)
        if status == EXIT_PREEMPTED:  # a worker's own signal: the others follow it
            _wait(workers, grace_period)
    finally:
        if status is None:  # An exception in the launcher itself.
            console.say("stopping the workers after an error in the launcher")
        _stop(workers, grace_period, console)
        for worker in workers:
            for thread in worker.threads:
                thread.join(timeout=5)
        interrupt.restore()
    return _job_status(status, workers, console)


def _worker_environments(num_workers, port_base, env):
    """Each worker's port and environment: `env` (default: this process's) and its TF_CONFIG."""
    if port_base:
        ports = list(range(port_base, port_base + num_workers))
    else:
        # Free on every interface, where the workers bind them.
        ports = free_ports(num_workers, host="")
    configs = cluster_configs(num_workers, ports)
    base_env = dict(os.environ if env is None else env)
    # Output reaches the console as it is printed, not when a buffer fills.
    base_env["PYTHONUNBUFFERED"] = "1"
    return [
        (port, dict(base_env, TF_CONFIG=json.dumps(config))) for port, config in zip(ports, configs)
    ]


def _start_workers(workers, environments, command, console, progress_interval, interrupt):
    """Starts a worker per (port, environment), appending each to `workers` as it starts.

    Starts no more once a signal came: the caller then stops those in `workers`.
    """
    for index, (port, worker_env) in enumerate(environments):
        worker = _start_worker(index, command, worker_env, console, progress_interval)
        workers.append(worker)
        console.say(f"started {worker.name}, port {port}")
        if interrupt.signum is not None:
            break


def _job_status(status, workers, console):
    """The job's exit status, from the monitor's `status` and how the stopped workers ended.

    A job stopped by a signal (its own or a worker's) ends with `EXIT_PREEMPTED` only when
    every worker saved a checkpoint.
    """
    if status == EXIT_PREEMPTED or (status is not None and status > 128):
        if _all_saved(workers):
            console.say("every worker saved a checkpoint: rerun the same command to resume")
            return EXIT_PREEMPTED
        if status == EXIT_PREEMPTED:
            return EXIT_WORKER_FAILED
    return status


def _check_launch_arguments(num_workers, port_base, timeout, grace_period):
    _check_num_workers(num_workers)
    if not isinstance(port_base, int) or not (
        port_base == 0 or 1024 <= port_base <= 65536 - num_workers
    ):
        raise ValueError(
            f"port_base must be 0 (free ports) or a port in [1024, {65536 - num_workers}]. "
            f"Received: port_base={port_base!r}"
        )
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds or None. Received: timeout={timeout!r}")
    if not grace_period >= 0:
        raise ValueError(f"grace_period must be >= 0 seconds. Received: {grace_period!r}")


def _start_worker(index, command, env, console, progress_interval):
    """Starts worker `index` and the threads that forward its stdout and stderr."""
    process = subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    prefix = f"[worker {index}] "
    threads = [
        threading.Thread(
            target=worker_output.forward,
            args=(pipe, prefix, stream, console, progress_interval, keep_ansi),
            name=f"worker-{index}-{which}",
            daemon=True,
        )
        for pipe, stream, keep_ansi, which in (
            (process.stdout, console.output, console.keep_ansi[0], "stdout"),
            (process.stderr, console.errors, console.keep_ansi[1], "stderr"),
        )
    ]
    for thread in threads:
        thread.start()
    return _Worker(index, process, threads)


def _monitor(workers, num_workers, interrupt, console, start, timeout, poll_interval):
    """Waits until every worker exits 0 (returns 0), one fails, a timeout or a signal."""
    finished = set()
    while True:
        if interrupt.signum is not None:
            name = signal.Signals(interrupt.signum).name
            console.say(f"received {name}: stopping the workers")
            return 128 + interrupt.signum
        exits = [(worker, worker.process.poll()) for worker in workers]
        # A worker killed by a signal (a negative status) is the cause; the others then
        # fail for want of it, often before the next look: name it first.
        failed = sorted(
            [(worker, code) for worker, code in exits if code not in (None, 0)],
            key=lambda exit: exit[1] >= 0,
        )
        saved = [worker for worker, code in failed if code == EXIT_PREEMPTED]
        if saved and len(saved) == len(failed):
            for worker in saved:
                console.say(f"{worker.name} stopped on a signal after saving a checkpoint")
            return EXIT_PREEMPTED
        if failed:
            for i, (worker, code) in enumerate(failed):
                stop = ": stopping the other workers" if i == 0 else ""
                console.say(f"{worker.name} {describe_exit(code)}{stop}")
            return EXIT_WORKER_FAILED
        for worker, code in exits:
            if code == 0 and worker.index not in finished:
                finished.add(worker.index)
                console.say(f"{worker.name} finished")
        if len(finished) == num_workers:
            console.say(f"all {num_workers} workers finished")
            return 0
        if timeout is not None and time.monotonic() - start > timeout:
            console.say(f"timed out after {timeout:g} s: stopping the workers")
            return EXIT_TIMEOUT
        interrupt.event.wait(poll_interval)
