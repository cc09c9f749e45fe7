"""Fetching a named file (`catalog`) into the Keras cache, verified, with the standard library.

The cache is where keras.applications keeps its weights: `$KERAS_HOME/models`, or
`~/.keras/models` without KERAS_HOME. `KERAS_ALEXNET_MIRROR=<base URL>` fetches the same
file names from another server, with the same hash check.

A download goes to a temporary name of its own (one per process) beside the cached file,
its hash computed on the way; only a file whose hash and length are right is renamed to
the cached name (`os.replace`, atomic). An interrupted, truncated or wrong download never
becomes the cached file, and two processes fetching at once each rename a whole, verified
file: one good file is left.

A server cannot keep a download going or fill the disk: a download has an overall
deadline (`DEADLINE` seconds, or `$KERAS_ALEXNET_DOWNLOAD_DEADLINE`) besides the
per-read `TIMEOUT`, and a size limit (the catalog's size where its publisher states it,
else `MAX_BYTES`), checked against the announced Content-Length before the body is read
and against every byte received. The temporary file is removed on Ctrl-C and on SIGTERM
(what a scheduler sends); one that a killed process left behind is removed at the next
use of the cache, once older than the deadline and no longer held by a download.
"""

import contextlib
import dataclasses
import http.client
import os
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from keras_alexnet import errors

try:
    import fcntl
except ImportError:  # not on Windows: stale files are then told by their age alone
    fcntl = None

MIRROR_ENV = "KERAS_ALEXNET_MIRROR"
TIMEOUT = 60  # seconds without an answer before a download is given up
# Seconds a whole download may take, however the server sends it: the public files are
# 244 MB, an hour at 68 kB/s.
DEADLINE = 3600
DEADLINE_ENV = "KERAS_ALEXNET_DOWNLOAD_DEADLINE"
# The most a download may bring when the catalog states no size: the public files are
# 244 MB (bvlc_alexnet.caffemodel 243,862,414 bytes).
MAX_BYTES = 2**30
PART_SUFFIX = ".part"  # a download's temporary file: .<file name>.<random>.part
_CHUNK = 1 << 20


class DownloadError(errors.InputError):
    """A named file that could not be fetched or verified; the message says what to do."""


def deadline():
    """Seconds a download may take: $KERAS_ALEXNET_DOWNLOAD_DEADLINE, else `DEADLINE`.

    Raises:
        errors.InputError: the variable is not a number of seconds above 0.
    """
    value = os.environ.get(DEADLINE_ENV)
    if not value:
        return DEADLINE
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise errors.InputError(
            f"{DEADLINE_ENV}={value!r}: not a number of seconds above 0 (the most a "
            f"download may take; default {DEADLINE})"
        )
    return seconds


def cache_dir():
    """The folder of cached files: $KERAS_HOME/models, else ~/.keras/models (as Keras')."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models")


def url_of(entry):
    """Where an entry is fetched from: the mirror's base URL + the file name, or the
    publisher's URL."""
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        return f"{mirror.rstrip('/')}/{entry.file_name}"
    return entry.url


def failure(entry, problem, tried):
    """The one message of a failed fetch or check: what was tried, what went wrong, the
    expected hash and the two ways on."""
    return (
        f"{entry.name} ({entry.file_name}): {problem}\n"
        f"  tried:    {tried}\n"
        f"  expected: {entry.stated_hash()}\n"
        "  Nothing was cached. Two ways on:\n"
        f"  - download {entry.file_name} by other means (from {entry.url}), then\n"
        f"    python -m keras_alexnet.pretrained --file={entry.name}=PATH\n"
        f"  - or set {MIRROR_ENV} to the base URL of a server holding {entry.file_name}"
    )


def file_hash(entry, path):
    """The hex digest of a file, of the entry's hash algorithm."""
    digest = entry.new_hash()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_hash(entry, hex_digest, size, tried):
    """Raises `DownloadError` unless a file's digest and size are the entry's."""
    if entry.size is not None and size != entry.size:
        raise DownloadError(
            failure(entry, f"the file has {size:,} bytes, not the {entry.size:,} expected", tried)
        )
    if not entry.hash_matches(hex_digest):
        raise DownloadError(
            failure(
                entry,
                f"the file's hash does not match: {entry.hash_algorithm} {hex_digest}",
                tried,
            )
        )


def download(entry, destination, progress=True, timeout=TIMEOUT, seconds=None, max_bytes=None):
    """Fetches an entry's file to `destination`, verified, atomically.

    Args:
        entry: a `catalog.Entry`.
        destination: the cached file's path; replaced only by a verified file.
        progress: show a progress line on stderr.
        timeout: seconds without an answer before giving up.
        seconds: the most the whole download may take (default: `deadline()`).
        max_bytes: the most it may bring (default: the entry's size, else `MAX_BYTES`).

    Raises:
        DownloadError: no network, a refused connection, an HTTP or TLS error, a
            truncated transfer, the deadline passed, more bytes than the limit, SIGTERM
            (under a handler of the caller's; else the process ends as SIGTERM ends it)
            or a hash mismatch; nothing is left behind.
    """
    url = url_of(entry)
    seconds = deadline() if seconds is None else seconds
    if max_bytes is None:
        max_bytes = entry.size if entry.size is not None else MAX_BYTES
    folder = os.path.dirname(os.path.abspath(destination))
    os.makedirs(folder, exist_ok=True)
    clean_stale(folder, seconds)
    fd, temp = tempfile.mkstemp(prefix=f".{entry.file_name}.", suffix=PART_SUFFIX, dir=folder)
    try:
        with os.fdopen(fd, "wb") as out, _removed_on_sigterm(entry, url, temp):
            _hold(out)
            limits = _Limits(timeout, seconds, max_bytes, entry.size is not None)
            digest, size = _fetch(entry, url, out, progress, limits)
        check_hash(entry, digest, size, url)
        os.replace(temp, destination)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


def clean_stale(folder, seconds=None):
    """Removes the temporary files of downloads that ended without removing them (a
    process killed by SIGKILL, a machine that lost power): those older than the deadline
    (`seconds`, default `deadline()`) that no running download holds.

    Returns:
        The paths removed.
    """
    seconds = deadline() if seconds is None else seconds
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for name in names:
        path = os.path.join(folder, name)
        if not (name.startswith(".") and name.endswith(PART_SUFFIX)):
            continue
        try:
            if time.time() - os.path.getmtime(path) <= seconds or _held(path):
                continue
            os.remove(path)
        except OSError:  # gone meanwhile, or not ours to remove
            continue
        removed.append(path)
    return removed


def _hold(out):
    """Locks a download's file while it downloads: not stale (`clean_stale`)."""
    if fcntl is not None:
        try:
            fcntl.flock(out.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a file system without locks: its age alone tells then
            pass


def _held(path):
    """Whether a running download holds the file (its lock, `download`)."""
    if fcntl is None:
        return False
    with open(path, "rb") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return False


class _Terminated(BaseException):
    """SIGTERM arrived during a download (a BaseException, as KeyboardInterrupt is: it
    unwinds through the download's `except Exception`, removing its file on the way)."""


@contextlib.contextmanager
def _removed_on_sigterm(entry, url, temp):
    """While the block runs, SIGTERM removes `temp` as Ctrl-C does, then does what it
    did before: ends the process as SIGTERM's default does, or runs the handler that was
    installed (and the download fails with its message). Only in the main thread (where
    Python runs signal handlers), and not where SIGTERM is ignored."""
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or previous in (
        signal.SIG_IGN,
        None,  # installed from outside Python: left alone
    ):
        yield
        return

    def terminated(signum, frame):
        raise _Terminated(signum, frame)

    signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    except _Terminated as stop:
        signal.signal(signal.SIGTERM, previous)
        if os.path.exists(temp):
            os.remove(temp)
        problem = "the download was stopped by SIGTERM; its partial file is removed"
        if callable(previous):
            previous(*stop.args)
            raise DownloadError(failure(entry, problem, url)) from None
        print(f"error: {entry.name}: {problem} (tried: {url})", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)  # the default action: the process ends
        raise DownloadError(failure(entry, problem, url)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def add_file(entry, path, destination):
    """Copies a file the user downloaded into the cache, once its hash is the entry's.

    Raises:
        DownloadError: the file is missing or is not the entry's (its hash differs).
    """
    if not os.path.isfile(path):
        raise DownloadError(failure(entry, "no such file", path))
    check_hash(entry, file_hash(entry, path), os.path.getsize(path), path)
    folder = os.path.dirname(os.path.abspath(destination))
    os.makedirs(folder, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{entry.file_name}.", suffix=".part", dir=folder)
    os.close(fd)
    try:
        shutil.copyfile(path, temp)
        # The copy is what gets cached: check it, not only its source.
        check_hash(entry, file_hash(entry, temp), os.path.getsize(temp), path)
        os.replace(temp, destination)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


@dataclasses.dataclass(frozen=True)
class _Limits:
    """A download's limits: `timeout` per read, `seconds` in all, `max_bytes` (`stated`:
    the catalog's size, else the ceiling)."""

    timeout: float
    seconds: float
    max_bytes: int
    stated: bool

    def too_many(self, count, verb):
        if self.stated:
            limit = f"the file's {self.max_bytes:,} in the catalog"
        else:
            limit = f"the {self.max_bytes:,} a download may bring (downloads.MAX_BYTES)"
        return f"the server {verb} {count:,} bytes, more than {limit}"


class _Deadline:
    """Ends a download's connections when its time is up: a server that sends a byte
    every few seconds never lets a read time out, so the sockets are shut down from a
    timer thread, which wakes the read that waits on them."""

    def __init__(self, seconds):
        self.expired = False
        self._sockets = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self._timer.cancel()

    def _expire(self):
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)

    def watch(self, sock):
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shut(sock)

    def opener(self):
        """A urllib opener whose HTTP and HTTPS connections this deadline watches."""
        watched = self

        def watching(base):
            class Connection(base):
                def connect(self):
                    super().connect()
                    watched.watch(self.sock)

            return Connection

        class HTTPHandler(urllib.request.HTTPHandler):
            def http_open(self, req):
                return self.do_open(watching(http.client.HTTPConnection), req)

        class HTTPSHandler(urllib.request.HTTPSHandler):
            def https_open(self, req):
                connection = watching(http.client.HTTPSConnection)
                return self.do_open(connection, req, context=self._context)

        return urllib.request.build_opener(HTTPHandler, HTTPSHandler)


def _shut(sock):
    try:  # the plain socket's shutdown, also under TLS: wakes a read blocked on it
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def _fetch(entry, url, out, progress, limits):
    """Streams url into out; (hex digest, bytes received). Every failure -> DownloadError."""
    digest = entry.new_hash()
    received = 0
    length = None
    shown = _Progress(entry.file_name, None, progress)
    with _Deadline(limits.seconds) as watch, contextlib.closing(shown):
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "keras-alexnet"})
            with watch.opener().open(request, timeout=limits.timeout) as response:
                length = response.headers.get("Content-Length")
                length = int(length) if length and length.isdigit() else None
                if length is not None and length > limits.max_bytes:
                    problem = limits.too_many(length, "announces")
                    raise DownloadError(failure(entry, f"{problem}; not downloaded", url))
                shown.length = length
                for chunk in iter(lambda: response.read1(_CHUNK), b""):
                    if received + len(chunk) > limits.max_bytes:
                        problem = limits.too_many(received + len(chunk), "sent")
                        raise DownloadError(failure(entry, f"{problem}; stopped", url))
                    digest.update(chunk)
                    out.write(chunk)
                    received += len(chunk)
                    shown.update(received)
                shown.done(received)
        except urllib.error.HTTPError as error:
            problem = f"the server answered HTTP {error.code} {error.reason}"
            raise DownloadError(failure(entry, problem, url)) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as error:
            if isinstance(error, DownloadError):
                raise
            if not watch.expired:
                problem = _problem(error, received, limits.timeout)
                raise DownloadError(failure(entry, problem, url)) from None
    if watch.expired:
        problem = (
            f"the download took longer than its deadline of {limits.seconds:g} s "
            f"({DEADLINE_ENV}; {received:,} bytes received); given up"
        )
        raise DownloadError(failure(entry, problem, url))
    if length is not None and received != length:
        problem = f"the transfer stopped after {received:,} of {length:,} bytes"
        raise DownloadError(failure(entry, problem, url))
    return digest.hexdigest(), received


def _problem(error, received, timeout=TIMEOUT):
    """What went wrong, in words, for the errors urllib raises."""
    reason = getattr(error, "reason", error)
    if isinstance(reason, ssl.SSLError):
        return f"the TLS connection failed ({reason}); a proxy or an old certificate store?"
    if isinstance(reason, ConnectionRefusedError):
        return "the connection was refused (no server there, or a firewall)"
    if isinstance(reason, socket.gaierror):
        return f"the host name could not be resolved (no network?): {reason}"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout:g} seconds"
    if isinstance(error, http.client.IncompleteRead) or received:
        return f"the transfer stopped after {received:,} bytes ({error})"
    if isinstance(error, ValueError):
        return f"not a URL that can be fetched ({error})"
    return f"the download failed: {reason}"


class _Progress:
    """One line on stderr, rewritten at most once a second: MB received, and the %."""

    def __init__(self, file_name, length, shown):
        self.file_name, self.length, self.shown = file_name, length, shown
        self.last = time.monotonic()  # the first line after a second, then the last
        self.open = False  # a line printed and not yet ended

    def update(self, received, final=False):
        now = time.monotonic()
        if not self.shown or (now - self.last < 1.0 and not final):
            return
        self.last = now
        total = f" of {self.length / 1e6:.1f}" if self.length else ""
        percent = f" ({received / self.length:.0%})" if self.length else ""
        line = f"\rDownloading {self.file_name}: {received / 1e6:.1f}{total} MB{percent}"
        print(line, end="\n" if final else "", file=sys.stderr, flush=True)
        self.open = not final

    def done(self, received):
        self.update(received, final=True)

    def close(self):
        """Ends a line left open by a download that failed, before its message."""
        if self.open:
            print(file=sys.stderr, flush=True)
            self.open = False
