"""A script of the benchmarks run in a child process that answers in lines of JSON.

The benchmarks time runtimes that must not share a process with TensorFlow (PyTorch,
LiteRT, ONNX Runtime: their thread pools would compete with TensorFlow's). Each runs as a
script, started by `ChildProcess`: the script prints one JSON object once it is ready
({"info": ...}), then one per request line it reads. This module imports only the
standard library, so that the scripts can import it too (`torch_process.py`,
`format_process.py`).
"""

import json
import subprocess
import sys


class ChildProcess:
    """A script in a child process, asked one request line at a time.

    The process starts at construction; `ready` waits for its first reply. Its stderr is
    this process's: its errors and warnings show where ours do.

    Args:
        script: the Python file to run.
        args: its command-line arguments.
        what: what the process is, for errors ("The PyTorch process").
    """

    def __init__(self, script, args, what):
        self.what = what
        self.info = None
        self.ready_reply = None
        self._process = subprocess.Popen(
            [sys.executable, script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.pid = self._process.pid

    def ready(self):
        """Waits until the script is ready; returns its `info` dict."""
        if self.info is None:
            self.ready_reply = self._reply()
            self.info = self.ready_reply["info"]
        return self.info

    def request(self, line):
        """Sends one request line; returns the reply (a dict)."""
        self.ready()
        self._send(line)
        return self._reply()

    def close(self, quit_line="quit"):
        """Ends the process (it is killed if it does not end within 60 s)."""
        if self._process.poll() is None:
            try:
                self._send(quit_line)
                self._process.wait(timeout=60)
            except (RuntimeError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()
        for stream in (self._process.stdin, self._process.stdout):
            try:
                stream.close()
            except OSError:  # the pipe of a process that ended
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _send(self, line):
        try:
            self._process.stdin.write(line + "\n")
            self._process.stdin.flush()
        except (BrokenPipeError, ValueError) as error:
            raise RuntimeError(self._ended()) from error

    def _reply(self):
        # Anything else a library prints on stdout is not a reply: the replies are objects.
        for line in self._process.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(self._ended())

    def _ended(self):
        return (
            f"{self.what} ended (exit status {self._process.wait()}); its error is printed above."
        )
