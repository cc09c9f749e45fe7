"""launch on real training workers: two workers on 127.0.0.1 train like one device, and a
SIGKILLed worker, a resume, a SIGTERMed worker and a resume end as the uninterrupted run
did. About a minute each on two busy cores.
"""

import json
import os
import re
import signal
import subprocess
import threading
import time

import fresh_process
import numpy as np
import pytest
import tensorflow as tf
import tiny
from worker_processes import Log
from worker_processes import alive
from worker_processes import started_pids
from worker_processes import wait_for_checkpoint

from keras_alexnet.runs import folder as run_folder
from keras_alexnet.training import launcher


def train_args(model_dir, root, *extra):
    return [
        f"--model_dir={model_dir}",
        "--dataset=folder",
        f"--data_dir={root}",
        "--recipe=paper",  # SGD: two workers and one device agree to float rounding
        "--variant=tiny",
        "--batch_size=8",
        "--epochs=1",
        "--stats_images=16",
        "--init=paper",
        "--learning_rate=0.001",
        "--checkpoint_every=2",
        *tiny.FAST_FLAGS,
        *extra,
    ]


def start_launcher(args, workers=2, timeout=420, grace_period=5):
    process = subprocess.Popen(
        fresh_process.command(
            "launch",
            f"--workers={workers}",
            f"--timeout={timeout}",
            f"--grace_period={grace_period}",
            "--",
            *args,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, which the workers share
    )
    return Log(process)


def run_launcher(args, timeout=420):
    log = start_launcher(args, timeout=timeout)
    try:
        status = log.process.wait(timeout=timeout + 60)
        log.join()
    finally:
        log.end()
    return status, log.text()


class _Text:
    """A text stream that threads write whole lines to and a test reads."""

    def __init__(self):
        self._parts = []
        self._lock = threading.Lock()

    def write(self, text):
        with self._lock:
            self._parts.append(text)

    def flush(self):
        pass

    def getvalue(self):
        with self._lock:
            return "".join(self._parts)


class InProcessLauncher(Log):
    """`launcher.launch` run in a thread of this process on real training workers, as the
    launch tool runs it (the tool's own process and its TensorFlow import spared): Log's
    reading and waiting, its output and messages merged as the tool's pipe merges them.

    Its `process` is the launcher itself: poll() is its exit status once it returned.
    """

    def __init__(self, args, workers=2, timeout=420, grace_period=5):
        self.process = self
        self._text = _Text()
        self._status = None
        self._error = None
        # The command the tool gives its workers (fresh_process puts it in its place).
        command = fresh_process.command("train", "--strategy=multi_worker", *args)

        def run():
            try:
                self._status = launcher.launch(
                    workers,
                    args,
                    timeout=timeout,
                    grace_period=grace_period,
                    command=command,
                    output=self._text,
                    errors=self._text,
                )
            except BaseException as error:  # shown by wait()
                self._error = error

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def text(self):
        return self._text.getvalue()

    def poll(self):
        if self._thread.is_alive():
            return None
        if self._error is not None:
            raise self._error
        return self._status

    def wait(self, timeout):
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the launcher still runs after {timeout} s"
        return self.poll()

    def join(self):
        pass

    def end(self):
        """Kills the workers left running (after a failed test), then waits for launch()."""
        if self._thread.is_alive():
            for pid in started_pids(self.text()).values():
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
        self._thread.join(timeout=60)


def weights_digests(text):
    """{worker index: the "Weights sha256" it printed}."""
    return {
        int(i): digest
        for i, digest in re.findall(r"^\[worker (\d+)\] Weights sha256 ([0-9a-f]{64})$", text, re.M)
    }


# The uninterrupted two-worker run: compared with one device, and with a run stopped by
# SIGKILL and by SIGTERM and resumed. 3 epochs of 6 steps.
TWO_WORKER_EXTRA = ("--epochs=3", "--deterministic", "--dropout=0")


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory, tiny_root):
    """(model_dir, output) of the uninterrupted two-worker run of TWO_WORKER_EXTRA, and
    (model_dir, CompletedProcess) of the same run on one device, which runs meanwhile."""
    two_dir = tmp_path_factory.mktemp("two") / "two"
    one_dir = tmp_path_factory.mktemp("one") / "one"
    one = subprocess.Popen(
        fresh_process.command(
            "train", "--strategy=one_device", *train_args(one_dir, tiny_root, *TWO_WORKER_EXTRA)
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        status, text = run_launcher(train_args(two_dir, tiny_root, *TWO_WORKER_EXTRA))
        stdout, stderr = one.communicate(timeout=420)
    finally:
        one.kill()
        one.wait()
    assert status == 0, text[-6000:]
    return (
        two_dir,
        text,
        one_dir,
        subprocess.CompletedProcess(one.args, one.returncode, stdout, stderr),
    )


def test_two_workers_train_like_one_device(two_workers):
    two_dir, text, one_dir, one = two_workers
    assert re.search(
        r"^\[worker 0\] .*Done: step 18, .*; checkpoint \S+/two/checkpoints/ckpt-18", text, re.M
    )
    assert re.search(
        r"^\[worker 1\] .*Done: step 18, .*; checkpoint \S+/workers/worker_1/", text, re.M
    )
    digests = weights_digests(text)
    assert set(digests) == {0, 1} and digests[0] == digests[1], text[-6000:]
    # Only the chief's files stay in model_dir; worker 1 removed its own checkpoints.
    assert not (two_dir / "workers" / "worker_1").exists()
    assert tf.train.latest_checkpoint(str(two_dir / "checkpoints")).endswith("ckpt-18")

    assert one.returncode == 0, one.stderr[-4000:]
    tiny.register()
    two_model, _ = run_folder.restore_model(str(two_dir))
    one_model, _ = run_folder.restore_model(str(one_dir))
    # Each step's global batch holds the same 8 images in both runs (worker i takes the
    # permutation's elements i, i+2, ... of the step's 8); the mean loss over them gives
    # the same gradient, summed in another order: equal up to float rounding.
    worst = 0.0
    for a, b in zip(two_model.weights, one_model.weights):
        a, b = a.numpy(), b.numpy()
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=a.shape)
        worst = max(worst, float(np.max(np.abs(a - b))))
    print(f"largest weight difference, two workers vs one device: {worst:.3g}")
    del two_model, one_model


def test_a_killed_then_a_preempted_worker_and_the_rerun_ends_bit_identical(
    tmp_path, tiny_root, two_workers
):
    model_dir = tmp_path / "run"
    args = train_args(model_dir, tiny_root, *TWO_WORKER_EXTRA)

    # The launcher runs in this process (InProcessLauncher); the tool's command line is
    # the two_workers fixture's.
    _kill_worker_1(args, model_dir)
    step = _preempt_worker_1(args, model_dir)
    _rerun_to_the_end(args, step, two_workers)


def _kill_worker_1(args, model_dir):
    """1. Worker 1 is killed after ckpt-2: the launcher stops the job.

    Worker 0, waiting on its lost peer, cannot act on the launcher's SIGTERM: the SIGKILL
    after the grace period ends it, so a short grace period is all this stop needs.
    """
    log = InProcessLauncher(args, grace_period=1)
    try:
        wait_for_checkpoint(log, model_dir)
        pid = started_pids(log.text())[1]
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        status = log.process.wait(timeout=120)
        seconds = time.monotonic() - killed
        log.join()
        text = log.text()
        assert status == launcher.EXIT_WORKER_FAILED, text[-6000:]
        assert f"[launch] worker 1 (pid {pid}) was killed by SIGKILL" in text
        assert "Done:" not in text  # the job was stopped, it did not finish
        assert seconds < 60, f"the launcher took {seconds:.1f} s to stop the job"
        print(f"SIGKILL of worker 1 to launcher exit: {seconds:.2f} s")
        assert not any(alive(p) for p in started_pids(text).values())
    finally:
        log.end()


def _preempt_worker_1(args, model_dir):
    """2. The rerun resumes; SIGTERM reaches worker 1 only (a preempted machine).

    It comes after the next checkpoint. Worker 0 learns of it through the cluster and both
    save one step: returns that step.
    """
    log = InProcessLauncher(args, grace_period=60)  # time to finish a step and save
    try:
        resumed = log.wait_for(
            r"\[worker 0\] Resuming from \S+/run/checkpoints/ckpt-(\d+): epoch \d, step \d of 6, "
            r"step (\d+) in all",
            timeout=400,
        )
        killed_at = int(resumed.group(1))
        assert killed_at == int(resumed.group(2)) >= 2, log.tail()
        wait_for_checkpoint(log, model_dir, after=killed_at)
        # The chief holds the job's lock; the other worker holds none.
        lock = json.loads((model_dir / "train.lock").read_text())
        pids = started_pids(log.text())
        os.kill(pids[1], signal.SIGTERM)
        signalled = time.monotonic()
        status = log.process.wait(timeout=120)
        seconds = time.monotonic() - signalled
        log.join()
        text = log.text()
    finally:
        log.end()
    assert lock["pid"] == pids[0], lock
    assert status == launcher.EXIT_PREEMPTED, text[-6000:]
    assert f"[launch] worker 1 (pid {pids[1]}) stopped on a signal after saving" in text
    stopped = dict(
        (int(i), (why, int(step)))
        for i, why, step in re.findall(
            r"^\[worker (\d)\] .*Stopped by (.+) at step (\d+)[,;] ", text, re.M
        )
    )
    # Both workers saved the same step, the chief into model_dir.
    assert set(stopped) == {0, 1}, text[-6000:]
    assert stopped[1][0] == "SIGTERM" and stopped[0][0] == "another worker's signal", stopped
    step = stopped[0][1]
    assert stopped[1][1] == step and killed_at < step < 18, text[-6000:]
    assert run_folder.latest_checkpoint(str(model_dir)).endswith(f"ckpt-{step}")
    assert "[launch] every worker saved a checkpoint" in text
    assert not any(alive(p) for p in pids.values())
    assert not (model_dir / "train.lock").exists()
    print(f"2 workers: SIGTERM to worker 1 to the launcher's exit {seconds:.2f} s, step {step}")
    assert seconds < 90
    return step


def _rerun_to_the_end(args, step, two_workers):
    """3. The rerun starts at the very step saved, and ends as if nothing had happened."""
    log = InProcessLauncher(args)
    try:
        status = log.process.wait(timeout=480)
        text = log.text()
    finally:
        log.end()
    assert status == 0, text[-6000:]
    for worker in (0, 1):
        assert re.search(
            rf"^\[worker {worker}\] Resuming from \S+/run/checkpoints/ckpt-{step}: .*, "
            rf"step {step} in all",
            text,
            re.M,
        ), text[-6000:]
    assert re.search(r"^\[worker 0\] .*Done: step 18", text, re.M), text[-6000:]
    digests = weights_digests(text)
    assert set(digests) == {0, 1} and digests[0] == digests[1], text[-6000:]
    assert digests == weights_digests(two_workers[1]), text[-6000:]
