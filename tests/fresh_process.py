"""Run a keras_alexnet tool as its users do: `python -m keras_alexnet.<module>`, in a fresh
process (imported by the evaluate, export and predict tests)."""

import os
import subprocess
import sys


def run_module(module, *args):
    """Runs `python -m keras_alexnet.<module> args...` and captures its output.

    Args:
        module: the module's name inside keras_alexnet ("evaluate", "export", ...).
        *args: its command-line arguments.

    Returns:
        The `subprocess.CompletedProcess`, stdout and stderr as text.
    """
    return subprocess.run(
        [sys.executable, "-m", f"keras_alexnet.{module}", *args],
        capture_output=True,
        text=True,
        # Loading TensorFlow and a 61M-parameter model can take minutes on a busy machine.
        timeout=600,
        env=dict(os.environ),
    )
