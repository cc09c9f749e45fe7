"""A training run's lock: one training run per model_dir, held in a file while it runs.

`model_dir/train.lock` names the run that holds it (host, pid, start time) and carries a
heartbeat, the time it was last refreshed, which a thread of the live run rewrites every
`lease / 4` seconds. A second `train` on the same model_dir refuses at once, naming the
run that holds it; `evaluate` and `export` take no lock (they read complete checkpoints
and write only their own outputs). A lock whose run is gone is taken over with a warning:
on this host, when its process no longer exists; from another host (a shared folder),
when its heartbeat is older than the lease. Under MultiWorkerMirroredStrategy the chief
alone holds the lock, for the whole job.

The lock is created with O_CREAT | O_EXCL, which is atomic on local filesystems and on
NFS v3 and later. A stale lock is first renamed aside, so that of two runs taking it
over at the same moment only one succeeds.
"""

import contextlib
import datetime
import json
import os
import socket
import threading
import time

from keras_alexnet import errors
from keras_alexnet.runs import write_errors

LOCK_FILE = "train.lock"
DEFAULT_LEASE = 120.0  # seconds without a heartbeat before another host's lock is stale


class RunLocked(ValueError):
    """Another live run holds the model_dir's lock."""


def _now():
    return time.time()


def _iso(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat(
        timespec="seconds"
    )


def _process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    try:  # a zombie has exited: its run is over
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return True  # no /proc: kill(0) said it exists


def _process_start(pid):
    """When a process started (seconds since the epoch), or None where /proc cannot tell:
    field 22 of /proc/PID/stat, in clock ticks after boot (btime in /proc/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _valid(holder):
    """Whether a lock's contents are a run's: host and pid, started and heartbeat times."""
    if not isinstance(holder, dict):
        return False
    number = (int, float)
    return (
        isinstance(holder.get("host"), str)
        and isinstance(holder.get("pid"), int)
        and not isinstance(holder.get("pid"), bool)
        and all(
            isinstance(holder.get(k), number) and not isinstance(holder.get(k), bool)
            for k in ("started", "heartbeat")
        )
    )


def describe(holder):
    """A lock's holder in words: "pid 123 on host h, started 2026-...; heartbeat 3 s ago"."""
    age = _now() - holder.get("heartbeat", 0)
    if holder.get("host") is None:
        return f"a lock file that is not a run's (cut short or damaged), written {age:.0f} s ago"
    return (
        f"pid {holder.get('pid')} on host {holder.get('host')}, started "
        f"{_iso(holder.get('started', 0))}; last heartbeat {age:.0f} s ago"
    )


def stale_reason(holder, lease, host=None):
    """Why a lock's holder is gone, or None while it may still be running.

    Args:
        holder: the lock's contents (host, pid, started, heartbeat).
        lease: seconds without a heartbeat after which a run on another host is gone.
        host: this host's name (default: `socket.gethostname()`).

    Returns:
        A string naming the reason, or None.
    """
    host = host or socket.gethostname()
    age = _now() - holder.get("heartbeat", 0)
    if holder.get("host") == host:
        pid = holder.get("pid")
        if not isinstance(pid, int) or not _process_exists(pid):
            return f"its process {pid} no longer runs on this host"
        # A pid is reused: a process that started after the run took the lock is another.
        started = _process_start(pid)
        if started is not None and started > holder.get("started", 0) + 1.0:
            return (
                f"its pid {pid} now belongs to another process, started "
                f"{_iso(started)}, after the run took the lock"
            )
        if started is None and age > lease:
            return f"its heartbeat is {age:.0f} s old, more than the {lease:g} s lease"
        return None
    if age > lease:
        return f"its heartbeat is {age:.0f} s old, more than the {lease:g} s lease"
    return None


class RunLock:
    """The lock of a model_dir, held from `acquire` to `release`.

    Args:
        model_dir: the run's folder (created if needed).
        lease: seconds without a heartbeat after which another host may take the lock over;
            the heartbeat is refreshed every lease / 4 seconds.
    """

    def __init__(self, model_dir, lease=DEFAULT_LEASE):
        if not lease > 0:
            raise ValueError(f"lease must be > 0 seconds. Received: lease={lease!r}")
        self.path = os.path.join(model_dir, LOCK_FILE)
        self.lease = lease
        self.holder = None
        self._stop = threading.Event()
        self._thread = None
        self._made_folder = False

    def acquire(self):
        """Takes the lock, taking over a stale one with a warning.

        Raises:
            RunLocked: another live run holds it; the message names that run.
        """
        if os.path.isdir(self.path):
            raise errors.InputError(f"{self.path} is a folder, not a run's lock; remove it")
        started = _now()
        self.holder = dict(
            host=socket.gethostname(), pid=os.getpid(), started=started, heartbeat=started
        )
        for _ in range(3):  # a lock released or taken over while we looked: look again
            if self._try_create():
                break
            other = self._read()
            if other is None:
                continue
            reason = stale_reason(other, self.lease)
            if reason is None:
                raise RunLocked(
                    f"model_dir {os.path.dirname(self.path)} is being trained by another run "
                    f"({describe(other)}). Wait for it to end, stop it, or use another "
                    f"--model_dir. The lock is {self.path}; it is taken over by itself once "
                    "that run is gone."
                )
            if self._move_aside(other):
                print(
                    f"warning: taking over the lock {self.path} of a run that is gone "
                    f"({describe(other)}): {reason}.",
                    flush=True,
                )
        else:
            raise RunLocked(f"Could not take the lock {self.path}: other runs keep taking it.")
        self._thread = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)
        self._thread.start()
        return self

    def release(self):
        """Stops the heartbeat and removes the lock if it is still this run's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            current = self._read()
            if current is not None and self._ours(current):
                os.remove(self.path)
            if self._made_folder and not os.listdir(os.path.dirname(self.path)):
                os.rmdir(os.path.dirname(self.path))  # a run refused before its first file
        except OSError:
            pass  # gone, or a read-only or vanished folder: the next run takes it over

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()

    def _ours(self, holder):
        return all(holder.get(k) == self.holder[k] for k in ("host", "pid", "started"))

    def _try_create(self):
        folder = os.path.dirname(self.path) or "."
        try:
            if not os.path.isdir(folder):
                os.makedirs(folder)
                self._made_folder = True
            return self._create()
        except FileExistsError:
            return False
        except OSError as error:
            raise write_errors.failed("the run's lock", self.path, error) from error

    def _create(self):
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(self.holder, f)
        return True

    def _read(self):
        try:
            with open(self.path) as f:
                holder = json.load(f)
        except FileNotFoundError:
            return None
        except (ValueError, RecursionError):
            holder = None  # JSON or UTF-8 broken: cut short while being written
        if _valid(holder):
            return holder
        # Cut short while being written, or not a run's lock: judged by its age alone.
        return dict(host=None, pid=None, started=0, heartbeat=os.path.getmtime(self.path))

    def _move_aside(self, seen):
        """Renames the stale lock `seen` away; False if another run did so first."""
        aside = f"{self.path}.stale-{socket.gethostname()}-{os.getpid()}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        with open(aside) as f:
            try:
                moved = json.load(f)
            except (ValueError, RecursionError):
                moved = None
        if not _valid(moved):
            moved = dict(host=None, pid=None, started=0, heartbeat=os.path.getmtime(aside))
        if moved is not None and moved != seen:
            # Another run took the lock over between our read and our rename: give it back.
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            os.remove(aside)
            return False
        os.remove(aside)
        return True

    def _beat(self):
        while not self._stop.wait(self.lease / 4):
            self.holder["heartbeat"] = _now()
            temporary = f"{self.path}.{os.getpid()}.tmp"
            try:
                current = self._read()
                if current is None or not self._ours(current):
                    return  # taken over (we were judged gone): do not fight for it
                with open(temporary, "w") as f:
                    json.dump(self.holder, f)
                os.replace(temporary, self.path)
            except OSError:
                pass  # A full or read-only disk: the training run's own writes say so.


@contextlib.contextmanager
def held(model_dir, chief=True, lease=DEFAULT_LEASE):
    """Holds model_dir's lock for the `with` block, on the chief only.

    Nothing is locked where no folder is named yet (the config check then refuses it) or
    on a remote filesystem (a "scheme://" path), which has no atomic exclusive create.
    """
    if not chief or not model_dir or "://" in str(model_dir):
        yield None
        return
    with RunLock(str(model_dir), lease) as lock:
        yield lock
