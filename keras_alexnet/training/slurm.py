"""A training run's cluster from the SLURM job step it runs in (`srun`).

`srun` starts the same command once per task and tells each task, in its environment,
who it is (SLURM_PROCID, SLURM_LOCALID, SLURMD_NODENAME) and where the step's tasks run
(SLURM_STEP_NODELIST, SLURM_STEP_TASKS_PER_NODE, SLURM_STEP_NUM_TASKS). Every task is a
worker of MultiWorkerMirroredStrategy and task 0 is the chief; task i listens on
`<its node>:<port base + its local id>`, so that the tasks of one node take consecutive
ports. SLURM numbers tasks in blocks (its default distribution: node 0's tasks first),
which is what lets every task compute every other task's address from the same
variables; a step started with another distribution is refused.

GPUs come from what SLURM allocated (CUDA_VISIBLE_DEVICES, SLURM_GPUS_ON_NODE) or from
`gpus_per_task`, never from nvidia-smi: TensorFlow's own `SlurmClusterResolver` runs
nvidia-smi unless told the count, cannot be told "no GPUs" (its allocation loop steps by
the GPUs per task), and orders the nodes by name ("node10" before "node9") where SLURM
orders them by number, giving task 0 another task's address.

This module reads an environment mapping and builds no TensorFlow object
(`training.cluster` does), so it is tested without SLURM.
"""

import dataclasses
import itertools
import re

from keras_alexnet import errors

# The variables that only a job step (srun) sets; a batch script has SLURM_JOB_ID and
# SLURM_PROCID=0 but none of these, and its SLURM_NTASKS counts tasks it does not run.
STEP_VARIABLES = ("SLURM_STEP_ID", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NODELIST")
# The default ports: 8 per job id, 1500 job ids apart, below Linux's ephemeral ports
# (32768 and up), so that jobs sharing a node do not collide.
PORT_BASE = 20000
PORTS_PER_JOB = 8
JOB_SLOTS = 1500


@dataclasses.dataclass(frozen=True)
class Step:
    """A SLURM job step as one of its tasks sees it.

    Attributes:
        job_id: SLURM_JOB_ID.
        step_id: SLURM_STEP_ID.
        restarts: SLURM_RESTART_COUNT: how often the job was requeued (0 the first time).
        workers: every task's "host:port", in task order (task 0 first).
        task: this task's index (SLURM_PROCID).
        node: this task's node.
        local_id: this task's index on its node (SLURM_LOCALID).
        port_base: the port of each node's first task.
        gpus: GPUs this task uses.
        gpus_from: where that number comes from, in words.
        cuda_visible_devices: what CUDA_VISIBLE_DEVICES must be set to before TensorFlow
            starts, or None to leave it as it is.
    """

    job_id: str
    step_id: str
    restarts: int
    workers: tuple
    task: int
    node: str
    local_id: int
    port_base: int
    gpus: int
    gpus_from: str
    cuda_visible_devices: object = None


def in_job_step(environ):
    """Whether the environment is a SLURM job step's task (srun), not a batch script."""
    return all(environ.get(name) for name in STEP_VARIABLES)


def expand_hostlist(hostlist, name="SLURM_STEP_NODELIST"):
    """SLURM's compressed host list, expanded, in order: "n[08-10],gpu1" -> n08 n09 n10 gpu1.

    A range keeps the zero padding of its first number; several bracket groups in one
    name ("rack[1-2]-n[1-2]") expand to every combination, the first group slowest.

    Args:
        hostlist: the list as SLURM writes it.
        name: the variable it came from, for the error message.

    Returns:
        A list of host names.

    Raises:
        errors.InputError: the list is not in SLURM's syntax.
    """
    hosts = []
    for part in _split_outside_brackets(hostlist, name):
        pieces = re.split(r"(\[[^\[\]]*\])", part)
        if any(c in piece for piece in pieces[::2] for c in "[]"):
            raise _bad(name, hostlist, f"unbalanced brackets in {part!r}")
        choices = [
            _expand_ranges(piece[1:-1], name, hostlist) if i % 2 else [piece]
            for i, piece in enumerate(pieces)
        ]
        hosts.extend("".join(combination) for combination in itertools.product(*choices))
    return hosts


def _split_outside_brackets(hostlist, name):
    parts, depth, current = [], 0, ""
    for char in hostlist:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth not in (0, 1):
            raise _bad(name, hostlist, "unbalanced brackets")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    if depth or not all(parts):
        raise _bad(name, hostlist, "unbalanced brackets or an empty host name")
    return parts


def _expand_ranges(ranges, name, hostlist):
    numbers = []
    for item in ranges.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if not match:
            raise _bad(name, hostlist, f"{item!r} is not a number or a range N-M")
        low, high = match.group(1), match.group(2) or match.group(1)
        if int(high) < int(low):
            raise _bad(name, hostlist, f"the range {item!r} ends below its start")
        numbers.extend(str(n).zfill(len(low)) for n in range(int(low), int(high) + 1))
    return numbers


def expand_tasks_per_node(text, name="SLURM_STEP_TASKS_PER_NODE"):
    """SLURM's tasks per node, expanded: "2(x3),1" -> [2, 2, 2, 1].

    Raises:
        errors.InputError: the text is not in SLURM's syntax.
    """
    counts = []
    for part in text.split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if not match:
            raise _bad(name, text, f"{part!r} is not N or N(xM)")
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    return counts


def default_port_base(job_id):
    """The first port of a node's tasks when none is given: 20000 + 8 x (job id mod 1500).

    Jobs whose ids are less than 1500 apart get different ports, so that two jobs on one
    node (say two 4-GPU jobs on an 8-GPU node) do not collide while each has at most 8
    tasks per node. All stay below 32000, under Linux's ephemeral ports.
    """
    return PORT_BASE + PORTS_PER_JOB * (int(job_id) % JOB_SLOTS)


def job_step(environ, port_base=None, gpus_per_task=None):
    """The job step this task runs in, read from its environment.

    Args:
        environ: the task's environment (os.environ, or a dict in tests).
        port_base: the port of each node's first task (task i of a node listens on
            port_base + i); None for `default_port_base(SLURM_JOB_ID)`.
        gpus_per_task: GPUs for each task; None to take what SLURM allocated.

    Returns:
        A `Step`.

    Raises:
        errors.InputError: a SLURM variable is missing or malformed, the step's tasks are
            not numbered in blocks, or more GPUs are asked for than the task can see.
    """
    missing = [n for n in (*STEP_VARIABLES, "SLURM_PROCID", "SLURM_JOB_ID") if not environ.get(n)]
    if missing:
        raise errors.InputError(
            f"{missing[0]} is not set: not a SLURM job step (run the command under srun)"
        )
    task = _integer(environ, "SLURM_PROCID")
    num_tasks = _integer(environ, "SLURM_STEP_NUM_TASKS")
    hosts = expand_hostlist(environ["SLURM_STEP_NODELIST"])
    counts = expand_tasks_per_node(
        environ.get("SLURM_STEP_TASKS_PER_NODE") or environ.get("SLURM_TASKS_PER_NODE", "")
    )
    if len(counts) != len(hosts) or sum(counts) != num_tasks or not task < num_tasks:
        raise errors.InputError(
            f"SLURM_STEP_NODELIST={environ['SLURM_STEP_NODELIST']}, "
            f"SLURM_STEP_TASKS_PER_NODE={environ.get('SLURM_STEP_TASKS_PER_NODE')}, "
            f"SLURM_STEP_NUM_TASKS={num_tasks} and SLURM_PROCID={task} do not agree"
        )
    base = default_port_base(environ["SLURM_JOB_ID"]) if port_base is None else port_base
    if not isinstance(base, int) or not 1024 <= base <= 65535 - max(counts):
        raise errors.InputError(
            f"port base {base!r} must be in [1024, {65535 - max(counts)}] for "
            f"{max(counts)} tasks per node"
        )
    places = [(host, local) for host, count in zip(hosts, counts) for local in range(count)]
    node, local_id = places[task]
    _check_block_distribution(environ, task, node, local_id)
    gpus, gpus_from, visible = _gpus(environ, counts[hosts.index(node)], local_id, gpus_per_task)
    return Step(
        job_id=environ["SLURM_JOB_ID"],
        step_id=environ["SLURM_STEP_ID"],
        restarts=_integer(environ, "SLURM_RESTART_COUNT", 0),
        workers=tuple(f"{host}:{base + local}" for host, local in places),
        task=task,
        node=node,
        local_id=local_id,
        port_base=base,
        gpus=gpus,
        gpus_from=gpus_from,
        cuda_visible_devices=visible,
    )


def _check_block_distribution(environ, task, node, local_id):
    """The task must be where block numbering puts it, or the addresses are wrong."""
    actual_node = environ.get("SLURMD_NODENAME", node)
    actual_local = _integer(environ, "SLURM_LOCALID", local_id)
    if (actual_node, actual_local) != (node, local_id):
        raise errors.InputError(
            f"SLURM task {task} runs on {actual_node} as local task {actual_local}, but "
            f"block numbering of SLURM_STEP_NODELIST puts it on {node} as local task "
            f"{local_id}: start the step with srun --distribution=block (the default)"
        )


def _gpus(environ, tasks_on_node, local_id, gpus_per_task):
    """(GPUs for this task, where the number comes from, CUDA_VISIBLE_DEVICES to set or None).

    CUDA_VISIBLE_DEVICES lists the GPUs SLURM gave the task. When several tasks of a node
    all see all of the node's GPUs (SLURM_GPUS_ON_NODE of them: --gres=gpu:G without a
    per-task binding), each task takes its own slice, by its local id, so that they do
    not all train on the first GPU. With no GPU allocated, GPUs are hidden.
    """
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    visible = [d for d in listed.split(",") if d] if listed and listed != "NoDevFiles" else None
    on_node = _integer(environ, "SLURM_GPUS_ON_NODE", 0)
    if gpus_per_task is not None and (not isinstance(gpus_per_task, int) or gpus_per_task < 0):
        raise errors.InputError(f"gpus per task must be >= 0. Received: {gpus_per_task!r}")
    shared = visible is not None and tasks_on_node > 1 and len(visible) == on_node
    if visible is None and gpus_per_task is None:
        return 0, "SLURM allocated none: no CUDA_VISIBLE_DEVICES", ""
    if visible is None:  # no allocation by SLURM: the node's GPUs, told by the flag
        visible = [str(i) for i in range(gpus_per_task * tasks_on_node)]
        shared = tasks_on_node > 1
    if shared:
        count = len(visible) // tasks_on_node if gpus_per_task is None else gpus_per_task
        mine = visible[local_id * count : (local_id + 1) * count]
        where = f"{len(visible)} GPUs on the node shared by its {tasks_on_node} tasks"
        if count == 0 and visible:
            raise errors.InputError(
                f"{tasks_on_node} tasks share the {len(visible)} GPUs of their node "
                f"(CUDA_VISIBLE_DEVICES={listed}): at most one task per GPU"
            )
    else:
        count = len(visible) if gpus_per_task is None else gpus_per_task
        mine = visible[:count]
        where = f"CUDA_VISIBLE_DEVICES={listed}"
    if len(mine) < count:
        raise errors.InputError(
            f"{count} GPUs per task asked for, but local task {local_id} sees only "
            f"{len(mine)} of {where}"
        )
    if gpus_per_task is not None:
        where = f"--gpus_per_task={gpus_per_task}; {where}"
    return count, where, ",".join(mine) if mine != visible or listed is None else None


def _integer(environ, name, default=None):
    value = environ.get(name)
    if value is None and default is not None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if number < 0:
        raise errors.InputError(f"{name}={value!r} is not a number >= 0")
    return number


def _bad(name, value, why):
    return errors.InputError(f"{name}={value!r} is not a SLURM host list: {why}")
