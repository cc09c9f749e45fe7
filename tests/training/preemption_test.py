"""preemption: SIGTERM and SIGINT are recorded, and a run saves its current step and stops.

The signal in a fresh process, on one device, two replicas and two workers, is tested in
train_test.py and launch_test.py; here the signal comes from inside the training step,
so that the step it stops at is known.
"""

import dataclasses
import os
import re
import signal

import pytest
import tiny

from keras_alexnet.runs import folder as run_folder
from keras_alexnet.training import distribute
from keras_alexnet.training import launcher
from keras_alexnet.training import preemption
from keras_alexnet.training import trainer


def test_signals_are_recorded_while_watched_and_handlers_restored_after():
    before = {s: signal.getsignal(s) for s in preemption.SIGNALS}
    with preemption.SignalWatch() as watch:
        os.kill(os.getpid(), signal.SIGTERM)
        assert watch.signal_name == "SIGTERM"
        os.kill(os.getpid(), signal.SIGTERM)  # a second SIGTERM changes nothing
        assert watch.signal_name == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):  # a second signal that is SIGINT: at once
            os.kill(os.getpid(), signal.SIGINT)
    assert {s: signal.getsignal(s) for s in preemption.SIGNALS} == before


def test_the_launcher_knows_the_status_of_a_saved_stop():
    assert launcher.EXIT_PREEMPTED == preemption.EXIT_PREEMPTED


def test_ctrl_c_in_step_3_saves_step_3_and_the_rerun_resumes_there(
    tmp_path, tiny_root, monkeypatch, capsys
):
    # SIGTERM takes the same path; it is sent from outside in train_test and launch_test.
    signum = signal.SIGINT
    run_and_sum = distribute.run_and_sum

    def signalling_step(*args, **kwargs):
        step_fn = run_and_sum(*args, **kwargs)
        calls = []

        def step(*inputs):
            calls.append(1)
            if len(calls) == 3:
                os.kill(os.getpid(), signum)  # handled after this step's Python returns
            return step_fn(*inputs)

        return step

    monkeypatch.setattr(distribute, "run_and_sum", signalling_step)
    # No periodic checkpoint: the one written is the signal's.
    cfg = tiny.train_config(tmp_path / "run", tiny_root, checkpoint_every=100, deterministic=True)
    with pytest.raises(preemption.Preempted) as stopped:
        trainer.train(cfg)
    name = signal.Signals(signum).name
    assert stopped.value.signal_name == name and stopped.value.step == 3
    assert stopped.value.checkpoint.endswith("ckpt-3")
    assert run_folder.latest_checkpoint(str(tmp_path / "run")) == stopped.value.checkpoint
    assert f"Stopped by {name} at step 3" in str(stopped.value)
    assert not (tmp_path / "run" / "train.lock").exists()
    monkeypatch.undo()
    capsys.readouterr()
    resumed = trainer.train(cfg)
    assert re.search(r"Resuming from \S+ckpt-3: epoch 1, step 3 of 6", capsys.readouterr().out)
    straight = trainer.train(dataclasses.replace(cfg, model_dir=str(tmp_path / "straight")))
    assert resumed["step"] == straight["step"] == 6
    assert resumed["weights_sha256"] == straight["weights_sha256"]
