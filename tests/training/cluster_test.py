"""training.cluster: TF_CONFIG wins, else the SLURM job step, else one worker."""

import json

import fresh_process
import pytest
import tensorflow as tf

from keras_alexnet import errors
from keras_alexnet.training import cluster
from keras_alexnet.training import launcher


def slurm_step(task, **extra):
    """What srun gives task `task` of two on one node, "localhost"."""
    return dict(
        SLURM_JOB_ID="77",
        SLURM_STEP_ID="0",
        SLURM_PROCID=str(task),
        SLURM_LOCALID=str(task),
        SLURMD_NODENAME="localhost",
        SLURM_STEP_NUM_TASKS="2",
        SLURM_STEP_NODELIST="localhost",
        SLURM_STEP_TASKS_PER_NODE="2",
        **extra,
    )


def test_a_slurm_step_gives_the_cluster_that_launch_writes_in_tf_config(monkeypatch):
    ports = [20616, 20617]  # the default for job 77: 20000 + 8 x 77
    for task in (0, 1):
        env = slurm_step(task)
        found = cluster.find(env)
        # launch's TF_CONFIG for the same hosts and ports, read by TensorFlow's resolver.
        config = launcher.cluster_configs(2, ports, host="localhost")[task]
        monkeypatch.setenv("TF_CONFIG", json.dumps(config))
        reference = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        assert found.resolver.cluster_spec().as_dict() == reference.cluster_spec().as_dict()
        assert found.resolver.task_type == reference.task_type
        assert found.resolver.task_id == reference.task_id == task
        assert found.resolver.num_accelerators() == {"GPU": 0}
        assert env["CUDA_VISIBLE_DEVICES"] == ""  # no GPU allocated: none used
        assert found.lines()[:3] == [
            f"Cluster from SLURM job 77, step 0: 2 workers; this is worker_{task}",
            "  worker_0: localhost:20616 (chief" + ", this task)" * (task == 0) + ")" * task,
            "  worker_1: localhost:20617" + " (this task)" * task,
        ]


def test_tf_config_wins_over_slurm():
    config = launcher.cluster_configs(2, [3001, 3002])[1]
    found = cluster.find(dict(slurm_step(0), TF_CONFIG=json.dumps(config)))
    assert found.resolver is None  # MultiWorkerMirroredStrategy reads TF_CONFIG itself
    assert found.lines() == [
        "Cluster from TF_CONFIG (it wins over the SLURM job step): 2 workers; this is worker_1",
        "  worker_0: 127.0.0.1:3001 (chief)",
        "  worker_1: 127.0.0.1:3002 (this task)",
    ]


def test_no_cluster_is_one_worker_and_says_why():
    assert cluster.find({}).lines() == [
        "Cluster from nowhere (no TF_CONFIG, no SLURM step): 1 worker"
    ]
    # A batch script has SLURM_JOB_ID and SLURM_PROCID, but runs one process.
    batch = dict(SLURM_JOB_ID="5", SLURM_PROCID="0", SLURM_NTASKS="2")
    assert cluster.find(batch).lines() == [
        "Cluster from nowhere (SLURM job 5's batch script (no srun)): 1 worker"
    ]
    assert cluster.for_strategy("mirrored") is None


@pytest.mark.parametrize("text", ["{", "[1]", '{"cluster": {"worker": ["a:1"]}, "task": {}}x'])
def test_a_broken_tf_config_is_refused_in_one_line(text):
    with pytest.raises(errors.InputError, match="^TF_CONFIG is not a cluster and task in JSON"):
        cluster.find({"TF_CONFIG": text})


def test_train_refuses_a_step_it_cannot_address_in_one_line_exit_2(monkeypatch, tmp_path):
    # srun --distribution=cyclic: task 1 is the node's first task.
    for name, value in dict(slurm_step(1), SLURM_LOCALID="0").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    result = fresh_process.run_module(
        "train", "--strategy=multi_worker", f"--model_dir={tmp_path / 'run'}"
    )
    assert result.returncode == errors.EXIT_CODE, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "error: SLURM task 1 runs on localhost as local task 0, but block numbering of "
        "SLURM_STEP_NODELIST puts it on localhost as local task 1: start the step with srun "
        "--distribution=block (the default)"
    )
    assert "Traceback" not in result.stderr
