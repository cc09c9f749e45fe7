"""Run a keras_alexnet tool as its users do, in a fresh process, with the tests' tiny
variant (and test-only pretrained names, `weight_server`) known to it.

`python tests/fresh_process.py TOOL ARGS...` registers `tiny.VARIANT` (and the names of
`weight_server.ENTRIES_ENV`) and then runs what
`python -m keras_alexnet.TOOL ARGS...` runs: `cli.run(TOOL.main, TOOL.define_flags)`.
"""

import concurrent.futures
import contextlib
import json
import os
import subprocess
import sys


def command(module, *args):
    """The command line that runs `python -m keras_alexnet.<module> args...` this way."""
    return [sys.executable, os.path.abspath(__file__), module, *map(str, args)]


def run_module(module, *args, timeout=600):
    """Runs `python -m keras_alexnet.<module> args...` and captures its output.

    Args:
        module: the module's name inside keras_alexnet ("train", "evaluate", ...).
        *args: its command-line arguments.
        timeout: seconds; loading TensorFlow and a model can take minutes on a busy machine.

    Returns:
        The `subprocess.CompletedProcess`, stdout and stderr as text.
    """
    return subprocess.run(
        command(module, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )


def run_script(script, *args, timeout=600):
    """Runs `python -c script args...` with the tests folder importable (e.g. `tiny`).

    Returns:
        The `subprocess.CompletedProcess`, stdout and stderr as text.
    """
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=script_env(),
    )


def start_script(script, *args):
    """Starts `python -c script args...` as `run_script` runs it, without waiting: the
    `subprocess.Popen`, stdout and stderr piped as text (read them with communicate())."""
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=script_env(),
    )


@contextlib.contextmanager
def started_script(script, *args):
    """`start_script`, killed when the block ends (for a module fixture started with the
    module, whose tests that do not need it run in the meantime)."""
    process = start_script(script, *args)
    try:
        yield process
    finally:
        process.kill()
        process.communicate()


def printed_json(process, keys, timeout=600):
    """{key: value} of the "KEY json" lines a started script printed, for each of `keys`
    it printed (the last line of each wins); the script must have succeeded."""
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr[-4000:]
    return {
        line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1])
        for line in stdout.splitlines()
        if line.startswith(tuple(f"{key} " for key in keys))
    }


def script_env():
    """This process's environment, with the tests folder first on PYTHONPATH (for
    `run_together` of scripts that import the tests' helpers)."""
    path = [os.path.dirname(os.path.abspath(__file__)), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p))


def run_together(*commands, timeout=600, env=None, at_once=None):
    """Runs several command lines at the same time, each in a process of its own.

    Args:
        *commands: command lines, e.g. from `command(...)`.
        timeout: seconds for each (killed after them, and TimeoutExpired raised).
        env: their environment (default: this process's).
        at_once: at most this many at the same time, each next one starting, in order, as
            one ends; default all.

    Returns:
        A `subprocess.CompletedProcess` for each, in order, stdout and stderr as text.
    """

    def run(args):
        return subprocess.run(
            list(map(str, args)),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(os.environ if env is None else env),
        )

    workers = max(1, min(at_once or len(commands), len(commands)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run, args) for args in commands]
        return [future.result() for future in futures]


def run_scripts(*scripts, timeout=600):
    """Runs several `run_script` calls at the same time: (script, args) pairs; their
    `subprocess.CompletedProcess`es, in order."""
    return run_together(
        *[[sys.executable, "-c", script, *args] for script, args in scripts],
        timeout=timeout,
        env=script_env(),
    )


def _main():
    # isort: off
    # First, as in `python -m keras_alexnet.TOOL`: the package loads TensorFlow quietly
    # (startup.py) only when nothing has loaded it before (tiny imports TensorFlow).
    import keras_alexnet  # noqa: F401

    # isort: on
    import importlib

    import tiny
    import weight_server

    from keras_alexnet import cli
    from keras_alexnet.training import launcher as launch

    tiny.register()
    weight_server.register_from_environment()
    # The launcher's workers run the same way, the tiny variant known to them too.
    launch.train_command = lambda train_args, python=sys.executable: command(
        "train", "--strategy=multi_worker", *train_args
    )
    name = sys.argv.pop(1)
    sys.argv[0] = f"keras_alexnet.{name}"
    tool = importlib.import_module(f"keras_alexnet.{name}")
    # What the tool's `if __name__ == "__main__":` runs.
    cli.run(tool.main, getattr(tool, "define_flags", None))


if __name__ == "__main__":
    _main()
