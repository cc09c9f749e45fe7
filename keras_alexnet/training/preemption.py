"""Stopping a training run on SIGTERM or SIGINT with a checkpoint at the current step.

Cloud spot instances and cluster schedulers send SIGTERM and give 30 s to a few minutes
before SIGKILL. While `train` runs, SIGTERM and SIGINT (Ctrl-C) are recorded instead of
ending the process mid-step; before the next training step the run saves a checkpoint of
every step completed and stops with `Preempted`, which the tool turns into the exit
status `EXIT_PREEMPTED`. A rerun resumes at that exact step. A second Ctrl-C stops at
once, without a checkpoint.

Under MultiWorkerMirroredStrategy the workers must save at the same step (saving is a
collective operation) though the signal may reach only one of them, or reach them at
different steps: `tf.distribute.experimental.PreemptionCheckpointHandler` does exactly
that, through the cluster's coordination service. One process (one device or
MirroredStrategy) has no peers to agree with, so there the recorded signal is checked
directly before each step: the handler would add nothing but a one-step delay, it
watches SIGTERM only, and it turns itself off on Google Cloud CPU machines.
"""

import logging
import shutil
import signal
import tempfile
import threading
import time

import tensorflow as tf

EXIT_PREEMPTED = 75  # sysexits' EX_TEMPFAIL: stopped for now, rerun to resume
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
    """The run stopped on a signal after saving a checkpoint at its current step.

    Attributes:
        signal_name: "SIGTERM", "SIGINT" or, on a worker that learnt of another's signal,
            "another worker's signal".
        step: the steps completed and saved.
        checkpoint: the checkpoint a rerun resumes from.
        seconds: from the signal to the checkpoint saved; None where another worker had
            the signal.
    """

    def __init__(self, signal_name, step, checkpoint, seconds):
        self.signal_name = signal_name
        self.step = step
        self.checkpoint = checkpoint
        self.seconds = seconds
        after = "" if seconds is None else f", {seconds:.1f} s after the signal"
        super().__init__(
            f"Stopped by {signal_name} at step {step}{after}; checkpoint {checkpoint}. "
            "Rerun the same command to resume from it."
        )


class SignalWatch:
    """Records SIGTERM and SIGINT while it is active, instead of letting them end the process.

    A second SIGINT raises KeyboardInterrupt as usual.

    Handlers can only be set from the main thread: elsewhere (a test running `train` in
    a thread) the watch records nothing and the signals keep their handlers.
    """

    def __init__(self):
        self.signum = None
        self.received = None  # time.monotonic() of the first signal
        self._previous = {}

    @property
    def signal_name(self):
        """The name of the signal recorded ("SIGTERM"), or None."""
        return None if self.signum is None else signal.Signals(self.signum).name

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum, frame):
        del frame
        if self.signum is None:
            self.signum = signum
            self.received = time.monotonic()
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt


class _HideOwnDeprecation(logging.Filter):
    """Drops the warning the handler's own save raises by calling `total_run_calls`.

    That method is deprecated: the warning is about TensorFlow's code, and says nothing a
    user can act on.
    """

    def filter(self, record):
        return "total_run_calls" not in record.getMessage()


class Preemption:
    """Saves a checkpoint and raises `Preempted` at the first step after SIGTERM or SIGINT.

    It does so while active (a context manager).

    Args:
        strategy: the run's `tf.distribute.Strategy`.
        state: the run's `train_state.TrainState`, whose `save` writes the checkpoint.
    """

    def __init__(self, strategy, state):
        self.watch = SignalWatch()
        self.state = state
        self._strategy = strategy
        self._handler = None
        self._scratch = None
        self._filter = _HideOwnDeprecation()

    def __enter__(self):
        self.watch.__enter__()
        resolver = getattr(self._strategy, "cluster_resolver", None)
        if resolver is not None and resolver.cluster_spec().jobs:
            # The handler restores from, and counts its steps in, the checkpoint it is
            # given. The run restores its own checkpoints (`run_folder.latest_checkpoint`), so
            # it gets an empty one that is never written: its step count then starts at 0
            # on every worker, which keeps the workers' counts equal. It saves through the
            # run's own `save` (`save_fn`) and stops by raising `Preempted` (`exit_fn`).
            watch = self.watch
            tf.get_logger().addFilter(self._filter)
            self._scratch = tempfile.mkdtemp(prefix="keras_alexnet_preemption_")
            self._handler = tf.distribute.experimental.PreemptionCheckpointHandler(
                resolver,
                tf.train.CheckpointManager(tf.train.Checkpoint(), self._scratch, max_to_keep=1),
                termination_config=tf.distribute.experimental.TerminationConfig(
                    termination_watcher_fn=lambda: watch.signum is not None,
                    exit_fn=self._stop,
                    save_fn=self._save,
                ),
            )
        return self

    def __exit__(self, *exc_info):
        self.watch.__exit__(*exc_info)
        tf.get_logger().removeFilter(self._filter)
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def wrap(self, step_fn):
        """`step_fn`, run after the check for a signal (through the handler across workers)."""
        if self._handler is not None:
            return lambda *args: self._handler.run(step_fn, *args)

        def step(*args):
            if self.watch.signum is not None:
                self._save()
                self._stop()
            return step_fn(*args)

        return step

    def _save(self, *args, **kwargs):
        del args, kwargs
        # At an epoch's end the step has just been saved; every worker decides alike.
        if self.state.saved_step != self.state.step:
            self.state.save("signal")

    def _stop(self):
        raise Preempted(
            self.watch.signal_name or "another worker's signal",
            self.state.step,
            self.state.latest_checkpoint,
            None if self.watch.received is None else time.monotonic() - self.watch.received,
        )
