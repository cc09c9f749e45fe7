"""input_timeout: a stalled input stops the run with a message and a checkpoint."""

import re
import threading
import time

import pytest
import tiny

from keras_alexnet.data import input_timeout
from keras_alexnet.runs import folder as run_dir
from keras_alexnet.training import trainer as train


def stalling(items, release):
    """Yields `items`, then waits for `release` (a hung filesystem) before ending."""
    yield from items
    release.wait()


def test_a_stalled_iterator_times_out_once_with_the_stall_hook():
    release = threading.Event()
    calls = []
    iterator = input_timeout.TimedIterator(
        stalling([1, 2], release), 0.2, on_stall=lambda: calls.append(1) or "Saved here"
    )
    try:
        assert [next(iterator), next(iterator)] == [1, 2]
        start = time.monotonic()
        with pytest.raises(input_timeout.InputStalled, match=r"within 0.2 s.*\. Saved here\.$"):
            next(iterator)
        assert 0.2 <= time.monotonic() - start < 5
        with pytest.raises(input_timeout.InputStalled):
            next(iterator)
        assert calls == [1]
    finally:
        release.set()


def test_errors_and_the_end_of_the_input_pass_through():
    def failing():
        yield 1
        raise OSError("disk gone")

    iterator = input_timeout.TimedIterator(failing(), 5)
    assert next(iterator) == 1
    with pytest.raises(OSError, match="disk gone"):
        next(iterator)
    assert list(input_timeout.TimedIterator(iter([1, 2]), 5)) == [1, 2]
    assert list(input_timeout.TimedIterator(iter([1, 2]), 0)) == [1, 2]  # no timeout
    with pytest.raises(ValueError, match="seconds must be >= 0"):
        input_timeout.TimedIterator(iter([]), -1)


def test_a_run_whose_input_stalls_saves_its_step_and_stops(
    tmp_path, tiny_root, monkeypatch, capsys
):
    release = threading.Event()
    real = train.training_data

    class StallsAfterTwoBatches:
        def __init__(self, run, state):
            self.dataset = real(run, state)

        def __iter__(self):
            iterator = iter(self.dataset)
            return stalling([next(iterator), next(iterator)], release)

    monkeypatch.setattr(train, "training_data", StallsAfterTwoBatches)
    cfg = tiny.train_config(tmp_path / "run", tiny_root, checkpoint_every=100, input_timeout=1.0)
    try:
        with pytest.raises(input_timeout.InputStalled) as stalled:
            train.train(cfg)
    finally:
        release.set()
    message = str(stalled.value)
    assert message.startswith("No training batch arrived within 1 s (--input_timeout)")
    checkpoint = run_dir.latest_checkpoint(str(tmp_path / "run"))
    assert checkpoint.endswith("ckpt-2") and f"Checkpoint {checkpoint} holds every" in message
    monkeypatch.undo()
    capsys.readouterr()
    assert train.train(cfg)["step"] == 6
    assert re.search(r"Resuming from \S+ckpt-2: epoch 1, step 2 of 6", capsys.readouterr().out)
