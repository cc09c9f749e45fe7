"""Fetching a named file (`catalog`) into the Keras cache, verified, with the standard library.

The cache is where keras.applications keeps its weights: `$KERAS_HOME/models`, or
`~/.keras/models` without KERAS_HOME. `KERAS_ALEXNET_MIRROR=<base URL>` fetches the same
file names from another server, with the same hash check.

A download goes to a temporary name of its own (one per process) beside the cached file,
its hash computed on the way; only a file whose hash and length are right is renamed to
the cached name (`os.replace`, atomic). An interrupted, truncated or wrong download never
becomes the cached file, and two processes fetching at once each rename a whole, verified
file: one good file is left.
"""

import http.client
import os
import shutil
import socket
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.request

MIRROR_ENV = "KERAS_ALEXNET_MIRROR"
TIMEOUT = 60  # seconds without an answer before a download is given up
_CHUNK = 1 << 20


class DownloadError(ValueError):
    """A named file that could not be fetched or verified; the message says what to do."""


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


def download(entry, destination, progress=True, timeout=TIMEOUT):
    """Fetches an entry's file to `destination`, verified, atomically.

    Args:
        entry: a `catalog.Entry`.
        destination: the cached file's path; replaced only by a verified file.
        progress: show a progress line on stderr.
        timeout: seconds without an answer before giving up.

    Raises:
        DownloadError: no network, a refused connection, an HTTP or TLS error, a
            truncated transfer or a hash mismatch; nothing is left behind.
    """
    url = url_of(entry)
    folder = os.path.dirname(os.path.abspath(destination))
    os.makedirs(folder, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{entry.file_name}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            digest, size = _fetch(entry, url, out, progress, timeout)
        check_hash(entry, digest, size, url)
        os.replace(temp, destination)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


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


def _fetch(entry, url, out, progress, timeout):
    """Streams url into out; (hex digest, bytes received). Every failure -> DownloadError."""
    digest = entry.new_hash()
    received = 0
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "keras-alexnet"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            length = int(length) if length and length.isdigit() else None
            shown = _Progress(entry.file_name, length, progress)
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
                received += len(chunk)
                shown.update(received)
            shown.done(received)
    except urllib.error.HTTPError as error:
        problem = f"the server answered HTTP {error.code} {error.reason}"
        raise DownloadError(failure(entry, problem, url)) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as error:
        raise DownloadError(failure(entry, _problem(error, received), url)) from None
    if length is not None and received != length:
        problem = f"the transfer stopped after {received:,} of {length:,} bytes"
        raise DownloadError(failure(entry, problem, url))
    return digest.hexdigest(), received


def _problem(error, received):
    """What went wrong, in words, for the errors urllib raises."""
    reason = getattr(error, "reason", error)
    if isinstance(reason, ssl.SSLError):
        return f"the TLS connection failed ({reason}); a proxy or an old certificate store?"
    if isinstance(reason, ConnectionRefusedError):
        return "the connection was refused (no server there, or a firewall)"
    if isinstance(reason, socket.gaierror):
        return f"the host name could not be resolved (no network?): {reason}"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"no answer within {TIMEOUT} seconds"
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

    def update(self, received, final=False):
        now = time.monotonic()
        if not self.shown or (now - self.last < 1.0 and not final):
            return
        self.last = now
        total = f" of {self.length / 1e6:.1f}" if self.length else ""
        percent = f" ({received / self.length:.0%})" if self.length else ""
        line = f"\rDownloading {self.file_name}: {received / 1e6:.1f}{total} MB{percent}"
        print(line, end="\n" if final else "", file=sys.stderr, flush=True)

    def done(self, received):
        self.update(received, final=True)
