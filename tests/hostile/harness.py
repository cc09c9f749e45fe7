"""A tool run on hostile or broken input as its users run it: in a child process under an
address-space limit, its exit code, what it printed and its peak memory read back.

`run_tool("verify", "--model=bad.keras")` runs `python -m keras_alexnet.verify ...` the way
`fresh_process` does (the tests' tiny variant known to it); `assert_refused(result, name)`
checks what a user must see: exit 2, a last line `error: ...` naming the input, no
traceback, and no more memory than a tool on a valid file plus the issue's 2 GB.
"""

import os
import resource
import signal
import subprocess
import sys
import tempfile
from typing import NamedTuple

import fresh_process

# The child's address space (RLIMIT_AS): enough for TensorFlow and a tiny model, which
# reserve far more address space than they touch, so that an input that would take tens
# of gigabytes fails the test (as an allocation error) instead of the machine.
ADDRESS_LIMIT = 14 * 10**9
# A tool on a valid tiny model or image peaks below 1.5 GB here; hostile input may add up
# to 2 GB (the bound the package promises for files under 10 MB).
PEAK_LIMIT = int(3.5 * 2**30)


class Result(NamedTuple):
    returncode: int
    stdout: str
    stderr: str
    peak_bytes: int

    @property
    def last_line(self):
        """The last non-empty line of stderr, "" if none."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def run_tool(tool, *args, address_limit=ADDRESS_LIMIT, timeout=600, env=None):
    """Runs `python -m keras_alexnet.<tool> args...` in a child process under
    `address_limit` bytes of address space; its `Result`."""
    return run_command(fresh_process.command(tool, *args), address_limit, timeout, env)


def run_python(script, *args, address_limit=ADDRESS_LIMIT, timeout=600, env=None):
    """Runs `python -c script args...` (the tests folder importable) as `run_tool` runs a
    tool; its `Result`."""
    path = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
    base = dict(os.environ if env is None else env)
    path.append(base.get("PYTHONPATH", ""))
    base["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
    command = [sys.executable, "-c", script, *map(str, args)]
    return run_command(command, address_limit, timeout, base)


# Runs argv[2:] as its child and writes that child's peak resident memory (ru_maxrss, in
# kilobytes) to the file argv[1]; exits as the child did. Linux starts a process's peak at
# the resident size of the process it was forked from: a tool forked straight from a test
# process that holds gigabytes would report those gigabytes. Forked from this small
# process, its peak is its own.
LAUNCHER = """
import os, signal, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
if os.WIFSIGNALED(status):
    signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
    os.kill(os.getpid(), os.WTERMSIG(status))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_command(command, address_limit=ADDRESS_LIMIT, timeout=600, env=None):
    """Runs a command line under an address-space limit; its `Result`, with the child's
    own peak resident memory (not the test process's, nor its other children's)."""

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (address_limit, address_limit))

    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.NamedTemporaryFile("r") as peak,
    ):
        process = subprocess.Popen(
            [sys.executable, "-I", "-c", LAUNCHER, peak.name, *[str(p) for p in command]],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            text=True,
            env=dict(os.environ if env is None else env),
            preexec_fn=limit,
            start_new_session=True,  # a timeout ends the tool with its launcher
        )
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
        out.seek(0)
        err.seek(0)
        # ru_maxrss is in kilobytes on Linux.
        return Result(process.returncode, out.read(), err.read(), int(peak.read()) * 1024)


def assert_refused(result, *words, peak_limit=PEAK_LIMIT):
    """The input was refused as a user should see it: exit 2, a last stderr line
    `error: ...` holding each of `words`, no traceback, memory within `peak_limit`."""
    context = f"exit {result.returncode}; stderr ends:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, context
    assert result.returncode == 2, context
    assert result.last_line.startswith("error: "), context
    for word in words:
        assert str(word) in result.last_line, f"{word!r} not in the message; {context}"
    assert result.peak_bytes < peak_limit, f"peak {result.peak_bytes / 2**30:.2f} GiB; {context}"
