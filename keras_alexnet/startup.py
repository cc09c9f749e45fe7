"""Keras and TensorFlow loaded without the INFO lines TensorFlow's C++ runtime prints while
it loads.

`import tensorflow` prints, before any setting is read, absl's "WARNING: All log messages
before absl::InitializeLog() is called are written to STDERR" and INFO lines ("oneDNN
custom operations are on", "Could not find cuda drivers on your machine"), twice: once
from `libtensorflow_framework.so` and once from the profiler's `_pywrap_profiler_plugin.so`,
which carries its own copy of that code. They come from the libraries' static
initialisers, before absl's logging is initialised, so TF_CPP_MIN_LOG_LEVEL does not reach
them. `import_keras` passes stderr through a filter while Keras loads its backend: it leaves
out those lines (INFO only, as TF_CPP_MIN_LOG_LEVEL=1 would) and forwards every other line
as it comes, warnings and errors included, from a forked process that outlives a crash.
"""

import os
import re
import sys
import threading

# absl's line before its own initialisation, and absl's INFO lines ("I0000 00:00:...").
NOISE = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
    rb"STDERR|I\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.]+:\d+\] .*"
)


def import_keras():
    """Imports Keras (and TensorFlow, its backend), their load-time INFO lines left out of
    stderr.

    The filter is skipped (Keras imported as it is) when TensorFlow is already loaded,
    when TF_CPP_MIN_LOG_LEVEL asks for INFO lines (unset or 0), where there is no
    `os.fork`, and when other threads run (a fork would copy their locks).
    """
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip()
    if (
        "tensorflow" in sys.modules
        or level in ("", "0")
        or not hasattr(os, "fork")
        or threading.active_count() > 1
    ):
        import keras  # noqa: F401

        return
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the filter: forwards to the real stderr until TensorFlow has loaded
        os.close(write_end)
        try:
            forward(read_end, 2)
        finally:
            os._exit(0)
    os.close(read_end)
    real_stderr = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        import keras  # noqa: F401
    finally:
        sys.stderr.flush()
        os.dup2(real_stderr, 2)  # the last write end closes: the filter reads to the end
        os.close(real_stderr)
        os.waitpid(pid, 0)


def forward(source, target):
    """Copies lines from one file descriptor to another until the end, less `NOISE`.

    Args:
        source: the descriptor to read (a pipe's read end).
        target: the descriptor to write.
    """
    pending = b""
    while True:
        chunk = os.read(source, 65536)
        if not chunk:
            break
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        _write_all(target, b"".join(line + b"\n" for line in lines if not NOISE.fullmatch(line)))
    if not NOISE.fullmatch(pending):
        _write_all(target, pending)


def _write_all(target, data):
    while data:
        data = data[os.write(target, data) :]
