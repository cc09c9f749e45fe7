"""The servers the package starts say where they listen, and say it truly.

TensorFlow's tf.data service dispatcher and worker (`data_service`) and the gRPC server of
a `--strategy=multi_worker` worker (what `launch` starts) listen on every interface,
without authentication; the installed TensorFlow offers no way to bind loopback only
(docs/security.md). So the tools' first lines say so, `--host` is only the address a worker
announces, and the kernel's own table of listening sockets (/proc/net/tcp, tcp6) and a
connection to one of this machine's own non-loopback addresses are the references. No
test here contacts a host other than 127.0.0.1 and this machine's own addresses.
"""

import io
import json
import os
import queue
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from absl import flags

from keras_alexnet import data_service as data_service_tool
from keras_alexnet.training import launcher

LOCALHOST = "127.0.0.1"
EVERY_INTERFACE = (
    "of every interface (IPv4 and IPv6), unauthenticated "
    "(whoever reaches it runs code as this user: docs/security.md)"
)
# What `train --strategy=multi_worker` does with the TF_CONFIG `launch` gives it: start
# TensorFlow's server for its task (and wait to be killed).
MULTI_WORKER = textwrap.dedent("""
    import json, os, sys, time
    os.environ["TF_CONFIG"] = sys.argv[1]
    import tensorflow as tf
    tf.distribute.MultiWorkerMirroredStrategy()
    print("strategy ready", flush=True)
    time.sleep(600)
""")


class Server:
    """A server process and the lines it prints (stdout and stderr together)."""

    def __init__(self, command):
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.lines = queue.Queue()
        self.output = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern, seconds=300):
        """The first line that matches `pattern` (a regex search)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no line matching {pattern!r} in {seconds} s: {self.output}")
            assert line is not None, f"exited {self.process.wait()}: {self.output}"
            self.output.append(line)
            if re.search(pattern, line):
                return line

    def stop(self):
        self.process.kill()
        self.process.wait()


@pytest.fixture(scope="module")
def servers():
    """A dispatcher, a worker started with --host=127.0.0.1 and a one-worker
    MultiWorkerMirroredStrategy cluster with the launcher's TF_CONFIG, started together.

    Yields {"dispatcher" | "worker" | "multi_worker": (port, the line that says it serves)}.
    """
    dispatcher_port, worker_port, cluster_port = launcher.free_ports(3, host="")
    address = f"{LOCALHOST}:{dispatcher_port}"
    tool = [sys.executable, "-m", "keras_alexnet.data_service"]
    (config,) = launcher.cluster_configs(1, [cluster_port])
    started = {
        "dispatcher": Server([*tool, "--dispatcher", f"--port={dispatcher_port}"]),
        "worker": Server(
            [
                *tool,
                "--worker",
                f"--dispatcher_address={address}",
                f"--port={worker_port}",
                f"--host={LOCALHOST}",
            ]
        ),
        "multi_worker": Server([sys.executable, "-c", MULTI_WORKER, json.dumps(config)]),
    }
    try:
        yield {
            "dispatcher": (
                dispatcher_port,
                started["dispatcher"].wait_for(r"^tf.data service dispatcher listening"),
            ),
            "worker": (
                worker_port,
                started["worker"].wait_for(r"^tf.data service worker listening"),
            ),
            "multi_worker": (cluster_port, started["multi_worker"].wait_for(r"^strategy ready$")),
        }
    finally:
        for server in started.values():
            server.stop()


def test_data_service_says_its_port_listens_on_every_interface_and_host_is_only_announced(
    servers,
):
    port, line = servers["dispatcher"]
    assert line.startswith(
        f"tf.data service dispatcher listening on port {port} {EVERY_INTERFACE}: "
        f"workers --dispatcher_address="
    ), line
    port, line = servers["worker"]
    assert line == (
        f"tf.data service worker listening on port {port} {EVERY_INTERFACE}, announced as "
        f"{LOCALHOST}:{port}, for the dispatcher at {LOCALHOST}:{servers['dispatcher'][0]}"
    ), line
    # --help says the same of --host.
    flag_values = flags.FlagValues()
    data_service_tool.define_flags(flag_values)
    assert "does not choose where the worker listens" in flag_values["host"].help
    assert "every interface" in flag_values["host"].help


@pytest.mark.parametrize("name", ["dispatcher", "worker", "multi_worker"])
def test_the_servers_listen_on_the_wildcard_address_not_loopback(servers, name):
    # The kernel's table: a dual-stack socket on "::" (or "0.0.0.0"), whatever --host and
    # TF_CONFIG's 127.0.0.1 say.
    port, _ = servers[name]
    addresses = listening_addresses(port)
    assert addresses and addresses <= {"::", "0.0.0.0"}, (name, port, addresses)


def test_the_servers_answer_on_this_machines_other_addresses(servers):
    addresses = own_addresses()
    if not addresses:
        pytest.skip("this machine has no non-loopback address to try the ports on")
    for port, _ in servers.values():
        for address in addresses:
            with socket.create_connection((address, port), timeout=10):
                pass  # connected: reachable from outside the loopback interface


def test_launch_says_first_which_ports_listen_on_every_interface(tmp_path):
    # Stand-in workers print the TF_CONFIG they were given; the launcher's first line
    # names their ports, before any worker starts.
    worker = tmp_path / "worker.py"
    worker.write_text(
        "import json, os\n"
        "config = json.loads(os.environ['TF_CONFIG'])\n"
        "print(config['cluster']['worker'][config['task']['index']])\n"
    )
    for port_base in (0, launcher.free_ports(1)[0]):
        out, err = io.StringIO(), io.StringIO()
        status = launcher.launch(
            2,
            [],
            port_base=port_base,
            command=[sys.executable, str(worker)],
            output=out,
            errors=err,
        )
        assert status == 0, err.getvalue()
        printed = re.findall(rf"^\[worker (\d)\] {LOCALHOST}:(\d+)$", out.getvalue(), re.M)
        ports = [int(port) for _, port in sorted(printed)]
        assert len(ports) == 2 and (not port_base or ports == [port_base, port_base + 1])
        first = err.getvalue().splitlines()[0]
        assert first == (
            f"[launch] the workers' TensorFlow servers will listen on ports "
            f"{ports[0]}, {ports[1]} of every interface (IPv4 and IPv6), not only 127.0.0.1, "
            "unauthenticated (whoever reaches them runs code as this user: docs/security.md)"
        ), err.getvalue()


def listening_addresses(port):
    """The local addresses of this machine's TCP sockets listening on `port` ("::" and
    "0.0.0.0" for every interface), from the kernel's tables."""
    if not os.path.exists("/proc/net/tcp"):
        pytest.skip("no /proc/net/tcp to read the listening sockets from (not Linux)")
    found = set()
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        if not os.path.exists(f"/proc/net/{name}"):
            continue
        with open(f"/proc/net/{name}") as table:
            next(table)
            for row in table:
                fields = row.split()
                address, hex_port = fields[1].split(":")
                if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.add(_address(address, family))
    return found


def _address(hex_address, family):
    """An address of /proc/net/tcp{,6}: 32-bit words, each in this machine's byte order."""
    raw = bytes.fromhex(hex_address)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(family, raw)


def own_addresses():
    """This machine's own non-loopback addresses: IPv4 (the local table's /32 host
    addresses) and global IPv6 ones; [] where the kernel's tables are not there."""
    found = []
    try:
        with open("/proc/net/fib_trie") as trie:
            lines = trie.read().splitlines()
    except OSError:
        lines = []
    for previous, line in zip(lines, lines[1:]):
        if line.strip() == "/32 host LOCAL":
            address = previous.split()[-1]
            if not address.startswith("127."):
                found.append(address)
    try:
        with open("/proc/net/if_inet6") as table:
            rows = [row.split() for row in table]
    except OSError:
        rows = []
    for row in rows:
        if row[3] == "00":  # global scope: not loopback (10) or link-local (20)
            found.append(socket.inet_ntop(socket.AF_INET6, bytes.fromhex(row[0])))
    return list(dict.fromkeys(found))
