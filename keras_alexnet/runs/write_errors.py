"""Writes that fail: a full disk, a read-only folder, a vanished network mount.

TensorFlow reports them as `tf.errors.OpError`s (ENOSPC as ResourceExhaustedError, a
read-only folder as PermissionDeniedError or FailedPreconditionError, a vanished mount as
NotFoundError or UnavailableError) and Python as `OSError`s; the tools turn either into
a `WriteFailed` whose message names the path and the cause, without a traceback.
"""

import os
import uuid

import tensorflow as tf

WRITE_ERRORS = (tf.errors.OpError, OSError)


class WriteFailed(Exception):
    """A file could not be written; the message names it and why."""


def cause(error):
    """The cause of a failed write in a few words: "No space left on device"."""
    if isinstance(error, OSError) and error.errno is not None:
        return error.strerror or os.strerror(error.errno)
    text = error.message if isinstance(error, tf.errors.OpError) else str(error)
    # TensorFlow's messages end with the cause after the file name: "...; No space left".
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return first.rsplit("; ", 1)[-1].split(" [Op:")[0].strip()


def failed(what, path, error, then=""):
    """A `WriteFailed` naming what was written, where, and why; `then` says what now."""
    return WriteFailed(
        f"Could not write {what} {path}: {cause(error)}." + (f" {then}" if then else "")
    )


def check_writable(folder, what):
    """Writes and removes a small file in `folder`, to find out that writes there fail.

    TensorFlow's summary writer drops a failed write without an error; this probe after
    its flush is how a full or read-only log folder is noticed.

    Raises:
        WriteFailed: the probe could not be written.
    """
    probe = os.path.join(folder, f".write_probe_{uuid.uuid4().hex}")
    try:
        tf.io.gfile.makedirs(folder)
        with tf.io.gfile.GFile(probe, "w") as f:
            f.write("x" * 4096)
        tf.io.gfile.remove(probe)
    except WRITE_ERRORS as error:
        raise failed(what, folder, error) from error
