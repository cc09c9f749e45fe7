"""The launcher's processes in its tests: which live, which it started, and their output.

The output is read in a thread (`Log`), so that a test can wait for a line.
"""

import os
import re
import signal
import threading
import time

import tensorflow as tf


def alive(pid):
    """Whether a process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def started_pids(text):
    return {int(i): int(p) for i, p in re.findall(r"started worker (\d+) \(pid (\d+)\)", text)}


class Log:
    """Collects a process's merged output in a thread; ends its process group on end()."""

    def __init__(self, process):
        self.process = process
        self._lines = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for line in self.process.stdout:
            self._lines.append(line)

    def text(self):
        return "".join(self._lines)

    def wait_for(self, pattern, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.text())
            if match:
                return match
            assert self.process.poll() is None, f"exited before {pattern!r}:\n{self.tail()}"
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} within {timeout} s:\n{self.tail()}")

    def join(self):
        self._thread.join(timeout=30)

    def tail(self, chars=6000):
        return self.text()[-chars:]

    def end(self):
        """Kills whatever is left of the process group (launcher and workers)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        self.join()


# --- Unit tests -------------------------------------------------------------------------


def wait_for_checkpoint(log, model_dir, after=0, seconds=400):
    """Waits until the chief's state file names a checkpoint above `after`; its number.

    Args:
        log: the `Log` of the process that trains (its end fails the wait).
        model_dir: the run's folder (a `pathlib.Path`).
        after: the checkpoint number to wait past.
        seconds: how long to wait at most.
    """
    deadline = time.monotonic() + seconds
    while True:
        latest = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
        if latest and int(latest.rsplit("-", 1)[1]) > after:
            return int(latest.rsplit("-", 1)[1])
        assert log.process.poll() is None, log.tail()
        assert time.monotonic() < deadline, f"no checkpoint after {after}:\n{log.tail()}"
        time.sleep(0.02)
