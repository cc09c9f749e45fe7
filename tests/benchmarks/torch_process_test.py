"""The PyTorch peer's process: its requests and replies, and a peer file of one's own."""

import importlib.util
import io
import json
import os

import pytest

from keras_alexnet.benchmarks import torch_process

# A small PyTorch network in a file of its own: the process's handling of a peer file is
# what is tested here, not the paper's network (torch_alexnet_test.py).
STAND_IN_PEER = """
from torch import nn


def paper_alexnet(num_classes):
    return nn.Sequential(
        nn.Conv2d(3, 8, 11, 4), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        nn.Dropout(0.5), nn.Linear(128, num_classes),
    )
"""

needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="needs PyTorch (the test extra)"
)


class CountingSubject:
    def __init__(self):
        self.calls = []

    def train(self):
        self.calls.append("train")

    def infer(self):
        self.calls.append("infer")


def test_serve_runs_each_requested_step_and_replies_with_its_seconds():
    subject, replies = CountingSubject(), io.StringIO()
    torch_process.serve(subject, ["train\n", "infer\n", "train\n", "quit\n", "infer\n"], replies)
    assert subject.calls == ["train", "infer", "train"]  # nothing after "quit"
    seconds = [json.loads(line)["seconds"] for line in replies.getvalue().splitlines()]
    assert len(seconds) == 3 and all(s >= 0 for s in seconds)
    with pytest.raises(ValueError, match="Received: 'fit'"):
        torch_process.serve(subject, ["fit\n"], replies)


@needs_torch
def test_a_peer_file_trains_in_a_process_without_tensorflow(tmp_path):
    peer = tmp_path / "my_peer.py"
    peer.write_text(STAND_IN_PEER)
    with torch_process.TorchProcess(str(peer), batch_size=2, num_classes=3, threads=1) as process:
        info = process.ready()
        assert info["peer"] == "my_peer.py" and info["implementation"] == "pytorch"
        assert info["batch"] == 2 and info["dtype_policy"] == "float32" and info["torch"]
        assert process.pid != os.getpid() and process.tensorflow_loaded is False
        assert process.train() > 0 and process.infer() > 0 and process.train() > 0
    with pytest.raises(ProcessLookupError):  # ended, and waited for
        os.kill(process.pid, 0)


@needs_torch
def test_a_peer_that_fails_is_reported(tmp_path):
    peer = tmp_path / "broken_peer.py"
    peer.write_text("def paper_alexnet(num_classes):\n    raise ValueError('no network')\n")
    with torch_process.TorchProcess(str(peer), batch_size=1, num_classes=2, threads=1) as process:
        with pytest.raises(RuntimeError, match="The PyTorch process ended"):
            process.train()
