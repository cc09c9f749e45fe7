"""Where a multi-worker run's cluster comes from: TF_CONFIG, a SLURM job step, or nowhere.

TF_CONFIG, when set, wins: `launch`, Kubernetes' TFJob and cloud trainers set it, and a
user who sets it inside a SLURM job means it. Else a task of a SLURM job step (`srun`)
takes its cluster from SLURM (`training.slurm`): every task a worker, task 0 the chief.
Else the run is a cluster of one worker. `Cluster.lines()` says which, and lists the
workers: what a run prints first.
"""

import dataclasses
import json
import os

import tensorflow as tf

from keras_alexnet import errors
from keras_alexnet.training import slurm


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A multi-worker run's cluster.

    Attributes:
        source: where it comes from, in words ("TF_CONFIG", "SLURM job 12, step 0", ...).
        workers: (task name, "host:port") of every task, the chief first.
        task: this process's task name ("worker_1"), or None alone.
        resolver: the `tf.distribute.cluster_resolver.ClusterResolver` to give
            MultiWorkerMirroredStrategy, or None for its default (TF_CONFIG).
        notes: further lines to print (the GPUs, the ports).
    """

    source: str
    workers: tuple = ()
    task: object = None
    resolver: object = None
    notes: tuple = ()

    def lines(self):
        """What the run prints first: the source, this task, and the workers."""
        count = len(self.workers) or 1
        this = f"; this is {self.task}" if self.task else ""
        lines = [f"Cluster from {self.source}: {count} worker{'s' * (count > 1)}{this}"]
        names = [name for name, _ in self.workers]
        chief = "chief_0" if "chief_0" in names else "worker_0"
        for name, address in self.workers:
            roles = [
                role
                for role, yes in (("chief", name == chief), ("this task", name == self.task))
                if yes
            ]
            lines.append(f"  {name}: {address}" + (f" ({', '.join(roles)})" if roles else ""))
        return lines + [f"  {note}" for note in self.notes]


def find(environ=None, slurm_port_base=None, gpus_per_task=None):
    """The cluster of a --strategy=multi_worker run started with `environ`.

    Under SLURM, sets CUDA_VISIBLE_DEVICES in `environ` when the task must see other
    GPUs than it does (its share of the node's): call it before TensorFlow starts.

    Args:
        environ: the process's environment; default os.environ.
        slurm_port_base: under SLURM, the port of each node's first task; None for
            `slurm.default_port_base`.
        gpus_per_task: under SLURM, GPUs per task; None for what SLURM allocated.

    Returns:
        A `Cluster`.

    Raises:
        errors.InputError: TF_CONFIG is not a cluster, or the SLURM variables are wrong.
    """
    environ = os.environ if environ is None else environ
    if environ.get("TF_CONFIG"):
        over = " (it wins over the SLURM job step)" if slurm.in_job_step(environ) else ""
        return _from_tf_config(environ["TF_CONFIG"], over)
    if slurm.in_job_step(environ):
        return _from_slurm(environ, slurm_port_base, gpus_per_task)
    job = environ.get("SLURM_JOB_ID")
    where = f"SLURM job {job}'s batch script (no srun)" if job else "no TF_CONFIG, no SLURM step"
    return Cluster(source=f"nowhere ({where})")


def _from_tf_config(text, over):
    try:
        config = json.loads(text)
        jobs = config.get("cluster") or {}
        workers = tuple(
            (f"{job}_{i}", address)
            for job in sorted(jobs, key=lambda j: (j != "chief", j))
            for i, address in enumerate(jobs[job])
        )
        task = config.get("task") or {}
        name = f"{task['type']}_{task['index']}" if task else None
    except (ValueError, TypeError, AttributeError, KeyError) as error:
        raise errors.InputError(
            f"TF_CONFIG is not a cluster and task in JSON ({type(error).__name__}: {error})"
        ) from None
    return Cluster(source=f"TF_CONFIG{over}", workers=workers, task=name)


def _from_slurm(environ, port_base, gpus_per_task):
    step = slurm.job_step(environ, port_base, gpus_per_task)
    if step.cuda_visible_devices is not None:
        environ["CUDA_VISIBLE_DEVICES"] = step.cuda_visible_devices
    spec = tf.train.ClusterSpec({"worker": list(step.workers)})
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        spec,
        task_type="worker",
        task_id=step.task,
        num_accelerators={"GPU": step.gpus},
        rpc_layer="grpc",
    )
    restarts = f", restart {step.restarts}" if step.restarts else ""
    visible = step.cuda_visible_devices
    shown = "" if visible is None else f"; CUDA_VISIBLE_DEVICES set to {visible!r}"
    return Cluster(
        source=f"SLURM job {step.job_id}{restarts}, step {step.step_id}",
        workers=tuple((f"worker_{i}", address) for i, address in enumerate(step.workers)),
        task=f"worker_{step.task}",
        resolver=resolver,
        notes=(
            f"task {step.task} is local task {step.local_id} on {step.node}; "
            f"ports from {step.port_base} on each node",
            f"{step.gpus} GPU{'s' * (step.gpus != 1)} per task: {step.gpus_from}{shown}",
        ),
    )


def for_strategy(strategy, slurm_port_base=None, gpus_per_task=None):
    """`find()` for --strategy=multi_worker, None for the other strategies (no cluster)."""
    if strategy != "multi_worker":
        return None
    return find(slurm_port_base=slurm_port_base, gpus_per_task=gpus_per_task)
