"""Fetching named files from a server on 127.0.0.1: verified, atomic, and one clear message
for each way a download fails, with nothing left in the cache."""

import dataclasses
import fcntl
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import tiny
import weight_server
from caffe_files import random_weights
from caffe_files import write_caffemodel

from keras_alexnet import errors
from keras_alexnet.weights import cache
from keras_alexnet.weights import catalog
from keras_alexnet.weights import downloads


@pytest.fixture(scope="module")
def tiny_bytes(tmp_path_factory):
    """A tiny-layout .caffemodel of 1000 classes, as bytes."""
    path = tmp_path_factory.mktemp("publisher") / "tiny.caffemodel"
    write_caffemodel(path, random_weights(tiny.caffe_shapes(), seed=3))
    return path.read_bytes()


@pytest.fixture
def server(monkeypatch, tiny_bytes):
    """A server holding the tiny file as `tiny_alexnet.caffemodel`, the mirror pointing at
    it, and the name `tiny_alexnet` in the catalog."""
    tiny.register()
    served = weight_server.Server()
    entry = weight_server.entry("tiny_alexnet", tiny_bytes, "tiny")
    served.files[entry.file_name] = tiny_bytes
    monkeypatch.setitem(catalog.ENTRIES, entry.name, entry)
    monkeypatch.setenv(downloads.MIRROR_ENV, served.url)
    yield served
    served.stop()


def cached_files():
    folder = downloads.cache_dir()
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def test_download_is_verified_and_cached(server, tiny_bytes, capsys):
    path = cache.fetch("tiny_alexnet")
    assert path == os.path.join(os.environ["KERAS_HOME"], "models", "tiny_alexnet.caffemodel")
    with open(path, "rb") as f:
        assert hashlib.sha1(f.read()).hexdigest() == hashlib.sha1(tiny_bytes).hexdigest()
    assert cached_files() == ["tiny_alexnet.caffemodel"]  # no temporary file left
    assert server.requests == ["tiny_alexnet.caffemodel"]
    assert "Downloading tiny_alexnet.caffemodel" in capsys.readouterr().err
    # Cached: not fetched again.
    assert cache.fetch("tiny_alexnet") == path
    assert server.requests == ["tiny_alexnet.caffemodel"]


def refused_url():
    """A 127.0.0.1 URL where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    "failure, problem",
    [
        ("wrong file", "the file's hash does not match: sha1 "),
        ("truncated", "the transfer stopped after "),
        ("404", "the server answered HTTP 404 Not Found"),
        ("no server", "the connection was refused"),
    ],
)
def test_a_failed_download_says_what_to_do_and_caches_nothing(
    server, monkeypatch, tiny_bytes, failure, problem
):
    entry = catalog.entry("tiny_alexnet")
    url = f"{server.url}/{entry.file_name}"
    if failure == "wrong file":
        server.files[entry.file_name] = tiny_bytes[:-1] + b"\x00"
        # The size matches: only the hash tells the files apart.
    elif failure == "truncated":
        server.truncate.add(entry.file_name)
    elif failure == "404":
        del server.files[entry.file_name]
    else:
        url = f"{refused_url()}/{entry.file_name}"
        monkeypatch.setenv(downloads.MIRROR_ENV, url.rsplit("/", 1)[0] + "/")
    with pytest.raises(downloads.DownloadError) as raised:
        cache.model_file("tiny_alexnet_alias")
    message = str(raised.value)
    assert problem in message, message
    assert f"tried:    {url}\n" in message
    assert f"expected: sha1 {entry.file_hash}" in message
    assert "python -m keras_alexnet.pretrained --file=tiny_alexnet=PATH" in message
    assert f"set {downloads.MIRROR_ENV} to the base URL" in message
    # One message: no chained urllib or socket traceback under it.
    error = raised.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    assert cached_files() == []


def test_without_a_mirror_the_publishers_url_is_tried(server, monkeypatch):
    monkeypatch.delenv(downloads.MIRROR_ENV)
    with pytest.raises(downloads.DownloadError, match="tried:    http://127.0.0.1:9/publisher/"):
        cache.fetch("tiny_alexnet")
    assert server.requests == []


def test_a_cached_file_that_no_longer_matches_is_fetched_again(server, tiny_bytes):
    path = cache.fetch("tiny_alexnet")
    with open(path, "r+b") as f:
        f.write(b"\xff")
    assert cache.fetch("tiny_alexnet") == path
    with open(path, "rb") as f:
        assert f.read() == tiny_bytes
    assert len(server.requests) == 2


def test_file_flag_checks_the_hash(server, tiny_bytes, tmp_path):
    server.stop = lambda: None  # keep it for the teardown; the test must not use it
    wrong = tmp_path / "wrong.caffemodel"
    wrong.write_bytes(b"not the file")
    with pytest.raises(downloads.DownloadError, match="the file has 12 bytes") as raised:
        cache.add_file("tiny_alexnet", str(wrong))
    assert f"tried:    {wrong}" in str(raised.value)
    assert cached_files() == []
    same_size = tmp_path / "same_size.caffemodel"
    same_size.write_bytes(bytes(len(tiny_bytes)))
    with pytest.raises(downloads.DownloadError, match="hash does not match"):
        cache.add_file("tiny_alexnet", str(same_size))
    assert cached_files() == []
    right = tmp_path / "right.caffemodel"
    right.write_bytes(tiny_bytes)
    assert cache.add_file("tiny_alexnet", str(right)).endswith("tiny_alexnet.keras")
    assert cached_files() == ["tiny_alexnet.caffemodel", "tiny_alexnet.keras"]
    assert server.requests == []


def test_without_pytorch_the_message_says_what_to_install_before_downloading(
    server, monkeypatch, tiny_bytes
):
    entry = weight_server.entry("tiny_torch", tiny_bytes, "tiny", fmt="torch")
    server.files[entry.file_name] = tiny_bytes
    monkeypatch.setitem(catalog.ENTRIES, entry.name, entry)
    monkeypatch.setattr(cache, "torch_installed", lambda: False)
    with pytest.raises(downloads.DownloadError, match=r"pip install keras-alexnet\[torch\]"):
        cache.model_file("tiny_torch")
    assert server.requests == [] and cached_files() == []


def test_a_hash_prefix_is_checked_as_a_prefix():
    entry = catalog.entry("IMAGENET1K_V1")
    assert entry.name == "torchvision_alexnet" and entry.hash_is_prefix
    # torch.hub's rule: the file name's digits start the file's sha256.
    assert entry.file_name == f"alexnet-owt-{entry.file_hash}.pth"
    assert entry.hash_matches(entry.file_hash + "0" * 56)
    assert not entry.hash_matches("0" + entry.file_hash + "0" * 55)
    assert catalog.entry("imagenet").name == "bvlc_alexnet"
    assert not catalog.is_name("bvlc_alexnet.caffemodel") and not catalog.is_name(None)
    with pytest.raises(ValueError, match="no pretrained weights are named 'vgg16'; the names"):
        catalog.entry("vgg16")


# ------------------------------------------------------------------------------------------
# A mirror that never finishes, sends too much, or a download stopped by SIGTERM
# ------------------------------------------------------------------------------------------


def part_files():
    return [name for name in cached_files() if name.endswith(downloads.PART_SUFFIX)]


@pytest.mark.parametrize("kind", ["trickle", "slow_headers"])
def test_a_server_too_slow_to_finish_is_given_up_at_the_deadline(server, monkeypatch, kind):
    """A byte every 0.05 s never lets the 60 s read timeout pass: the deadline ends it,
    whether the body or the headers trickle."""
    entry = catalog.entry("tiny_alexnet")
    getattr(server, kind)[entry.file_name] = 0.05
    monkeypatch.setenv(downloads.DEADLINE_ENV, "1.5")
    start = time.monotonic()
    with pytest.raises(downloads.DownloadError) as raised:
        cache.fetch("tiny_alexnet")
    took = time.monotonic() - start
    message = str(raised.value)
    assert "the download took longer than its deadline of 1.5 s" in message, message
    assert f"tried:    {server.url}/{entry.file_name}\n" in message
    assert 1.5 <= took < 5, took
    assert cached_files() == []


@pytest.mark.parametrize("kind", ["endless", "announced", "no stated size"])
def test_a_download_over_its_size_limit_is_stopped(server, monkeypatch, tiny_bytes, kind):
    entry = catalog.entry("tiny_alexnet")
    size = f"more than the file's {len(tiny_bytes):,} in the catalog"
    if kind == "announced":
        server.announce[entry.file_name] = 10**12
        problem = f"the server announces 1,000,000,000,000 bytes, {size}; not downloaded"
    elif kind == "endless":
        server.endless.add(entry.file_name)
        problem = f"bytes, {size}; stopped"
    else:
        monkeypatch.setitem(catalog.ENTRIES, entry.name, dataclasses.replace(entry, size=None))
        monkeypatch.setattr(downloads, "MAX_BYTES", 3 << 20)
        server.endless.add(entry.file_name)
        problem = (
            "bytes, more than the 3,145,728 a download may bring (downloads.MAX_BYTES); stopped"
        )
    start = time.monotonic()
    with pytest.raises(downloads.DownloadError) as raised:
        cache.fetch("tiny_alexnet")
    assert problem in str(raised.value).splitlines()[0], str(raised.value)
    assert time.monotonic() - start < 5
    assert cached_files() == []


def terminate_when_downloading(pid):
    """Sends SIGTERM to `pid` once a download's partial file is in the cache."""
    give_up = time.monotonic() + 120
    while not part_files() and time.monotonic() < give_up:
        time.sleep(0.05)
    time.sleep(0.2)
    os.kill(pid, signal.SIGTERM)


def test_sigterm_removes_the_partial_file_and_ends_the_process(server, tiny_bytes):
    entry = catalog.entry("tiny_alexnet")
    server.trickle[entry.file_name] = 0.05
    script = (
        "import weight_server; weight_server.register_from_environment()\n"
        "from keras_alexnet.weights import cache\n"
        "cache.fetch('tiny_alexnet')\n"
    )
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, **weight_server.environment([entry]))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [tests, env.get("PYTHONPATH")]))
    child = subprocess.Popen(
        [sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        terminate_when_downloading(child.pid)
        _, stderr = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == -signal.SIGTERM, stderr[-2000:]  # as SIGTERM's default
    assert stderr.splitlines()[-1] == (
        "error: tiny_alexnet: the download was stopped by SIGTERM; its partial file is "
        f"removed (tried: {server.url}/{entry.file_name})"
    )
    assert cached_files() == []


def test_sigterm_under_a_handler_removes_the_partial_file_and_runs_the_handler(server):
    entry = catalog.entry("tiny_alexnet")
    server.trickle[entry.file_name] = 0.05
    seen = []

    def handler(signum, frame):
        seen.append(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        threading.Thread(target=terminate_when_downloading, args=(os.getpid(),)).start()
        with pytest.raises(downloads.DownloadError, match="stopped by SIGTERM"):
            cache.fetch("tiny_alexnet")
        assert signal.getsignal(signal.SIGTERM) is handler  # put back
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == [signal.SIGTERM]
    assert cached_files() == []


def test_stale_partial_files_are_removed_at_the_next_use(server, monkeypatch):
    monkeypatch.setenv(downloads.DEADLINE_ENV, "100")
    folder = downloads.cache_dir()
    os.makedirs(folder)
    names = {
        kind: f".tiny_alexnet.caffemodel.{kind}{downloads.PART_SUFFIX}"
        for kind in ("stale", "recent", "held")
    }
    for kind, name in names.items():
        path = os.path.join(folder, name)
        with open(path, "wb") as f:
            f.write(b"part")
        if kind != "recent":
            os.utime(path, (time.time() - 101, time.time() - 101))
    with open(os.path.join(folder, names["held"]), "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running download
        cache.fetch("tiny_alexnet")
    assert part_files() == sorted([names["held"], names["recent"]])
    assert "tiny_alexnet.caffemodel" in cached_files()


def test_a_deadline_that_is_not_a_number_of_seconds_is_refused(monkeypatch):
    for value in ("soon", "0", "-5", "inf", "nan"):
        monkeypatch.setenv(downloads.DEADLINE_ENV, value)
        with pytest.raises(errors.InputError, match=f"{downloads.DEADLINE_ENV}='{value}'"):
            downloads.deadline()
    monkeypatch.setenv(downloads.DEADLINE_ENV, "2.5")
    assert downloads.deadline() == 2.5
