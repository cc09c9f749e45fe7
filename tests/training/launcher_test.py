"""launch (the local launcher): its cluster, its commands, and its bookkeeping.

The launcher's bookkeeping (prefixes, progress bars, a lost worker, signals, saved stops,
the timeout) is tested on a tiny stand-in worker that starts in milliseconds; the real
training workers are in launcher_cluster_test.
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

import pytest
import tensorflow as tf
from worker_processes import Log
from worker_processes import alive
from worker_processes import started_pids

from keras_alexnet.training import launcher
from keras_alexnet.training import worker_output

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
