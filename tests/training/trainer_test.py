"""The training loop: config checks, strategies, exact resume, NaN stop, summaries."""

import glob
import os
import re
import shutil
import signal
import subprocess
import time

import fresh_process
import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny
from event_files import logged_scalars

import keras_alexnet
from keras_alexnet.data import image_files
from keras_alexnet.data import preprocessing
from keras_alexnet.data import shapes as shapes_dataset
from keras_alexnet.runs import folder as run_folder
from keras_alexnet.runs import lock as run_lock
from keras_alexnet.training import evaluation
from keras_alexnet.training import preemption
from keras_alexnet.training import trainer


def test_training_steps_write_checkpoints_and_summaries(tmp_path, tiny_root):
    model_dir = tmp_path / "run"
    result = trainer.train(tiny.train_config(model_dir, tiny_root, checkpoint_every=2, log_every=1))
    assert result["step"] == 6 and result["epoch"] == 1  # 48 images / batch 8
    assert np.isfinite(result["train"]["cross_entropy"])
    assert result["validation"]["count"] == 16
    assert 0.0 <= result["validation"]["top1_error"] <= 1.0
    assert sorted(os.listdir(model_dir / "checkpoints"))[-1].startswith("ckpt-6")
    assert (model_dir / "labels.txt").read_text().split() == sorted(shapes_dataset.class_names(4))
    tags = {}
    for split in ("train", "validation"):
        tags[split] = set()
        for path in glob.glob(str(model_dir / split / "events.*")):
            for event in tf.compat.v1.train.summary_iterator(path):
                tags[split].update(v.tag for v in event.summary.value)
    scalars = {"cross_entropy", "top1_error_pct", "top5_error_pct"}
    # Train and validation report the same quantities under the same tags (one chart each).
    assert scalars == tags["validation"]
    assert (
        scalars | {"weight_decay", "total_loss", "learning_rate", "images_per_second"}
        <= (tags["train"])
    )
    assert {"conv1_kernels", "augmented_inputs", "skipped_images"} <= tags["train"]
    logged = {
        tag: logged_scalars(model_dir / "train", tag)
        for tag in ("cross_entropy", "weight_decay", "total_loss", "top1_error_pct")
    }
    assert sorted(logged["total_loss"]) == [1, 2, 3, 4, 5, 6]
    for step, total in logged["total_loss"].items():
        assert total == pytest.approx(
            logged["cross_entropy"][step] + logged["weight_decay"][step], rel=1e-6
        )
    assert logged["top1_error_pct"][6] == pytest.approx(100 * result["train"]["top1_error"])
    # Step 1's weight decay is that of the initial weights: sum(model.losses) of the same
    # model built again with the run's seed, the paper's wd / 2 * |w|^2 over the kernels.
    keras.utils.set_random_seed(0)
    initial = keras_alexnet.AlexNet(4, variant="tiny", weight_decay=5e-4, init="paper")
    assert logged["weight_decay"][1] == pytest.approx(
        sum(float(x) for x in initial.losses), rel=1e-5
    )
    validation = logged_scalars(model_dir / "validation", "top1_error_pct")
    assert validation[6] == pytest.approx(100 * result["validation"]["top1_error"])
    # The restored model is the trained one: same validation figures.
    model, run = run_folder.restore_model(str(model_dir))
    assert run["variant"] == "tiny" and run["num_classes"] == 4
    again = trainer.train(tiny.train_config(model_dir, tiny_root))
    assert again["step"] == 6  # nothing left to do: the run had finished
    del model


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, tiny_root):
    model_dir = tmp_path / "run"
    cfg = tiny.train_config(model_dir, tiny_root, checkpoint_every=100, log_every=100)
    first = trainer.train(dataclass_replace(cfg, max_steps=1))
    assert first["checkpoint"].endswith("ckpt-1")
    # Resumed with an absurd learning rate, the loss explodes within the epoch.
    with pytest.raises(FloatingPointError, match=r"(loss became|no longer finite).*ckpt-1"):
        trainer.train(dataclass_replace(cfg, learning_rate=1e9))
    checkpoints = tf.train.get_checkpoint_state(str(model_dir / "checkpoints"))
    assert checkpoints.model_checkpoint_path.endswith("ckpt-1")
    model, _ = run_folder.restore_model(str(model_dir))
    assert all(np.isfinite(v.numpy()).all() for v in model.weights)


def test_resume_finds_checkpoints_the_state_file_does_not_name(tmp_path, tiny_root, capsys):
    # A run killed after writing a checkpoint's files but before naming it in the state
    # file: the resumed run must take that checkpoint, not start over on top of it.
    model_dir = tmp_path / "run"
    cfg = tiny.train_config(model_dir, tiny_root, checkpoint_every=1, log_every=100)
    trainer.train(dataclass_replace(cfg, max_steps=2))
    directory = model_dir / "checkpoints"
    os.remove(directory / "checkpoint")
    assert tf.train.latest_checkpoint(str(directory)) is None
    assert run_folder.latest_checkpoint(str(model_dir)).endswith("ckpt-2")
    # An index cut short while being written is passed over for the one before.
    with open(directory / "ckpt-2.index", "r+b") as f:
        f.truncate(10)
    assert run_folder.latest_checkpoint(str(model_dir)).endswith("ckpt-1")
    capsys.readouterr()
    result = trainer.train(dataclass_replace(cfg, max_steps=3))
    assert re.search(r"Resuming from \S+ckpt-1: epoch 1, step 1 of 6", capsys.readouterr().out)
    assert result["step"] == 3


@pytest.mark.parametrize("split", ["train", "validation"])
def test_an_image_that_fails_to_decode_is_named(tmp_path, tiny_root, split):
    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    damaged = sorted((root / split).iterdir())[0] / "damaged.png"
    damaged.write_bytes(tiny.damaged_png())
    assert image_files.image_file_problem(str(damaged)) is None
    with pytest.raises(tf.errors.InvalidArgumentError):
        preprocessing.decode_and_center_crop(tf.constant(tiny.damaged_png()))
    model_dir = tmp_path / "run"
    cfg = tiny.train_config(
        model_dir, str(root), checkpoint_every=1, log_every=100, on_bad_image="fail"
    )
    with pytest.raises(ValueError) as raised:
        trainer.train(cfg)
    message = str(raised.value)
    assert f"{damaged}: " in message and "PNG" in message, message
    if "of step" not in message and split == "train":
        # The statistics pass met it first, before any step.
        assert "1 training image(s) do not decode" in message, message
        assert run_folder.latest_checkpoint(str(model_dir)) is None
        return
    if split == "validation":
        # The epoch's steps ran; validation found the file. The message names the newest
        # checkpoint (the epoch-end one is written after validation).
        assert "1 validation image(s) do not decode" in message, message
        named = re.search(r"resumes from (\S+ckpt-\d+)\.", message).group(1)
        assert named == run_folder.latest_checkpoint(str(model_dir))
        return
    match = re.search(r"1 training image\(s\) of step (\d+) do not decode", message)
    assert match, message
    step = int(match.group(1))
    # The steps before the damaged one were kept, and the message names their checkpoint.
    if step > 1:
        assert f"resumes from {model_dir / 'checkpoints' / f'ckpt-{step - 1}'}" in message


def test_cosine_schedule_follows_the_step_across_a_resume(tmp_path, tiny_root):
    model_dir = tmp_path / "run"
    base = 0.002
    cfg = tiny.train_config(
        model_dir, tiny_root, epochs=2, learning_rate=base, lr_schedule="cosine", log_every=1
    )
    first = trainer.train(dataclass_replace(cfg, max_steps=4))
    assert first["step"] == 4
    second = trainer.train(cfg)
    assert second["step"] == 12  # 2 epochs of 6 steps
    # Step s (1-based) runs at base * (1 + cos(pi * (s - 1) / 12)) / 2, whether the run was
    # interrupted or not, and the plateau rule lowers nothing.
    logged = logged_scalars(model_dir / "train", "learning_rate")
    assert sorted(logged) == list(range(1, 13))
    steps = np.arange(1, 13)
    expected = base * (1 + np.cos(np.pi * (steps - 1) / 12)) / 2
    np.testing.assert_allclose([logged[s] for s in steps], expected, rtol=1e-6)
    assert second["learning_rate"] == pytest.approx(expected[-1], rel=1e-6)


def dataclass_replace(cfg, **changes):
    import dataclasses

    return dataclasses.replace(cfg, **changes)


def final_weights(model_dir):
    tiny.register()
    model, _ = run_folder.restore_model(str(model_dir))
    return [v.numpy() for v in model.weights]


def signal_args(root, replicas, checkpoint_every=2):
    """Flags of the runs that are stopped by a signal and resumed, and of their reference.

    Batches of 6: 8 steps an epoch; under 2 replicas the 16 validation images leave the
    last validation step uneven (3 steps of 2 x 3 places), at every epoch end.
    """
    return [
        "--dataset=folder",
        f"--data_dir={root}",
        "--recipe=paper",
        "--variant=tiny",
        f"--cpu_replicas={replicas}",
        "--batch_size=6",
        "--epochs=2",
        f"--checkpoint_every={checkpoint_every}",
        "--learning_rate=0.001",
        "--init=paper",
        "--stats_images=16",
        "--deterministic",
        *tiny.FAST_FLAGS,
    ]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_root):
    """start(replicas) starts (once) a run of `signal_args` that nothing stops, in a fresh
    process, and returns weights(): that run's final weights, once it has ended. The run
    goes on while the test does its own."""
    runs = {}

    def start(replicas):
        if replicas not in runs:
            model_dir = tmp_path_factory.mktemp(f"straight{replicas}")
            process = subprocess.Popen(
                fresh_process.command(
                    "train", f"--model_dir={model_dir}", *signal_args(tiny_root, replicas)
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            runs[replicas] = dict(model_dir=model_dir, process=process, weights=None)
        run = runs[replicas]

        def weights():
            if run["weights"] is None:
                stdout, stderr = run["process"].communicate(timeout=600)
                assert run["process"].returncode == 0, stderr[-3000:]
                # Validation at both epoch ends counted every image once, on one replica
                # or two.
                assert stdout.count("over 16 images") == 2, stdout[-3000:]
                run["weights"] = final_weights(run["model_dir"])
            return run["weights"]

        return weights

    yield start
    for run in runs.values():
        run["process"].kill()
        run["process"].communicate()


def start_training(model_dir, args):
    return subprocess.Popen(
        fresh_process.command("train", f"--model_dir={model_dir}", *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
    )


def wait_for_checkpoint(process, model_dir, after=0, seconds=300):
    """Waits until `process` has written a checkpoint numbered above `after`; its number."""
    deadline = time.time() + seconds
    while True:
        numbers = [
            int(re.search(r"ckpt-(\d+)\.index$", path).group(1))
            for path in glob.glob(str(model_dir / "checkpoints" / "ckpt-*.index"))
        ]
        if any(n > after for n in numbers):
            return max(numbers)
        assert process.poll() is None, process.stdout.read().decode()[-3000:]
        assert time.time() < deadline, f"no checkpoint after {after} within {seconds} s"
        time.sleep(0.02)


# One device's preemption is also shown in process (preemption_test: Ctrl-C in step 3);
# the subprocess run on one device is left to `pytest -m slow`.
@pytest.mark.parametrize("replicas", [pytest.param(1, marks=pytest.mark.slow), 2])
def test_sigterm_then_sigkill_mid_run_and_the_resumed_run_ends_bit_identical(
    tmp_path, tiny_root, replicas, uninterrupted
):
    # Periodic checkpoints every 3 steps, of 16: SIGTERM comes after ckpt-3 and the run
    # saves the step it has reached, whichever it is (a save of its own unless it is a
    # periodic or epoch-end step: preemption_test makes sure of one); SIGKILL comes after
    # the resumed run's next checkpoint and loses the steps since.
    args = signal_args(tiny_root, replicas, checkpoint_every=3)
    reference = uninterrupted(replicas)  # starts the uninterrupted run
    model_dir = tmp_path / "run"
    process = start_training(model_dir, args)
    try:
        wait_for_checkpoint(process, model_dir)
        if replicas == 1:
            # A second run on the live run's model_dir refuses at once, naming it.
            with pytest.raises(
                run_lock.RunLocked, match=rf"pid {process.pid} on host \S+, started"
            ):
                trainer.train(tiny.train_config(model_dir, tiny_root))
            assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        status = process.wait(timeout=120)
        seconds = time.monotonic() - signalled
        output = process.stdout.read().decode()
    finally:
        process.kill()
        process.wait()
    assert status == preemption.EXIT_PREEMPTED, output[-3000:]
    stopped = re.search(
        r"Stopped by SIGTERM at step (\d+), [\d.]+ s after the signal; checkpoint (\S+)\. ",
        output,
    )
    assert stopped, output[-3000:]
    step, checkpoint = int(stopped.group(1)), stopped.group(2)
    assert 3 <= step < 16 and checkpoint.endswith(f"ckpt-{step}")
    assert run_folder.latest_checkpoint(str(model_dir)) == checkpoint
    assert not (model_dir / "train.lock").exists()
    print(f"{replicas} replica(s): SIGTERM to exit {seconds:.2f} s, saved step {step}")
    assert seconds < 60

    # The rerun starts at the very step the signal stopped: no step lost. Killed after
    # its next checkpoint, it leaves its lock behind.
    process = start_training(model_dir, args)
    try:
        killed_at = wait_for_checkpoint(process, model_dir, after=step)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    output = process.stdout.read().decode()
    assert re.search(
        rf"Resuming from {re.escape(checkpoint)}: epoch \d, step \d of 8, step {step} in all",
        output,
    ), output[-3000:]
    assert (model_dir / "train.lock").exists()

    resumed = fresh_process.run_module("train", f"--model_dir={model_dir}", *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # The killed run's process is gone, so the rerun takes its lock over.
    assert re.search(
        rf"warning: taking over the lock \S+train.lock of a run that is gone \(pid "
        rf"{process.pid} on host .*\): its process {process.pid} no longer runs",
        resumed.stdout,
    ), resumed.stdout[-3000:]
    assert not (model_dir / "train.lock").exists()  # released at the end
    # TensorFlow's Python code logs a line at INFO for each checkpoint saved; the tool
    # keeps them off (the C++ lines logged at import are TensorFlow's to control).
    assert not re.search(r"^I\d{4} .*\.py:\d+\]", resumed.stderr, re.M), resumed.stderr[-3000:]
    # Standard output is a pipe: plain progress lines (every --log_every=10 steps and at
    # an epoch's end: one for each epoch the resumed run ends), no terminal escapes.
    assert "\x1b" not in resumed.stdout and "\b" not in resumed.stdout
    lines = re.findall(
        r"^  step (\d+)/8 +cross_entropy \S+ +weight_decay \S+ +top1_err \S+%", resumed.stdout, re.M
    )
    assert lines and set(lines) == {"8"}, resumed.stdout[-3000:]
    resume = re.search(
        r"Resuming from \S+ckpt-(\d+): epoch \d, step \d of 8, step (\d+) in all", resumed.stdout
    )
    assert resume, resumed.stdout[-3000:]
    assert int(resume.group(1)) == int(resume.group(2)) >= killed_at > step
    # Stopped twice and resumed, or not: the same weights to the bit.
    for a, b in zip(final_weights(model_dir), reference()):
        np.testing.assert_array_equal(a, b)


def test_a_rerun_at_max_steps_trains_nothing(tmp_path, tiny_root, capsys):
    cfg = tiny.train_config(tmp_path / "run", tiny_root, max_steps=2, checkpoint_every=100)
    assert trainer.train(cfg)["step"] == 2
    capsys.readouterr()
    again = trainer.train(cfg)
    assert again["step"] == 2 and again["checkpoint"].endswith("ckpt-2")
    assert "Nothing to do" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == [
        "checkpoint",
        "ckpt-2.data-00000-of-00001",
        "ckpt-2.index",
    ]


def test_a_resume_after_two_reductions_ends_bit_identical(tmp_path, tiny_root):
    # The paper's init leaves the tiny network at chance on this set: the validation
    # error does not improve, and with a patience of 1 the rate is lowered after epochs
    # 2 and 3. The interrupted run stops in epoch 4 and resumes there.
    # The folder also holds files that pass the scan and fail to decode. They are found by
    # decoding every file once, before the first step, and left out of the file list; the
    # epochs' orders, steps and batches are then those of the remaining files, and the
    # resumed run reads the same list from bad_images.txt, so it takes the same steps.
    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    for split, classes in (("train", 2), ("validation", 1)):
        for class_dir in sorted((root / split).iterdir())[:classes]:
            (class_dir / "damaged.png").write_bytes(tiny.damaged_png())
    cfg = tiny.train_config(
        tmp_path / "straight",
        str(root),
        epochs=4,
        learning_rate=0.01,
        lr_patience=1,
        lr_max_reductions=2,
        deterministic=True,
        on_bad_image="skip",
    )
    straight = trainer.train(cfg)
    assert straight["learning_rate"] == pytest.approx(1e-4), "the rate was not lowered twice"
    cut = dataclass_replace(cfg, model_dir=str(tmp_path / "cut"))
    assert trainer.train(dataclass_replace(cut, max_steps=20))["step"] == 20  # epoch 4, step 2
    resumed = trainer.train(cut)
    assert resumed["step"] == straight["step"] == 24
    assert resumed["weights_sha256"] == straight["weights_sha256"]
    listed = (tmp_path / "cut" / "bad_images.txt").read_text()
    assert listed.count("\tInvalid PNG data") == 3


def test_validation_split_is_recorded_kept_on_resume_and_used_by_evaluate(tmp_path, tiny_root):
    # One folder of class folders: the tiny set's training images, no validation folder.
    root = tmp_path / "data"
    shutil.copytree(os.path.join(tiny_root, "train"), root)
    cfg = tiny.train_config(tmp_path / "run", str(root), validation_split=0.25, max_steps=2)
    trainer.train(cfg)
    run = run_folder.read_run(cfg.model_dir)
    assert run["validation_split"] == 0.25 and run["layout"].startswith("validation_split=0.25")
    report = evaluation.evaluate(cfg.model_dir)
    assert report["images"] == 12  # 3 of each class's 12 images
    with pytest.raises(ValueError, match="validation_split=0.25.*validation_split=0.5"):
        trainer.train(dataclass_replace(cfg, validation_split=0.5))
