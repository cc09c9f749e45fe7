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

TensorFlow's wheel carries its CUDA platform: the first time it looks for devices, it
loads the driver's `libcuda.so.1`, and where there is none it logs at error level "failed
call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)" (303:
the driver's library could not be loaded). CUDA_VISIBLE_DEVICES="" does not stop the call.
On a machine that shows no NVIDIA driver (`gpu_driver_present`), `import_keras` has
TensorFlow look for its devices while the filter still runs, and the filter leaves out
that one line too. Where a driver is present the line is an error worth reading (a
driver whose library is missing or broken): it is kept, and TensorFlow looks for devices
when it would anyway.
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
# The line TensorFlow's CUDA platform logs where the driver's libcuda.so.1 cannot be loaded.
NO_DRIVER = re.compile(
    rb"E\d{4} \d\d:\d\d:[\d.]+ +\d+ cuda_platform\.cc:\d+\] failed call to cuInit: "
    rb"INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR \(303\)"
)
NOISE_WITHOUT_DRIVER = re.compile(NOISE.pattern + b"|" + NO_DRIVER.pattern)
# What an NVIDIA driver puts on a machine (or a container given a GPU): the kernel
# module's folder, its devices, and WSL's GPU device.
DRIVER_FILES = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/dxg")


def gpu_driver_present():
    """Whether this machine shows an NVIDIA driver: its kernel module or a GPU device
    (/dev/nvidia0, ...), whether or not the driver works."""
    return any(os.path.exists(path) for path in DRIVER_FILES) or any(
        re.fullmatch(r"nvidia\d+", name) for name in _names("/dev")
    )


def _names(folder):
    try:
        return os.listdir(folder)
    except OSError:
        return []


def import_keras():
    """Imports Keras (and TensorFlow, its backend), their load-time INFO lines left out of
    stderr; on a machine without an NVIDIA driver TensorFlow also looks for its devices,
    its "failed call to cuInit" left out too.

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
    noise = NOISE if gpu_driver_present() else NOISE_WITHOUT_DRIVER
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the filter: forwards to the real stderr until TensorFlow has loaded
        os.close(write_end)
        try:
            forward(read_end, 2, noise)
        finally:
            os._exit(0)
    os.close(read_end)
    real_stderr = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        import keras  # noqa: F401

        if noise is NOISE_WITHOUT_DRIVER and "tensorflow" in sys.modules:
            # Only the physical devices: threads, memory and logical devices stay settable.
            sys.modules["tensorflow"].config.list_physical_devices()
    finally:
        sys.stderr.flush()
        os.dup2(real_stderr, 2)  # the last write end closes: the filter reads to the end
        os.close(real_stderr)
        os.waitpid(pid, 0)


def forward(source, target, noise=NOISE):
    """Copies lines from one file descriptor to another until the end, less `noise`.

    Args:
        source: the descriptor to read (a pipe's read end).
        target: the descriptor to write.
        noise: the lines to leave out, a compiled bytes pattern a whole line matches.
    """
    pending = b""
    while True:
        chunk = os.read(source, 65536)
        if not chunk:
            break
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        _write_all(target, b"".join(line + b"\n" for line in lines if not noise.fullmatch(line)))
    if not noise.fullmatch(pending):
        _write_all(target, pending)


def _write_all(target, data):
    while data:
        data = data[os.write(target, data) :]
