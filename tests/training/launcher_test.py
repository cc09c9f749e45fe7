"""launch (the local launcher) and MultiWorkerMirroredStrategy: two workers on 127.0.0.1
train, fail, are preempted, resume.

The launcher's bookkeeping (prefixes, progress bars, a lost worker, signals, saved stops,
the timeout) is tested on a tiny stand-in worker that starts in milliseconds; two tests
run the real training worker: two workers against one device, and a SIGKILLed worker, a
resume, a SIGTERMed worker, a resume that ends as the uninterrupted run did.
"""

import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import fresh_process
import numpy as np
import pytest
import tensorflow as tf
import tiny

from keras_alexnet.training import launcher
from keras_alexnet.training import worker_output
from keras_alexnet.training.run import folder as run_folder

# A stand-in worker: argv[1 + i] tells worker i what to do.
FAKE_WORKER = textwrap.dedent("""
    import json, os, signal, sys, time
    config = json.loads(os.environ["TF_CONFIG"])
    index = config["task"]["index"]
    mode = sys.argv[1 + index]
    if mode == "saves":  # as a training worker: SIGTERM saves a checkpoint, then exit 75
        signal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.2), sys.exit(75)))
    print(f"ready {index} {config['cluster']['worker'][index]}", flush=True)
    if mode.startswith("preempted"):  # its own machine's signal, or a peer's: saved, exit 75
        time.sleep(0.3 if mode == "preempted" else 1.5)
        sys.exit(75)
    if mode == "ok":
        sys.exit(0)
    if mode == "exit3":
        time.sleep(0.3)
        sys.exit(3)
    if mode == "sigkill":
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "progress":
        for step in range(1, 6):
            sys.stdout.write("\\b" * 20 + "\\r" + f"\\x1b[1m{step}/5\\x1b[0m loss")
            sys.stdout.flush()
            time.sleep(0.01)
        sys.stdout.write("\\n")
        print("a warning", file=sys.stderr, flush=True)
        sys.stdout.write("\\x1b[1mno newline\\x1b[0m")
        sys.exit(0)
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)  # "sleep" and "stubborn": wait to be stopped (bounded all the same).
""")


@pytest.fixture(scope="module")
def fake_worker(tmp_path_factory):
    path = tmp_path_factory.mktemp("fake") / "worker.py"
    path.write_text(FAKE_WORKER)
    return str(path)


def alive(pid):
    """Whether a process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def run_fake(fake_worker, modes, **kwargs):
    """Runs launch() on the stand-in worker; returns (status, stdout, stderr, seconds)."""
    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    status = launcher.launch(
        len(modes),
        [],
        command=[sys.executable, fake_worker, *modes],
        output=out,
        errors=err,
        **kwargs,
    )
    return status, out.getvalue(), err.getvalue(), time.monotonic() - start


def started_pids(text):
    return {int(i): int(p) for i, p in re.findall(r"started worker (\d+) \(pid (\d+)\)", text)}


class Log:
    """Collects a process's merged output in a thread; ends its process group on end()."""

    def __init__(self, process):
        self.process = process
        self._lines = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for line in self.process.stdout:
            self._lines.append(line)

    def text(self):
        return "".join(self._lines)

    def wait_for(self, pattern, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.text())
            if match:
                return match
            assert self.process.poll() is None, f"exited before {pattern!r}:\n{self.tail()}"
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} within {timeout} s:\n{self.tail()}")

    def join(self):
        self._thread.join(timeout=30)

    def tail(self, chars=6000):
        return self.text()[-chars:]

    def end(self):
        """Kills whatever is left of the process group (launcher and workers)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        self.join()


# --- Unit tests -------------------------------------------------------------------------


def test_cluster_configs_give_every_worker_the_same_cluster_and_its_own_index():
    configs = launcher.cluster_configs(3, [2001, 2002, 2003])
    workers = ["127.0.0.1:2001", "127.0.0.1:2002", "127.0.0.1:2003"]
    assert configs == [
        {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}} for i in range(3)
    ]
    # What a worker reads: TF's own resolver agrees on the cluster and the task.
    os.environ["TF_CONFIG"] = json.dumps(configs[2])
    try:
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        assert resolver.cluster_spec().as_dict() == {"worker": workers}
        assert (resolver.task_type, resolver.task_id) == ("worker", 2)
    finally:
        del os.environ["TF_CONFIG"]


@pytest.mark.parametrize(
    "num_workers, ports, message",
    [
        (0, [], "num_workers must be an integer >= 1. Received: num_workers=0"),
        (2, [2001], r"ports must hold one port per worker \(2\). Received: \[2001\]"),
        (2, [2001, 2001], "ports must be distinct"),
        (1, [70000], "ports must be distinct integers in"),
    ],
)
def test_cluster_configs_refuse_bad_arguments(num_workers, ports, message):
    with pytest.raises(ValueError, match=message):
        launcher.cluster_configs(num_workers, ports)


def test_free_ports_are_distinct_and_free():
    ports = launcher.free_ports(4)
    assert len(set(ports)) == 4
    for port in ports:
        with launcher.socket.create_server(("127.0.0.1", port)):
            pass


def test_the_launcher_chooses_the_strategy():
    command = launcher.train_command(["--model_dir=x"], python="py")
    assert command == [
        "py",
        "-m",
        "keras_alexnet.train",
        "--strategy=multi_worker",
        "--model_dir=x",
    ]
    for arg in ("--strategy=mirrored", "--cpu_replicas=2"):
        with pytest.raises(ValueError, match=f"train_args must not set --.*Received: {arg}"):
            launcher.train_command(["--model_dir=x", arg])


def test_progress_states_are_shown_when_flushed_and_at_most_once_per_interval():
    now = [0.0]
    lines = worker_output.OutputLines(progress_interval=10, clock=lambda: now[0])
    # Keras' Progbar: "\r" + state, then "\b" * width + "\r" + the next state.
    assert lines.feed(b"Epoch 1/1\n\r\x1b[1m1/3\x1b[0m a") == ["Epoch 1/1", "1/3 a"]
    now[0] = 5.0
    assert lines.feed(b"\b\b\b\b\b\r2/3 b") == []  # 5 s after the last state shown
    now[0] = 16.0
    assert lines.feed(b"\b\b\b\b\b\r3/3 c") == ["3/3 c"]
    # Text after an unfinished bar is a line of its own; a \r may be half of a \r\n.
    assert lines.feed(b"Done: step 3\r") == []
    assert lines.feed(b"\nWeights") == ["Done: step 3"]
    assert lines.close() == ["Weights"]
    colours = worker_output.OutputLines(keep_ansi=True)
    assert colours.feed(b"\x1b[1mbold\x1b[0m\n") == ["\x1b[1mbold\x1b[0m"]


def test_exits_are_described_in_words():
    assert launcher.describe_exit(1) == "exited with status 1"
    assert launcher.describe_exit(-9) == "was killed by SIGKILL"
    assert launcher.describe_exit(-15) == "was killed by SIGTERM"


# --- The launcher on stand-in workers (seconds) -----------------------------------------


def test_lines_are_prefixed_and_progress_bars_thinned(fake_worker):
    status, out, err, _ = run_fake(fake_worker, ["progress", "ok"], progress_interval=60)
    assert status == 0, err
    lines = out.splitlines()
    assert re.search(r"^\[worker 0\] ready 0 127\.0\.0\.1:\d+$", out, re.M), out
    assert re.search(r"^\[worker 1\] ready 1 127\.0\.0\.1:\d+$", out, re.M), out
    # \b and colour codes are gone; of the \r updates only the first (then the interval
    # hides the rest) and the final \n line are shown.
    progress = [line for line in lines if line.startswith("[worker 0] ") and "/5" in line]
    assert progress == ["[worker 0] 1/5 loss", "[worker 0] 5/5 loss"], out
    assert "[worker 0] a warning" in err and "a warning" not in out
    assert "[worker 0] no newline" in lines, out
    assert "[launch] all 2 workers finished" in err


def test_a_failed_worker_stops_the_others(fake_worker):
    status, _, err, seconds = run_fake(fake_worker, ["sleep", "exit3", "sleep"])
    assert status == launcher.EXIT_WORKER_FAILED
    pids = started_pids(err)
    assert f"[launch] worker 1 (pid {pids[1]}) exited with status 3: stopping the other" in err
    assert f"stopping worker 0 (pid {pids[0]}) with SIGTERM" in err
    assert f"stopping worker 2 (pid {pids[2]}) with SIGTERM" in err
    assert seconds < 20  # not the workers' 60 s
    assert not any(alive(pid) for pid in pids.values())


def test_a_worker_killed_by_a_signal_is_named_first(fake_worker):
    # Both have ended by the launcher's next look (every 2 s): worker 1 was killed, and
    # worker 0 exited with an error, as a lost peer makes it; the cause is named first.
    status, _, err, _ = run_fake(fake_worker, ["exit3", "sigkill"], poll_interval=2.0)
    assert status == launcher.EXIT_WORKER_FAILED
    pids = started_pids(err)
    killed = f"[launch] worker 1 (pid {pids[1]}) was killed by SIGKILL: stopping the other"
    assert killed in err, err
    assert err.index(killed) < err.index(f"[launch] worker 0 (pid {pids[0]}) exited with status 3")


def test_timeout_stops_the_job_and_sigkill_follows_an_ignored_sigterm(fake_worker):
    status, _, err, seconds = run_fake(
        fake_worker, ["sleep", "stubborn"], timeout=1.5, grace_period=1.0
    )
    assert status == launcher.EXIT_TIMEOUT
    pids = started_pids(err)
    assert "timed out after 1.5 s: stopping the workers" in err
    assert f"worker 1 (pid {pids[1]}) still runs 1 s after SIGTERM: SIGKILL" in err
    assert seconds < 20
    assert not any(alive(pid) for pid in pids.values())


def test_a_signal_to_the_launcher_reaches_every_worker_and_their_saved_stop_is_75(fake_worker):
    out, err = io.StringIO(), io.StringIO()

    def signal_when_ready():  # the launcher's handlers are set before it starts workers
        deadline = time.monotonic() + 60
        while out.getvalue().count("ready") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=signal_when_ready, daemon=True).start()
    status = launcher.launch(
        2, [], command=[sys.executable, fake_worker, "saves", "saves"], output=out, errors=err
    )
    err = err.getvalue()
    assert status == launcher.EXIT_PREEMPTED, err
    pids = started_pids(err)
    for i in (0, 1):
        assert f"stopping worker {i} (pid {pids[i]}) with SIGTERM" in err
    assert "every worker saved a checkpoint: rerun the same command to resume" in err
    assert "SIGKILL" not in err


def test_a_worker_preempted_alone_is_followed_not_stopped(fake_worker):
    # Worker 1's machine is preempted; worker 0 learns it from the cluster and saves too.
    status, _, err, seconds = run_fake(fake_worker, ["preempted_late", "preempted"])
    assert status == launcher.EXIT_PREEMPTED, err
    pids = started_pids(err)
    assert f"worker 1 (pid {pids[1]}) stopped on a signal after saving a checkpoint" in err
    assert "with SIGTERM" not in err  # the launcher waited for worker 0 to save
    assert "every worker saved a checkpoint" in err
    # One that does not follow within the grace period: the job failed.
    status, _, err, _ = run_fake(fake_worker, ["sleep", "preempted"], grace_period=1.0)
    assert status == launcher.EXIT_WORKER_FAILED, err
    assert f"stopping worker 0 (pid {started_pids(err)[0]}) with SIGTERM" in err


def test_sigint_to_the_launcher_stops_every_worker(fake_worker):
    script = (
        "import sys; from keras_alexnet.training import launcher; "
        f"sys.exit(launcher.launch(2, [], command=[sys.executable, {fake_worker!r}, 'sleep', "
        "'sleep']))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    log = Log(process)
    try:
        log.wait_for(r"\[worker 1\] ready 1", timeout=120)
        log.wait_for(r"\[worker 0\] ready 0", timeout=30)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 128 + signal.SIGINT
        log.join()
        text = log.text()
        assert "[launch] received SIGINT: stopping the workers" in text
        assert not any(alive(pid) for pid in started_pids(text).values())
    finally:
        log.end()


# --- Real training workers (about a minute each on two busy cores) ----------------------


def train_args(model_dir, root, *extra):
    return [
        f"--model_dir={model_dir}",
        "--dataset=folder",
        f"--data_dir={root}",
        "--variant=tiny",
        "--batch_size=8",
        "--epochs=1",
        "--stats_images=16",
        "--init=paper",
        "--learning_rate=0.001",
        "--checkpoint_every=2",
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


def wait_for_checkpoint(log, model_dir, after=0, seconds=400):
    """Waits until the chief's state file names a checkpoint above `after`; its number."""
    deadline = time.monotonic() + seconds
    while True:
        latest = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
        if latest and int(latest.rsplit("-", 1)[1]) > after:
            return int(latest.rsplit("-", 1)[1])
        assert log.process.poll() is None, log.tail()
        assert time.monotonic() < deadline, f"no checkpoint after {after}:\n{log.tail()}"
        time.sleep(0.02)


def test_a_killed_then_a_preempted_worker_and_the_rerun_ends_bit_identical(
    tmp_path, tiny_root, two_workers
):
    model_dir = tmp_path / "run"
    args = train_args(model_dir, tiny_root, *TWO_WORKER_EXTRA)

    # The launcher runs in this process (InProcessLauncher); the tool's command line is
    # the two_workers fixture's.
    # 1. Worker 1 is killed after ckpt-2: the launcher stops the job. Worker 0, waiting on
    # its lost peer, cannot act on the launcher's SIGTERM: the SIGKILL after the grace
    # period ends it, so a short grace period is all this stop needs.
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

    # 2. The rerun resumes; SIGTERM reaches worker 1 only (a preempted machine) after its
    # next checkpoint. Worker 0 learns of it through the cluster and both save one step.
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

    # 3. The rerun starts at the very step saved, and ends as if nothing had happened.
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
