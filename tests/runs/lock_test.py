"""run_lock: one training run per model_dir; a live run's lock refuses, a dead one's is taken.

A lock held by another live process, and one left by a killed run, are tested in fresh
processes in train_test.py; here the holder is written by hand.
"""

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import tiny

from keras_alexnet import errors
from keras_alexnet.runs import lock as run_lock
from keras_alexnet.serving import saved_model as export
from keras_alexnet.training import evaluation
from keras_alexnet.training import trainer


def write_lock(model_dir, **holder):
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, run_lock.LOCK_FILE)
    with open(path, "w") as f:
        json.dump(holder, f)
    return path


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_lock_names_its_run_and_is_removed_on_release(tmp_path):
    with run_lock.RunLock(str(tmp_path)) as lock:
        holder = json.loads((tmp_path / run_lock.LOCK_FILE).read_text())
        assert holder["host"] == socket.gethostname() and holder["pid"] == os.getpid()
        assert holder["started"] == holder["heartbeat"] <= time.time()
        assert lock.holder == holder
    assert not (tmp_path / run_lock.LOCK_FILE).exists()


def test_a_live_runs_lock_refuses_another_at_once_naming_it(tmp_path):
    with run_lock.RunLock(str(tmp_path)):
        start = time.monotonic()
        with pytest.raises(run_lock.RunLocked) as refused:
            run_lock.RunLock(str(tmp_path)).acquire()
        assert time.monotonic() - start < 1
    message = str(refused.value)
    assert f"pid {os.getpid()} on host {socket.gethostname()}, started " in message
    assert str(tmp_path) in message


def test_the_heartbeat_is_refreshed_while_the_lock_is_held(tmp_path):
    with run_lock.RunLock(str(tmp_path), lease=0.2):
        first = json.loads((tmp_path / run_lock.LOCK_FILE).read_text())["heartbeat"]
        time.sleep(0.3)
        later = json.loads((tmp_path / run_lock.LOCK_FILE).read_text())["heartbeat"]
    assert later > first


def test_a_lock_whose_process_is_gone_is_taken_over_with_a_warning(tmp_path, capsys):
    pid = dead_pid()
    now = time.time()
    write_lock(tmp_path, host=socket.gethostname(), pid=pid, started=now, heartbeat=now)
    with run_lock.RunLock(str(tmp_path)):
        holder = json.loads((tmp_path / run_lock.LOCK_FILE).read_text())
        assert holder["pid"] == os.getpid()
    out = capsys.readouterr().out
    assert f"warning: taking over the lock {tmp_path / run_lock.LOCK_FILE}" in out
    assert f"its process {pid} no longer runs on this host" in out


def test_another_hosts_lock_holds_for_its_lease_then_is_taken_over(tmp_path, capsys):
    now = time.time()
    write_lock(tmp_path, host="elsewhere", pid=1, started=now - 3600, heartbeat=now - 30)
    with pytest.raises(run_lock.RunLocked, match="pid 1 on host elsewhere"):
        run_lock.RunLock(str(tmp_path), lease=120).acquire()
    write_lock(tmp_path, host="elsewhere", pid=1, started=now - 3600, heartbeat=now - 300)
    with run_lock.RunLock(str(tmp_path), lease=120):
        pass
    assert "its heartbeat is 300 s old, more than the 120 s lease" in capsys.readouterr().out


def test_train_refuses_a_locked_model_dir_and_evaluate_and_export_run_beside_it(
    tmp_path, tiny_root, trained
):
    model_dir = tmp_path / "run"
    with run_lock.RunLock(str(model_dir)):
        with pytest.raises(run_lock.RunLocked, match=f"pid {os.getpid()} on host"):
            trainer.train(tiny.train_config(model_dir, tiny_root))
    assert not model_dir.exists()  # refused before writing anything
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        trainer.train(tiny.train_config(model_dir, tiny_root, batch_size=0))
    assert not model_dir.exists()  # nor does a config refused after the lock leave a folder
    trained_dir, _ = trained
    with run_lock.RunLock(trained_dir):  # a training run goes on there
        report = evaluation.evaluate(trained_dir)
        exported = export.export_run(trained_dir, str(tmp_path / "saved"), name="beside")
    assert report["images"] == 18
    assert os.path.isdir(exported)


def test_a_lock_of_the_wrong_types_is_judged_by_its_age(tmp_path, capsys):
    path = tmp_path / run_lock.LOCK_FILE
    for holder in (
        [1, 2],
        dict(host=["h"], pid="12", started="x", heartbeat=None),
        dict(host=socket.gethostname(), pid=True, started=0, heartbeat=0),
    ):
        write_lock(tmp_path, **holder) if isinstance(holder, dict) else path.write_text("[1, 2]")
        # Fresh: it may be a run's lock being written; refused, naming the lock file.
        with pytest.raises(run_lock.RunLocked, match="a lock file that is not a run's"):
            run_lock.RunLock(str(tmp_path), lease=120).acquire()
        # Older than the lease: taken over.
        old = time.time() - 300
        os.utime(path, (old, old))
        with run_lock.RunLock(str(tmp_path), lease=120):
            assert json.loads(path.read_text())["pid"] == os.getpid()
        assert "more than the 120 s lease" in capsys.readouterr().out


def test_a_lock_whose_pid_now_belongs_to_a_later_process_is_taken_over(tmp_path, capsys):
    # A live process of the same pid that started after the lock's run: the pid is reused.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.5)
        now = time.time()
        started = now - 3600
        write_lock(
            tmp_path, host=socket.gethostname(), pid=other.pid, started=started, heartbeat=now
        )
        with run_lock.RunLock(str(tmp_path)):
            pass
        assert f"its pid {other.pid} now belongs to another process" in capsys.readouterr().out
        # The same process, which started before the lock's time: still the holder.
        write_lock(tmp_path, host=socket.gethostname(), pid=other.pid, started=now, heartbeat=now)
        with pytest.raises(run_lock.RunLocked, match=f"pid {other.pid} on host"):
            run_lock.RunLock(str(tmp_path)).acquire()
    finally:
        other.kill()
        other.wait()


def test_a_lock_that_is_a_folder_is_named(tmp_path):
    (tmp_path / run_lock.LOCK_FILE).mkdir()
    with pytest.raises(errors.InputError, match="train.lock is a folder, not a run's lock"):
        run_lock.RunLock(str(tmp_path)).acquire()
