"""Input on other machines: a tf.data service cluster, and training batches read from it.

`python -m keras_alexnet.data_service` starts a dispatcher or a worker (`start_dispatcher`,
`start_worker`); `python -m keras_alexnet.train --data_service=grpc://HOST:5050` reads
its training batches from them (`distribute`).

The dispatcher and workers are TensorFlow's own (`tf.data.experimental.service`); each
process serves until it is killed. The trainer sends the graph of its training dataset to
the dispatcher, and the workers run it: decoding and augmentation move to their CPUs, and
the trainer only receives finished batches. The dataset names the image or record files
by path, so the workers must read them at the same paths (a shared or copied folder); the
training set's mean image and colour PCA travel in the graph as constants.

How the work is shared (`distribute`): dynamic sharding ("distributed_epoch"): the
dispatcher hands the splits of the dataset's source to whichever worker asks, each split
once, and the worker makes what follows from it on its own. With W workers each makes
about 1/W of the batches (the "parallel_epochs" mode would have every worker make every
batch: the pipeline is a function of the seed, so the trainer would get each batch W
times). The split depends on the source:

- Image folders: a step (`pipelines.train_dataset_by_step`). The source is the run's
  step numbers; a worker given a step makes its batch(es) from the epoch's order computed
  in the graph, the examples and augmentation the local pipeline gives that step.
- Prepared folders and TFDS datasets: a record file (`pipelines.train_dataset_by_file`).
  Their order cannot be computed per step, so the source is the stream of (epoch, file),
  each epoch's files permuted by (seed, epoch); a worker reads the files it is handed
  whole, a few at a time, shuffles their records in a buffer, and augments each record
  with the random choices of (seed, epoch, file, record).

A worker that joins takes splits from then on; a worker that dies takes the splits it was
making with it (a step's batches; or the unsent records of the files it was reading, up
to 16 at once and any it had taken ahead, and of its 1024-record shuffle buffer), and the
others go on. The splits never run out (epochs go on past the run's end), so the trainer
still gets every batch its loop counts, taking later ones for the lost ones.

Each input pipeline (one per trainer process) makes its own share, as without the service
(of every step, or the records of every file whose index is its id modulo the number of
pipelines), and its iterator makes a job of its own: no job name is shared, and no batch
or record goes to two pipelines.

Who can use the servers: anyone who reaches their ports. TensorFlow's dispatcher and
workers listen on every interface, IPv4 and IPv6 (they bind "0.0.0.0:PORT", which gRPC takes
for both wildcards), without authentication, and a worker runs whatever dataset graph a
client registers with the dispatcher, with this process's rights. The installed wheel
offers no way to narrow that: its only protocol is "grpc" with no credentials
("grpc+local" is refused: no credentials factory is registered for it), and neither config
names an address to bind (`worker_address`, the tool's --host, is only the address the
dispatcher gives the trainers). Keep them on a trusted network: docs/security.md.

What does not hold with the service: the batches come in the order the workers deliver
them, not in step order, so a run is not a function of its seed (`--deterministic` is
refused), and a resumed run restores the weights, optimizer and step exactly but then sees
roughly, not exactly, the examples the uninterrupted run would have seen (record files:
the stream starts again at the file of the epoch the step has reached, in proportion).
"""

import re
import socket

import tensorflow as tf

DEFAULT_PROTOCOL = "grpc"
# Where the dispatcher and the workers listen, for the first line the tool prints (see the
# module docstring).
LISTENS_ON = (
    "of every interface (IPv4 and IPv6), unauthenticated "
    "(whoever reaches it runs code as this user: docs/security.md)"
)
DISPATCHER_PORT = 5050  # the port of TensorFlow's examples
# How long `check_reachable` waits for the dispatcher to accept a connection: TensorFlow
# itself retries registering a dataset with an unreachable dispatcher for ever.
CONNECT_SECONDS = 10.0
_ADDRESS = re.compile(r"^(?:(?P<protocol>[a-z][a-z0-9+.-]*)://)?(?P<host>[^\s:/]+):(?P<port>\d+)$")


def parse_address(address, name="data_service"):
    """Splits a dispatcher address, "grpc://HOST:PORT" or "HOST:PORT".

    Args:
        address: the address.
        name: the flag or argument it came from, for the error message.

    Returns:
        (protocol, host, port): the protocol ("grpc" when not given), the host name or
        address and the port number.

    Raises:
        ValueError: not of that form, another protocol, or a port outside [1, 65535].
    """
    match = _ADDRESS.match(address) if isinstance(address, str) else None
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise ValueError(
            f"{name} must be grpc://HOST:PORT or HOST:PORT, with a port in [1, 65535]. "
            f"Received: {name}={address!r}"
        )
    protocol = match["protocol"] or DEFAULT_PROTOCOL
    if protocol != DEFAULT_PROTOCOL:
        raise ValueError(
            f"{name} must use the {DEFAULT_PROTOCOL} protocol, the tf.data service's. "
            f"Received: {name}={address!r}"
        )
    return protocol, match["host"], int(match["port"])


def service_target(address):
    """The "grpc://HOST:PORT" of a dispatcher address given with or without the protocol."""
    protocol, host, port = parse_address(address)
    return f"{protocol}://{host}:{port}"


def check_reachable(address, seconds=CONNECT_SECONDS):
    """Raises a ValueError unless a server accepts connections at the dispatcher's address.

    TensorFlow retries registering a dataset with a dispatcher it cannot reach for ever,
    silently, so a wrong address or a dispatcher not started would hang the run before its
    first step. This checks the port answers within `seconds` instead.

    Args:
        address: "grpc://HOST:PORT" or "HOST:PORT".
        seconds: how long to wait for the connection.
    """
    _, host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=seconds):
            pass
    except OSError as error:
        reason = "no answer" if isinstance(error, TimeoutError) else error.strerror or error
        raise ValueError(
            f"data_service: no tf.data dispatcher answers at {host}:{port} ({reason}; "
            f"waited up to {seconds:g} s). Start one there (python -m keras_alexnet.data_service "
            f"--dispatcher --port={port}) or give its address. Received: data_service={address!r}"
        ) from None


def distribute(dataset, address):
    """The dataset, made by the tf.data service's workers and read from them.

    Args:
        dataset: a dataset whose source can be split (see the module docstring), e.g.
            `pipelines.train_dataset_for_service`'s.
        address: the dispatcher, "grpc://HOST:PORT" or "HOST:PORT".

    Returns:
        A `tf.data.Dataset` of the same elements, in the order the workers deliver them.
    """
    return dataset.apply(
        tf.data.experimental.service.distribute(
            processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
            service=service_target(address),
        )
    )


def start_dispatcher(port=DISPATCHER_PORT, work_dir=None):
    """Starts a tf.data service dispatcher in this process.

    Args:
        port: the port to listen on, on every interface (IPv4 and IPv6); 0 for any free
            one.
        work_dir: None, or a folder where the dispatcher journals its state (fault-tolerant
            mode): a dispatcher restarted on the same folder and port takes its datasets
            and jobs up again, and the trainers and workers reconnect to it.

    Returns:
        The `tf.data.experimental.service.DispatchServer`, serving.
    """
    _check_port(port)
    if port:
        _free_port(port)
    config = tf.data.experimental.service.DispatcherConfig(
        port=port,
        work_dir=work_dir,
        fault_tolerant_mode=bool(work_dir),
    )
    return tf.data.experimental.service.DispatchServer(config)


def start_worker(dispatcher_address, port=0, host="localhost"):
    """Starts a tf.data service worker in this process; blocks until the dispatcher answers.

    Args:
        dispatcher_address: "grpc://HOST:PORT" or "HOST:PORT".
        port: the port to listen on, on every interface (IPv4 and IPv6); 0 for a free
            one, chosen here.
        host: the name or address the trainers reach this worker at (the dispatcher gives
            it to them). It does not choose where the worker listens.

    Returns:
        (the `tf.data.experimental.service.WorkerServer`, serving; its port).
    """
    _, dispatcher_host, dispatcher_port = parse_address(dispatcher_address, "dispatcher_address")
    _check_port(port)
    if not host or any(c.isspace() or c in ":/" for c in host):
        raise ValueError(f"host must be a host name or IPv4 address. Received: host={host!r}")
    port = _free_port(port)
    config = tf.data.experimental.service.WorkerConfig(
        dispatcher_address=f"{dispatcher_host}:{dispatcher_port}",
        worker_address=f"{host}:{port}",
        port=port,
    )
    return tf.data.experimental.service.WorkerServer(config), port


def _check_port(port):
    if not (isinstance(port, int) and 0 <= port <= 65535):
        raise ValueError(f"port must be in [0, 65535] (0: any free port). Received: port={port!r}")


def _free_port(port=0):
    """`port` if it is free (else a ValueError), or for 0 a free port.

    gRPC servers share a port with SO_REUSEPORT, so a second server on a taken port would
    start and take half of the first one's connections: a bind without it finds the port
    taken (SO_REUSEADDR lets a restarted server take its port back while the old
    connections linger).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError as error:
            raise ValueError(
                f"port {port} is taken ({error.strerror}): another server listens on it. "
                f"Received: port={port}"
            ) from None
        return s.getsockname()[1]
