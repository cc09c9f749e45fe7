"""`tf.distribute` for the tools: creating the strategy, who is chief, running a step.

One device, MirroredStrategy (over GPUs, or over logical CPUs with `cpu_replicas` so that
data parallelism runs and is tested without GPUs) and MultiWorkerMirroredStrategy (the
cluster from TF_CONFIG or a SLURM job step, `training.cluster`) all run the same
per-replica steps through `run_and_sum`.
"""

import keras
import tensorflow as tf
from absl import flags

from keras_alexnet.training import config

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")


def make_strategy(name="auto", cpu_replicas=None, worker_timeout=600, cluster_resolver=None):
    """Creates the distribution strategy; call it before any other TensorFlow work.

    Args:
        name: "auto" (MirroredStrategy over all GPUs when there are several, or over
            `cpu_replicas` logical CPUs; else one device), "one_device", "mirrored" or
            "multi_worker" (the cluster comes from `cluster_resolver`, by default from
            the TF_CONFIG environment variable; `training.cluster.find` chooses).
        cpu_replicas: split the CPU into this many logical devices and mirror over them,
            so data parallelism runs (and is tested) without GPUs.
        worker_timeout: with multi_worker, seconds a collective operation waits for the
            other workers before it fails, so that a lost worker stops the job instead of
            hanging it.
        cluster_resolver: with multi_worker, a
            `tf.distribute.cluster_resolver.ClusterResolver` (a SLURM job step's), or
            None for TF_CONFIG's.

    Returns:
        A `tf.distribute.Strategy`.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}. Received: strategy={name!r}")
    if cpu_replicas is not None and (not config.is_int(cpu_replicas) or cpu_replicas < 1):
        raise ValueError(f"cpu_replicas must be >= 1. Received: cpu_replicas={cpu_replicas!r}")
    if name == "multi_worker":
        if cpu_replicas:
            raise ValueError(
                "cpu_replicas cannot be used with strategy=multi_worker: "
                "MultiWorkerMirroredStrategy uses one CPU device per worker even when the CPU "
                "is split into logical devices, so on CPU a worker is one replica. "
                f"Received: cpu_replicas={cpu_replicas}"
            )
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=worker_timeout)
        return tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=cluster_resolver, communication_options=options
        )
    cpu_devices = _split_cpu(cpu_replicas) if cpu_replicas else None
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (
        name == "auto" and (len(gpus) > 1 or (cpu_devices and len(cpu_devices) > 1))
    ):
        devices = [d.name for d in gpus] if gpus else cpu_devices
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


def _split_cpu(cpu_replicas):
    """Splits the CPU into `cpu_replicas` logical devices; returns their names."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    configs = [tf.config.LogicalDeviceConfiguration() for _ in range(cpu_replicas)]
    try:
        tf.config.set_logical_device_configuration(cpu, configs)
    except RuntimeError as error:
        current = len(tf.config.list_logical_devices("CPU"))
        if current != cpu_replicas:
            raise ValueError(
                "cpu_replicas must be set before TensorFlow initialises its devices "
                f"(they are {current} logical CPUs now). Received: cpu_replicas={cpu_replicas}"
            ) from error
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def is_chief(strategy):
    """Whether this process writes the run's files (always, except on other workers)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)


def task_name(strategy):
    """This worker's "<task type>_<task id>" in a multi-worker cluster."""
    resolver = strategy.cluster_resolver
    return f"{resolver.task_type}_{resolver.task_id}"


def run_and_sum(strategy, step_fn):
    """A `tf.function` that runs `step_fn` on every replica and sums each of its outputs.

    Args:
        strategy: a `tf.distribute.Strategy`, or None to call `step_fn` directly.
        step_fn: fn(*args) -> a list of scalars (per-replica sums: losses, hits, counts).

    Returns:
        fn(*args) -> the list of scalars summed over all replicas and workers.
    """
    if strategy is None:
        return tf.function(step_fn)

    @tf.function
    def run(*args):
        results = strategy.run(step_fn, args=args)
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, r, axis=None) for r in results]

    return run


def scalar(variable):
    """A scalar variable's value as a Python float (also for a MirroredVariable)."""
    return float(tf.convert_to_tensor(variable).numpy())


def first_replica(strategy, value):
    """The first local replica's part of a per-replica value (or of a nest of them), as NumPy."""
    return tf.nest.map_structure(
        lambda v: keras.ops.convert_to_numpy(strategy.experimental_local_results(v)[0]), value
    )


def define_flags():
    """Defines the strategy flags; for entry points only."""
    flags.DEFINE_enum("strategy", "auto", list(STRATEGIES), "tf.distribute strategy.")
    flags.DEFINE_integer(
        "worker_timeout", 600, "multi_worker: seconds to wait for a lost worker before failing."
    )
    flags.DEFINE_integer(
        "slurm_port_base",
        None,
        "multi_worker under SLURM (srun, no TF_CONFIG): the port of each node's first task; "
        "task i of a node listens on this + i. Default: 20000 + 8 x (job id mod 1500).",
    )
    flags.DEFINE_integer(
        "gpus_per_task",
        None,
        "multi_worker under SLURM: GPUs per task. Default: those SLURM allocated "
        "(CUDA_VISIBLE_DEVICES, SLURM_GPUS_ON_NODE); none when it allocated none.",
        lower_bound=0,
    )
    flags.DEFINE_integer(
        "cpu_replicas",
        None,
        "Split the CPU into N logical devices and mirror over them (data parallelism "
        "without GPUs).",
    )
