"""The speed benchmark's PyTorch peer, trained and run in a process of its own.

A user comparing Keras and PyTorch runs each in its own process. In one process their
thread pools compete for the same cores: PyTorch trained the paper's network at 17.5
images/s inside TensorFlow's process against 24.3 in a process of its own, on the same
machine. `TorchProcess` starts this file as a script,

    python .../keras_alexnet/benchmarks/torch_process.py --peer=FILE --batch_size=N ...

which imports PyTorch and the peer file, and nothing of keras_alexnet (importing the
package loads TensorFlow), then runs one step at a time on request, so that the
benchmark's rounds alternate: a Keras step in the benchmark's process, a PyTorch step in
this one, the next Keras step, ...

The two talk in lines of JSON: once ready, the process prints {"info": ...}; for each line
"train" or "infer" it reads, it runs that step and prints {"seconds": ...}, the step's time
measured where it ran; it ends at "quit" or at the end of its input.
"""

import argparse
import importlib.util
import json
import os
import sys
import time

if __package__:
    from keras_alexnet.benchmarks import child_process
else:  # run as a script, which imports nothing of the package: its folder is on sys.path
    import child_process

# The package's own peer: the paper's network in PyTorch.
DEFAULT_PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_alexnet.py")
STEPS = ("train", "infer")
# The peer's arithmetic: float32, or bfloat16 under autocast (the Keras policy it is
# compared with: `KERAS_POLICY`).
PRECISIONS = ("float32", "bfloat16")
KERAS_POLICY = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


class TorchProcess(child_process.ChildProcess):
    """A peer network in a child process, trained or run one step per call.

    The process starts at construction and loads PyTorch meanwhile; `ready` waits for it.

    Args:
        peer: a Python file defining `paper_alexnet(num_classes)`, a `torch.nn.Module`
            from float32 images [batch, 3, 227, 227] to logits.
        batch_size: images per step.
        num_classes: classes of the network's last layer.
        threads: PyTorch's threads.
        precision: one of `PRECISIONS`: "float32", or "bfloat16" (the layers under
            `torch.autocast("cpu", torch.bfloat16)`, images and weights channels-last, as
            PyTorch's CPU guides advise).
    """

    def __init__(self, peer=DEFAULT_PEER, *, batch_size, num_classes, threads, precision="float32"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}. Received: {precision!r}")
        super().__init__(
            os.path.abspath(__file__),
            [
                f"--peer={peer}",
                f"--batch_size={batch_size}",
                f"--num_classes={num_classes}",
                f"--threads={threads}",
                f"--precision={precision}",
            ],
            "The PyTorch process",
        )
        self.batch_size = batch_size
        self.precision = precision

    @property
    def tensorflow_loaded(self):
        """Whether the process imported TensorFlow (None until it is ready)."""
        return self.ready_reply["tensorflow_loaded"] if self.ready_reply else None

    def train(self):
        """One training step; returns its seconds, as measured in the child process."""
        return self.request("train")["seconds"]

    def infer(self):
        """One inference step; returns its seconds, as measured in the child process."""
        return self.request("infer")["seconds"]


class TorchSubject:
    """A PyTorch network trained and run as PyTorch users do, on random data.

    Training: train() mode, SGD with momentum 0.9 and weight decay 5e-4 (the paper's), a
    cross-entropy loss, backward and the optimizer's step; inference: eval() mode under
    no_grad. float32, or with precision "bfloat16" the forward pass under
    `torch.autocast("cpu", torch.bfloat16)` (weights stay float32, as Keras' mixed
    policy keeps them) and the images and weights channels-last.

    Args:
        network: the `torch.nn.Module`, from images [batch, 3, size, size] to logits.
        batch_size: images per step.
        num_classes: classes of the network's logits.
        input_size: the side of its square images.
        precision: one of `PRECISIONS`.
    """

    def __init__(self, network, *, batch_size, num_classes, input_size=227, precision="float32"):
        import contextlib

        import torch

        self._torch = torch
        self.model = network
        self._images = torch.randn(batch_size, 3, input_size, input_size)
        if precision == "bfloat16":
            self.model = self.model.to(memory_format=torch.channels_last)
            self._images = self._images.contiguous(memory_format=torch.channels_last)
            self._autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
        else:
            self._autocast = contextlib.nullcontext
        self._optimizer = torch.optim.SGD(
            self.model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4
        )
        self._loss = torch.nn.CrossEntropyLoss()
        self._labels = torch.randint(0, num_classes, (batch_size,))

    def train(self):
        self.model.train()
        self._optimizer.zero_grad()
        with self._autocast():
            loss = self._loss(self.model(self._images), self._labels)
        loss.backward()
        self._optimizer.step()

    def infer(self):
        self.model.eval()
        with self._torch.no_grad(), self._autocast():
            self.model(self._images)


def load_peer(path):
    """Imports a peer file by its path: the module defining `paper_alexnet(num_classes)`."""
    spec = importlib.util.spec_from_file_location("torch_peer", path)
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    return peer


def serve(subject, requests, replies):
    """Runs the subject's steps as `requests` (lines) ask, timing each, until "quit".

    Args:
        subject: an object with `train()` and `infer()`.
        requests: an iterable of lines, "train", "infer" or "quit".
        replies: a text stream; one {"seconds": ...} line per step.

    Raises:
        ValueError: a request that is none of those.
    """
    for line in requests:
        request = line.strip()
        if request == "quit":
            return
        if request not in STEPS:
            raise ValueError(f"A request must be one of {STEPS} or 'quit'. Received: {request!r}")
        start = time.perf_counter()
        getattr(subject, request)()
        seconds = time.perf_counter() - start
        replies.write(json.dumps({"seconds": seconds}) + "\n")
        replies.flush()


def main(argv=None):
    """The child process: builds the peer network, says it is ready, serves the steps."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", default=DEFAULT_PEER)
    parser.add_argument("--batch_size", type=int, required=True)
    parser.add_argument("--num_classes", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--precision", choices=PRECISIONS, default="float32")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    network = load_peer(args.peer).paper_alexnet(args.num_classes)
    subject = TorchSubject(
        network,
        batch_size=args.batch_size,
        num_classes=args.num_classes,
        precision=args.precision,
    )
    info = dict(
        implementation="pytorch",
        peer=os.path.basename(args.peer),
        torch=torch.__version__,
        dtype_policy=KERAS_POLICY[args.precision],
        batch=args.batch_size,
    )
    ready = dict(info=info, tensorflow_loaded="tensorflow" in sys.modules)
    print(json.dumps(ready), flush=True)
    serve(subject, sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
