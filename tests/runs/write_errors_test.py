"""write_errors: a full disk or a read-only folder stops a run naming the path and the cause,
and the previous checkpoint stays the one a rerun resumes from.

The small filesystems are size-limited tmpfs mounts, which need root (CI runs as root on
this machine); elsewhere those tests are skipped with the reason.
"""

import contextlib
import dataclasses
import errno
import os
import re
import subprocess
import threading
import time

import pytest
import tensorflow as tf
import tiny

from keras_alexnet.runs import folder as run_folder
from keras_alexnet.runs import write_errors
from keras_alexnet.serving import saved_model as export
from keras_alexnet.training import summaries
from keras_alexnet.training import trainer


@contextlib.contextmanager
def tmpfs(path, size):
    """A tmpfs of `size` bytes mounted at `path` for the block; skips the test if it cannot."""
    os.makedirs(path, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path, options):
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


@contextlib.contextmanager
def read_only(folder):
    """Makes `folder` read-only for the block: a read-only bind mount of it on itself (a
    tmpfs with files open for writing cannot be remounted read-only as a whole, and root
    ignores file permissions)."""
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def disk_usage(folder):
    """Bytes the files under `folder` take on a tmpfs (whole 4 KB pages)."""
    total = 0
    for root, _, files in os.walk(folder):
        total += sum(-(-os.path.getsize(os.path.join(root, f)) // 4096) * 4096 for f in files)
    return total


def test_the_cause_is_said_in_words():
    assert write_errors.cause(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) == os.strerror(
        errno.ENOSPC
    )
    error = tf.errors.ResourceExhaustedError(
        None, None, "{{function_node x}} /d/ckpt-1_temp/part-0; No space left on device [Op:SaveV2]"
    )
    assert write_errors.cause(error) == "No space left on device"


def test_a_full_disk_stops_the_run_and_keeps_the_previous_checkpoint(tmp_path, tiny_root, capsys):
    cfg = tiny.train_config(tmp_path / "sized", tiny_root, checkpoint_every=1, log_every=100)
    trainer.train(dataclasses.replace(cfg, max_steps=1))
    one_checkpoint = disk_usage(tmp_path / "sized" / "checkpoints") - 4096  # the state file
    # Room for everything up to ckpt-1 and half of ckpt-2: its write fails part-way.
    size = disk_usage(tmp_path / "sized") + one_checkpoint // 2
    with tmpfs(tmp_path / "disk", size) as disk:
        model_dir = disk / "run"
        cfg = dataclasses.replace(cfg, model_dir=str(model_dir), max_steps=3)
        with pytest.raises(write_errors.WriteFailed) as failed:
            trainer.train(cfg)
        message = str(failed.value)
        prefix = model_dir / "checkpoints" / "ckpt-2"
        assert message.startswith(
            f"Could not write the checkpoint of step 2 (periodic) {prefix}: "
            "No space left on device."
        ), message
        previous = str(model_dir / "checkpoints" / "ckpt-1")
        assert f"The previous checkpoint is intact: {previous};" in message
        assert f"resume from {previous} once the folder can be written" in message
        assert not list((model_dir / "checkpoints").glob("ckpt-2*"))  # its pieces removed
        assert run_folder.latest_checkpoint(str(model_dir)) == previous
        assert not (model_dir / "train.lock").exists()
        # With room again, the rerun resumes from the checkpoint before the failed one.
        remount(disk, "size=64m")
        capsys.readouterr()
        assert trainer.train(cfg)["step"] == 3
        assert re.search(r"Resuming from \S+ckpt-1: epoch 1, step 1 of 6", capsys.readouterr().out)


def test_a_folder_made_read_only_mid_run_stops_it_at_the_next_checkpoint(
    tmp_path, tiny_root, capsys
):
    with tmpfs(tmp_path / "disk", 64 * 2**20) as disk, contextlib.ExitStack() as stack:
        model_dir = disk / "run"
        cfg = tiny.train_config(model_dir, tiny_root, epochs=2, checkpoint_every=2, log_every=1)
        folder = model_dir / "checkpoints"

        def make_read_only():  # as a network mount that turns read-only
            deadline = time.monotonic() + 300
            while not (folder / "ckpt-2.index").exists() and time.monotonic() < deadline:
                time.sleep(0.005)
            stack.enter_context(read_only(folder))

        thread = threading.Thread(target=make_read_only)
        thread.start()
        try:
            with pytest.raises(write_errors.WriteFailed) as failed:
                trainer.train(cfg)
        finally:
            thread.join()
        message = str(failed.value)
        match = re.match(
            r"Could not write the checkpoint of step (\d+) \(.*\) (\S+): (.*?)\.", message
        )
        assert match and match.group(3) == "Read-only file system", message
        assert int(match.group(1)) > 2 and match.group(2).endswith(f"ckpt-{match.group(1)}")
        latest = run_folder.latest_checkpoint(str(model_dir))
        assert f"The previous checkpoint is intact: {latest};" in message
        stack.close()  # writable again
        capsys.readouterr()
        trainer.train(cfg)
        step = int(re.search(r"ckpt-(\d+)$", latest).group(1))
        assert re.search(
            rf"Resuming from {re.escape(latest)}: .*step {step} in all", capsys.readouterr().out
        )


def test_summaries_that_cannot_be_written_are_noticed(tmp_path):
    # TensorFlow's summary writer drops a failed write without a word.
    with tmpfs(tmp_path / "disk", 2**20) as disk:
        writer = summaries.Writer(str(disk), True)
        writer.scalars("train", 1, {"loss": 1.0})
        writer.check()
        with read_only(disk / "train"):
            writer.scalars("train", 2, {"loss": 1.0})
            with pytest.raises(write_errors.WriteFailed) as failed:
                writer.check()
        assert str(failed.value) == (
            f"Could not write TensorBoard summaries to {disk / 'train'}: Read-only file system."
        )


def test_an_export_to_a_full_disk_leaves_nothing_and_says_why(tmp_path, trained):
    model_dir, _ = trained
    with tmpfs(tmp_path / "disk", 256 * 1024) as disk:
        with pytest.raises(write_errors.WriteFailed) as failed:
            export.export_run(model_dir, str(disk), name="tiny")
        message = str(failed.value)
        assert re.match(
            rf"Could not write export version 1 {re.escape(str(disk))}/tiny/\.partial-1-\d+: "
            r"No space left on device\. What it wrote is removed",
            message,
        ), message
        assert os.listdir(disk / "tiny") == []
