"""A training input that stops the run when no batch comes, instead of hanging forever.

A hung network filesystem or a dead data-service worker blocks `next(iterator)` inside
TensorFlow, where no Python timeout reaches. `TimedIterator` fetches each batch in a
helper thread and waits at most `seconds` for it; on time out it raises `InputStalled`
and leaves the helper thread (a daemon) blocked where it is.
"""

import queue
import threading


class InputStalled(Exception):
    """No training batch arrived within the input timeout."""


class TimedIterator:
    """Wraps an iterator; `next` raises `InputStalled` after `seconds` without a batch.

    Args:
        iterator: the iterator to read (a distributed dataset's, for example).
        seconds: how long to wait for each batch; None or 0 waits for ever (no thread).
        on_stall: called once when the wait times out (to write a checkpoint); what it
            returns ends the `InputStalled` message.
    """

    def __init__(self, iterator, seconds, on_stall=None):
        if seconds is not None and not seconds >= 0:
            raise ValueError(f"seconds must be >= 0 or None. Received: seconds={seconds!r}")
        self.iterator = iterator
        self.seconds = seconds or None
        self._requests = queue.Queue()
        self._results = queue.Queue()
        self._thread = None
        self._stalled = False
        self._on_stall = on_stall

    def __iter__(self):
        return self

    def __next__(self):
        if self.seconds is None:
            return next(self.iterator)
        if self._stalled:
            raise InputStalled(self._message())
        if self._thread is None:
            self._thread = threading.Thread(target=self._fetch, name="input-fetch", daemon=True)
            self._thread.start()
        self._requests.put(True)
        try:
            ok, value = self._results.get(timeout=self.seconds)
        except queue.Empty:
            self._stalled = True
            message = self._message()
            if self._on_stall is not None:
                message += f". {self._on_stall()}"
            raise InputStalled(message + ".") from None
        if not ok:
            raise value
        return value

    def _message(self):
        return (
            f"No training batch arrived within {self.seconds:g} s (--input_timeout): the "
            "input is stalled (a hung network filesystem, a dead input worker?)"
        )

    def _fetch(self):
        while self._requests.get():
            try:
                self._results.put((True, next(self.iterator)))
            except BaseException as error:  # handed to the caller, StopIteration included
                self._results.put((False, error))
