"""A publisher of pretrained files on 127.0.0.1, and a test-only table of names for it.

`Server` serves files the tests write (tiny caffemodels with the real file's layout), the
way the publishers do, and can misbehave as networks do: a 404, a transfer cut short. The
package finds it through KERAS_ALEXNET_MIRROR. It can also misbehave as a hostile or
broken mirror does: a byte at a time, headers that never end, a body that never ends, a
Content-Length larger than any file. `entry()` makes a `catalog.Entry` for a
written file (its real sha1); `ENTRIES_ENV` hands the test entries to a fresh process
(`fresh_process` registers them, as it registers the tiny variant).
"""

import dataclasses
import hashlib
import http.server
import json
import os
import threading

from keras_alexnet.weights import catalog

ENTRIES_ENV = "KERAS_ALEXNET_TEST_ENTRIES"
# What the test entries name as their publisher: refused at once, and never a real host.
PUBLISHER = "http://127.0.0.1:9/publisher"


class Server:
    """An HTTP server on 127.0.0.1 in a thread, serving `files` {file name: bytes}.

    Attributes:
        files: what it serves; any other path is a 404.
        truncate: file names whose transfer stops halfway (the full Content-Length is
            announced, then the connection is closed).
        barrier: if set, a `threading.Barrier` each request for a served file waits at
            before answering (so that two clients are seen downloading at the same time).
        trickle: {file name: seconds}: its body is sent one byte every so many seconds.
        slow_headers: {file name: seconds}: a header line that never ends, one byte every
            so many seconds.
        endless: file names whose body never ends (zeros, no Content-Length).
        announce: {file name: n}: the Content-Length sent for it instead of its size.
        requests: the paths asked for, in order.
    """

    def __init__(self):
        self.files, self.truncate, self.barrier, self.requests = {}, set(), None, []
        self.trickle, self.slow_headers, self.endless, self.announce = {}, {}, set(), {}
        self.stopping = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                try:
                    self.answer()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up

            def answer(self):
                name = self.path.lstrip("/")
                server.requests.append(name)
                if server.barrier is not None and name in server.files:
                    server.barrier.wait()
                if name not in server.files:
                    self.send_error(404, "Not Found")
                    return
                data = server.files[name]
                self.send_response(200)
                if name in server.slow_headers:
                    self.end_headers_slowly(server.slow_headers[name])
                    return
                if name not in server.endless:
                    self.send_header("Content-Length", str(server.announce.get(name, len(data))))
                self.end_headers()
                if name in server.endless:
                    while not server.stopping.is_set():
                        self.wfile.write(bytes(1 << 16))
                    return
                if name in server.trickle:
                    for byte in data:
                        if server.stopping.wait(server.trickle[name]):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    return
                if name in server.truncate:
                    data = data[: len(data) // 2]
                for start in range(0, len(data), 1 << 16):
                    self.wfile.write(data[start : start + (1 << 16)])

            def end_headers_slowly(self, seconds):
                self.flush_headers()
                self.wfile.write(b"X-Slow: ")
                while not server.stopping.wait(seconds):
                    self.wfile.write(b"a")
                    self.wfile.flush()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self):
        """Stops serving and closes the port: a client is then refused."""
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def entry(name, data, variant, fmt="caffemodel", **changes):
    """A test-only `catalog.Entry` for a file's bytes: its sha1, a publisher on 127.0.0.1."""
    file_name = f"{name}.{'caffemodel' if fmt == 'caffemodel' else 'pth'}"
    fields = dict(
        name=name,
        aliases=(f"{name}_alias",),
        file_name=file_name,
        url=f"{PUBLISHER}/{file_name}",
        hash_algorithm="sha1",
        file_hash=hashlib.sha1(data).hexdigest(),
        hash_is_prefix=False,
        size=len(data),
        size_note=f"{len(data)} bytes",
        format=fmt,
        variant=variant,
        normalization="as the caffemodel's",
        accuracy="none (random weights)",
        license="test file",
        source="tests/weight_server.py",
    )
    fields.update(changes)
    return catalog.Entry(**fields)


def environment(entries):
    """{ENTRIES_ENV: the entries as JSON}, for a fresh process's environment."""
    return {ENTRIES_ENV: json.dumps([dataclasses.asdict(e) for e in entries])}


def register_from_environment():
    """Adds the entries of ENTRIES_ENV to the catalog (in a fresh process)."""
    for fields in json.loads(os.environ.get(ENTRIES_ENV, "[]")):
        fields["aliases"] = tuple(fields["aliases"])
        catalog.ENTRIES.setdefault(fields["name"], catalog.Entry(**fields))
