"""A training worker's output on the launcher's console, one whole line at a time.

Several workers print at once, and their progress bars redraw one line many times a
second: `OutputLines` turns a worker's bytes into the lines worth showing, `forward`
copies them to the console with the worker's name, and `Console` keeps the lines of
different workers from interleaving.
"""

import math
import re
import threading
import time

_ANSI_ESCAPE = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")
_LINE_END = re.compile(rb"\r\n|\r|\n")


class Console:
    """Writes whole lines from several threads without interleaving them.

    Args:
        output: the stream of the workers' stdout lines.
        errors: the stream of the workers' stderr lines and the launcher's messages.
    """

    def __init__(self, output, errors):
        self.output = output
        self.errors = errors
        # Colour and style escape codes are kept only for a terminal: (output, errors).
        self.keep_ansi = tuple(hasattr(s, "isatty") and s.isatty() for s in (output, errors))
        self._lock = threading.Lock()

    def write(self, stream, line):
        """Writes `line` and a newline to `stream` (`output` or `errors`), then flushes."""
        with self._lock:
            try:
                stream.write(line + "\n")
                stream.flush()
            except (OSError, ValueError):
                pass  # A closed console must not stop the launcher from stopping workers.

    def say(self, message):
        """Writes the launcher's own `message`, marked "[launch]", to `errors`."""
        self.write(self.errors, f"[launch] {message}")


class OutputLines:
    """Splits a process's output into the lines to show, taming progress bars.

    A progress bar (Keras' Progbar, tqdm) redraws its line: it writes \\b's and a \\r, then
    the new state, and flushes. Each state becomes one line here, shown as soon as it
    arrives, but at most one per `progress_interval` seconds, so that several workers'
    bars do not flood the console. Lines ended by \\n (or \\r\\n) are always shown; text
    written after a bar's state on the same line (as "Done" after a bar that was not
    finished) becomes a line of its own.

    Args:
        progress_interval: seconds between two progress states shown.
        keep_ansi: keep colour and style escape codes (for a terminal).
        clock: the time source, in seconds.
    """

    def __init__(self, progress_interval=10.0, keep_ansi=False, clock=time.monotonic):
        self.progress_interval = progress_interval
        self.keep_ansi = keep_ansi
        self.clock = clock
        self._buffer = b""
        self._shown = 0  # bytes of the unfinished segment already shown
        self._after_cr = False  # the unfinished segment follows a lone \r: a bar's state
        self._last_progress = -math.inf

    def feed(self, data):
        """Takes the next bytes of output; returns the lines to show now, without "\\n"."""
        self._buffer += data
        return self._split(final=False)

    def close(self):
        """Returns the lines left at the end of the output."""
        lines = self._split(final=True)
        rest = self._clean(self._buffer[self._shown :])
        if rest:
            lines.append(rest)
        self._buffer, self._shown = b"", 0
        return lines

    def _split(self, final):
        lines = []
        while True:
            match = _LINE_END.search(self._buffer)
            if not match:
                break
            lone_cr = match.group() == b"\r"
            if lone_cr and match.end() == len(self._buffer) and not final:
                break  # Maybe the \r of a \r\n whose \n has not arrived yet.
            rest = self._clean(self._buffer[self._shown : match.start()])
            # A bar's state ended by the next one: it was shown when it came, or was
            # skipped then, and is stale now. Text written after a shown state is not.
            if rest and not (lone_cr and self._after_cr and not self._shown):
                lines.append(rest)
            self._buffer = self._buffer[match.end() :]
            self._shown = 0
            self._after_cr = lone_cr
        # A bar's state is complete when its writer flushed it: show it now, not when the
        # next state ends it, and not again then.
        if self._after_cr and not self._shown:
            state = self._clean(self._buffer)
            if state and self._progress_due():
                lines.append(state)
                self._shown = len(self._buffer)
        return lines

    def _progress_due(self):
        now = self.clock()
        if now - self._last_progress < self.progress_interval:
            return False
        self._last_progress = now
        return True

    def _clean(self, segment):
        segment = segment.replace(b"\b", b"")
        if not self.keep_ansi:
            segment = _ANSI_ESCAPE.sub(b"", segment)
        return segment.decode("utf-8", errors="replace").rstrip()


def forward(pipe, prefix, stream, console, progress_interval, keep_ansi):
    """Copies a worker's pipe to the console, line by line, with `prefix`, until it closes.

    Args:
        pipe: the worker's stdout or stderr, a binary pipe.
        prefix: put before each line, e.g. "[worker 1] ".
        stream: the console's stream for these lines.
        console: a `Console`.
        progress_interval: as for `OutputLines`.
        keep_ansi: as for `OutputLines`.
    """
    lines = OutputLines(progress_interval, keep_ansi)
    while True:
        chunk = pipe.read1(65536)
        if not chunk:
            break
        for line in lines.feed(chunk):
            console.write(stream, prefix + line)
    for line in lines.close():
        console.write(stream, prefix + line)
    pipe.close()
