"""training.slurm: the cluster from a SLURM job step, and training on a real one-node SLURM.

The host lists, task counts, ports and GPUs are read from environments written here (no
SLURM needed). The rest starts a real one-node SLURM (`slurm_cluster.OneNode`: munged,
slurmctld and slurmd in a temporary folder, once for the module) and runs the documented
command, `srun python -m keras_alexnet.train --strategy=multi_worker ...` with no
TF_CONFIG, on the tiny configuration: to the end, through `scancel --signal=TERM` and a
rerun, and through a task killed with SIGKILL and a rerun (marked slow). Without SLURM they
are skipped, saying so. Each srun or launch run costs a minute or so of TensorFlow start-up
on two busy cores.
"""

import os
import re
import signal
import subprocess
import time

import fresh_process
import pytest
import slurm_cluster
import tiny
from worker_processes import Log
from worker_processes import alive
from worker_processes import wait_for_checkpoint

from keras_alexnet import errors
from keras_alexnet.runs import folder as run_folder
from keras_alexnet.training import preemption
from keras_alexnet.training import slurm

# --- The environment of a job step -----------------------------------------------------


@pytest.mark.parametrize(
    "hostlist, hosts",
    [
        ("localhost", ["localhost"]),
        ("node[08-10],gpu1", ["node08", "node09", "node10", "gpu1"]),
        ("n[9-10,3]", ["n9", "n10", "n3"]),
        ("rack[1-2]-n[1-2]", ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]),
    ],
)
def test_host_lists_expand_in_slurm_order(hostlist, hosts):
    assert slurm.expand_hostlist(hostlist) == hosts


@pytest.mark.parametrize("hostlist", ["n[1-", "n[a-b]", "n[3-1]", "n]1[", "n,,m", "n[1-2"])
def test_malformed_host_lists_are_refused_naming_the_variable(hostlist):
    with pytest.raises(errors.InputError, match=r"^SLURM_STEP_NODELIST='.*' is not a SLURM host"):
        slurm.expand_hostlist(hostlist)


def test_tasks_per_node_expand():
    assert slurm.expand_tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    assert slurm.expand_tasks_per_node("8") == [8]
    with pytest.raises(errors.InputError, match="'2\\(x\\)' is not N or N\\(xM\\)"):
        slurm.expand_tasks_per_node("2(x)")


def step_environment(task, nodes=("node9", "node10"), per_node=3, job="4242", **extra):
    """What srun gives task `task` of a step of `per_node` tasks on each of `nodes`
    (block distribution: node 0's tasks first)."""
    return dict(
        SLURM_JOB_ID=job,
        SLURM_STEP_ID="0",
        SLURM_PROCID=str(task),
        SLURM_LOCALID=str(task % per_node),
        SLURMD_NODENAME=nodes[task // per_node],
        SLURM_STEP_NUM_TASKS=str(per_node * len(nodes)),
        SLURM_STEP_NODELIST="node[9-10]" if nodes == ("node9", "node10") else ",".join(nodes),
        SLURM_STEP_TASKS_PER_NODE=f"{per_node}(x{len(nodes)})",
        **extra,
    )


def test_every_task_computes_the_same_cluster_in_slurm_order():
    steps = [slurm.job_step(step_environment(task)) for task in range(6)]
    base = 20000 + 8 * (4242 % 1500)
    # node9 before node10, as SLURM numbers them (sorted by name, node10 would be first).
    expected = tuple(f"node{n}:{base + i}" for n in (9, 10) for i in range(3))
    assert all(step.workers == expected for step in steps)
    assert [(s.task, s.node, s.local_id) for s in steps] == [
        (t, f"node{9 + t // 3}", t % 3) for t in range(6)
    ]
    assert slurm.job_step(step_environment(4), port_base=31000).workers[4] == "node10:31001"


def test_default_ports_differ_between_nearby_jobs_and_stay_below_the_ephemeral_range():
    # Any 1500 consecutive job ids: their 8 ports each do not overlap.
    bases = sorted(slurm.default_port_base(job) for job in range(7001, 8501))
    assert min(b2 - b1 for b1, b2 in zip(bases, bases[1:])) >= 8
    assert 1024 < min(bases) and max(bases) + 8 <= 32768


def test_a_step_not_numbered_in_blocks_is_refused():
    # --distribution=cyclic puts task 1 on the second node as its local task 0.
    env = dict(step_environment(1), SLURMD_NODENAME="node10", SLURM_LOCALID="0")
    with pytest.raises(
        errors.InputError,
        match=r"SLURM task 1 runs on node10 as local task 0, but block numbering .* puts it "
        r"on node9 as local task 1: start the step with srun --distribution=block",
    ):
        slurm.job_step(env)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(SLURM_STEP_NUM_TASKS="5"), "do not agree"),
        (dict(SLURM_PROCID="x"), "SLURM_PROCID='x' is not a number"),
        (dict(SLURM_STEP_ID=""), "SLURM_STEP_ID is not set: not a SLURM job step"),
    ],
)
def test_inconsistent_step_variables_are_refused(change, message):
    with pytest.raises(errors.InputError, match=re.escape(message)):
        slurm.job_step(dict(step_environment(0), **change))


@pytest.mark.parametrize(
    "extra, gpus_per_task, task, gpus, visible",
    [
        # No GPU allocated: none used, and the node's GPUs hidden.
        ({}, None, 4, 0, ""),
        # --gres=gpu:3, 3 tasks a node, no per-task binding: each its own GPU.
        (dict(CUDA_VISIBLE_DEVICES="0,1,2", SLURM_GPUS_ON_NODE="3"), None, 4, 1, "1"),
        # --gpus-per-task=1: SLURM bound the task to its GPU already.
        (dict(CUDA_VISIBLE_DEVICES="2", SLURM_GPUS_ON_NODE="3"), None, 5, 1, None),
        # No allocation by SLURM, the flag tells: local task 2 of 3 takes GPUs 4, 5.
        ({}, 2, 5, 2, "4,5"),
    ],
)
def test_gpus_come_from_the_allocation_or_the_flag(extra, gpus_per_task, task, gpus, visible):
    step = slurm.job_step(step_environment(task, **extra), gpus_per_task=gpus_per_task)
    assert (step.gpus, step.cuda_visible_devices) == (gpus, visible), step.gpus_from


def test_more_gpus_than_allocated_are_refused():
    env = step_environment(0, CUDA_VISIBLE_DEVICES="0", SLURM_GPUS_ON_NODE="3")
    with pytest.raises(errors.InputError, match="2 GPUs per task asked for, but local task 0"):
        slurm.job_step(env, gpus_per_task=2)
    # 3 tasks on a node of 2 GPUs, all seen by each: one would get none.
    env = step_environment(2, CUDA_VISIBLE_DEVICES="0,1", SLURM_GPUS_ON_NODE="2")
    with pytest.raises(errors.InputError, match="3 tasks share the 2 GPUs of their node"):
        slurm.job_step(env)


# --- A real one-node SLURM -------------------------------------------------------------

TRAIN_ARGS = (
    "--dataset=folder",
    "--recipe=paper",
    "--variant=tiny",
    "--batch_size=8",
    "--epochs=3",
    "--stats_images=16",
    "--init=paper",
    "--learning_rate=0.001",
    "--checkpoint_every=2",
    "--deterministic",
    "--dropout=0",
    *tiny.FAST_FLAGS,
    "--worker_timeout=60",
)


def train_args(model_dir, root):
    return [f"--model_dir={model_dir}", f"--data_dir={root}", *TRAIN_ARGS]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = slurm_cluster.missing()
    if why:
        pytest.skip(why)
    node = slurm_cluster.OneNode(tmp_path_factory.mktemp("slurm"))
    try:
        yield node
    finally:
        node.stop()


def start_srun(cluster, args, name, folder):
    """`srun --ntasks=2 --label` of the documented command: a Log of the tasks' stdout;
    their stderr goes to a file in `folder`, read by `finish`."""
    command = fresh_process.command("train", "--strategy=multi_worker", *args)
    errors_path = folder / f"{name}-{len(list(folder.glob(f'{name}-*.err')))}.err"
    with open(errors_path, "w") as errors_file:
        process = subprocess.Popen(
            [
                slurm_cluster.program("srun"),
                "--ntasks=2",
                "--label",
                f"--job-name={name}",
                *command,
            ],
            stdout=subprocess.PIPE,
            stderr=errors_file,
            text=True,
            env=dict(cluster.env, PYTHONUNBUFFERED="1"),
            start_new_session=True,
        )
    log = Log(process)
    log.errors_path = errors_path
    return log


def finish(log, timeout=480):
    """Waits for srun; its exit status, the tasks' stdout and the tail of their stderr."""
    try:
        status = log.process.wait(timeout=timeout)
        log.join()
    finally:
        log.end()
    return status, log.text(), log.errors_path.read_text()[-6000:]


def digests(text, prefix=r"(\d+): "):
    """{task: the "Weights sha256" it printed}; `prefix` catches the task's number."""
    return {
        int(i): digest
        for i, digest in re.findall(rf"^{prefix}Weights sha256 ([0-9a-f]{{64}})$", text, re.M)
    }


def job_id(log):
    return log.wait_for(r"(?m)^0: Cluster from SLURM job (\d+), step \d+", timeout=300).group(1)


def test_scontrol_expands_host_lists_as_we_do(cluster):
    for hostlist in ("localhost", "node[08-10],gpu1", "n[9-10,3]", "rack[1-2]-n[1-2]"):
        result = cluster.run("scontrol", "show", "hostnames", hostlist)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == slurm.expand_hostlist(hostlist), hostlist


@pytest.fixture(scope="module")
def full_run(cluster, tmp_path_factory, tiny_root):
    """The output of `srun -n2` to the end, and of `launch --workers=2` meanwhile."""
    srun_dir = tmp_path_factory.mktemp("srun") / "run"
    launch_dir = tmp_path_factory.mktemp("launch") / "run"
    launch = subprocess.Popen(
        fresh_process.command("launch", "--workers=2", "--", *train_args(launch_dir, tiny_root)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    launch_log = Log(launch)
    try:
        srun = start_srun(cluster, train_args(srun_dir, tiny_root), "full", srun_dir.parent)
        status, text, errors_text = finish(srun)
    finally:
        launch_status = launch_log.process.wait(timeout=480)
        launch_log.end()
    launch_text = launch_log.text()
    assert status == 0, text[-3000:] + errors_text
    assert launch_status == 0, launch_text[-6000:]
    return srun_dir, text, launch_text


def test_srun_trains_two_tasks_to_the_end_like_launch(full_run):
    srun_dir, text, launch_text = full_run
    job = re.search(r"^0: Cluster from SLURM job (\d+), step 0: 2 workers", text, re.M).group(1)
    port = slurm.default_port_base(job)
    for task in (0, 1):
        # The first lines: where the cluster comes from, and the workers.
        first = [line for line in text.splitlines() if line.startswith(f"{task}: ")][:3]
        assert first == [
            f"{task}: Cluster from SLURM job {job}, step 0: 2 workers; this is worker_{task}",
            f"{task}:   worker_0: localhost:{port} (chief{', this task' * (task == 0)})",
            f"{task}:   worker_1: localhost:{port + 1}{' (this task)' * (task == 1)}",
        ], text[:3000]
    assert re.search(r"^0: Done: step 18, .*; checkpoint \S+/run/checkpoints/ckpt-18$", text, re.M)
    found = digests(text)
    assert set(found) == {0, 1} and found[0] == found[1], text[-6000:]
    assert "[worker 0] Cluster from TF_CONFIG: 2 workers" in launch_text
    assert digests(launch_text, r"\[worker (\d+)\] ") == found, launch_text[-6000:]
    assert not (srun_dir / "workers" / "worker_1").exists()
    print(f"srun -n2 and launch --workers=2: weights sha256 {found[0]}")


def test_scancel_saves_one_step_and_the_same_srun_resumes(cluster, tmp_path, tiny_root, full_run):
    model_dir = tmp_path / "run"
    args = train_args(model_dir, tiny_root)
    log = start_srun(cluster, args, "preempted", tmp_path)
    try:
        job = job_id(log)
        wait_for_checkpoint(log, model_dir)
        result = cluster.run("scancel", "--signal=TERM", job)
        assert result.returncode == 0, result.stderr
        signalled = time.monotonic()
        status = log.process.wait(timeout=120)
        seconds = time.monotonic() - signalled
    finally:
        status, text, errors_text = finish(log)
    assert status == preemption.EXIT_PREEMPTED, text[-3000:] + errors_text
    stopped = {
        int(task): int(step)
        for task, step in re.findall(r"^(\d): Stopped by .+ at step (\d+)[,;] ", text, re.M)
    }
    assert set(stopped) == {0, 1} and stopped[0] == stopped[1], text[-6000:]
    step = stopped[0]
    assert 2 <= step < 18 and "Done:" not in text, text[-6000:]
    assert run_folder.latest_checkpoint(str(model_dir)).endswith(f"ckpt-{step}")
    print(f"scancel --signal=TERM to srun's exit 75: {seconds:.1f} s, both tasks saved step {step}")

    status, text, errors_text = finish(start_srun(cluster, args, "preempted", tmp_path))
    assert status == 0, text[-3000:] + errors_text
    for task in (0, 1):
        assert re.search(
            rf"^{task}: Resuming from \S+/ckpt-{step}: .*step {step} in all", text, re.M
        )
    assert digests(text) == digests(full_run[1]), text[-6000:]


# Two srun runs, 3 minutes on two busy cores: the SLURM tests in CI are the two above.
@pytest.mark.slow
def test_a_killed_task_stops_the_other_and_the_rerun_resumes(
    cluster, tmp_path, tiny_root, full_run
):
    model_dir = tmp_path / "run"
    args = train_args(model_dir, tiny_root)
    log = start_srun(cluster, args, "killed", tmp_path)
    try:
        job = job_id(log)
        saved = wait_for_checkpoint(log, model_dir)
        pids = cluster.run("scontrol", "listpids", job).stdout
        # PID JOBID STEPID LOCALID GLOBALID: the process of task 1.
        pid = next(
            int(r[0]) for r in (line.split() for line in pids.splitlines()) if r[3:4] == ["1"]
        )
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        status = log.process.wait(timeout=180)
        seconds = time.monotonic() - killed
    finally:
        status, text, errors_text = finish(log)
    assert status != 0 and not alive(pid), text[-3000:] + errors_text
    assert re.search(
        r"^0: error: lost contact with another worker \(.*\)\. Rerun the job to resume from "
        r"\S+/ckpt-\d+\.$",
        errors_text,
        re.M,
    ), errors_text
    assert "Done:" not in text
    print(f"SIGKILL of task 1 to srun's exit {status}: {seconds:.1f} s")

    status, text, errors_text = finish(start_srun(cluster, args, "killed", tmp_path))
    assert status == 0, text[-3000:] + errors_text
    resumed = dict(re.findall(r"^(\d): Resuming from \S+/ckpt-(\d+): ", text, re.M))
    assert set(resumed) == {"0", "1"} and resumed["0"] == resumed["1"], text[-6000:]
    assert int(resumed["0"]) >= saved
    assert digests(text) == digests(full_run[1]), text[-6000:]
