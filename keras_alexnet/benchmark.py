"""Training and inference speed of AlexNet: `python -m keras_alexnet.benchmark`.

    python -m keras_alexnet.benchmark --batch_size=32 --steps=5 --torch_peer --per_layer

Measures the implementations, the GEMM peak of each precision measured and, with
--torch_peer, the same network in PyTorch in a process of its own (under bfloat16 autocast
too where mixed_bfloat16 is measured), in turn, step by step. Prints the CPU's matrix
features, each figure as images/s, GFLOP/s and a fraction of the GEMM peak of its own
precision, and the ratios to the first implementation; with --per_layer, the forward and
backward time of each layer under each policy.

The measurements are `benchmarks.model_speed`'s.
"""

import importlib.util
import json
import os

from absl import app
from absl import flags

from keras_alexnet import cli
from keras_alexnet.benchmarks import model_speed
from keras_alexnet.models import alexnet as model_lib
from keras_alexnet.models import variants
from keras_alexnet.training import precision

FLAGS = flags.FLAGS


class _PeerParser(flags.ArgumentParser):
    """--torch_peer's values: none (false), the package's network (true) or a file."""

    def parse(self, argument):
        text = str(argument).strip()
        if text.lower() in ("false", "f", "0", "none", ""):
            return None
        if text.lower() in ("true", "t", "1"):
            return model_speed.DEFAULT_TORCH_PEER
        return text

    def flag_type(self):
        return "bool or file"


def define_flags():
    """Defines the command-line flags; only the entry point calls this."""
    flags.DEFINE_integer("batch_size", 32, "Images per step.", lower_bound=1)
    flags.DEFINE_integer("steps", 5, "Timed steps per measurement.", lower_bound=1)
    flags.DEFINE_integer("warmup", 2, "Untimed steps first (tracing, allocation).", lower_bound=1)
    flags.DEFINE_list(
        "implementation",
        ["towers", "keras_groups"],
        f"Grouped-convolution implementations to measure, from {model_lib.IMPLEMENTATIONS}; "
        "the first is the reference of the ratios.",
    )
    flags.DEFINE_enum("variant", "paper", sorted(variants.VARIANTS), "Network variant.")
    flags.DEFINE_list(
        "dtype_policy",
        ["float32"],
        f"Keras dtype policies to measure, from {model_speed.POLICIES}, e.g. "
        "float32,mixed_float16.",
    )
    flags.DEFINE_integer("num_classes", 1000, "Classes of fc8.", lower_bound=1)
    flags.DEFINE_boolean("json", False, "Print one JSON line per measurement instead of text.")
    flags.DEFINE_boolean(
        "per_layer",
        False,
        "Also time each layer's forward and backward pass, under each --dtype_policy.",
    )
    # A boolean flag that also takes a file: --torch_peer, --torch_peer=FILE, --notorch_peer.
    flags.DEFINE_flag(
        flags.Flag(
            _PeerParser(),
            None,
            "torch_peer",
            None,
            "Also measure the paper's network in PyTorch (needs torch), trained and run in "
            "a process of its own, in turn with the Keras models, step by step: the "
            "package's own (keras_alexnet/benchmarks/torch_alexnet.py), or with "
            "--torch_peer=FILE a Python file defining paper_alexnet(num_classes). The "
            "paper variant only.",
            boolean=True,
        )
    )
    flags.DEFINE_alias("torch", "torch_peer")
    flags.DEFINE_integer(
        "threads",
        0,
        "Threads of TensorFlow's (intra-op) and PyTorch's pools; 0 for one per CPU this "
        "process may use.",
        lower_bound=0,
    )


def main(argv):
    del argv
    import keras
    import tensorflow as tf

    for impl in FLAGS.implementation:
        if impl not in model_lib.IMPLEMENTATIONS:
            raise app.UsageError(
                f"--implementation must be from {model_lib.IMPLEMENTATIONS}. Received: {impl!r}"
            )
    for policy in FLAGS.dtype_policy:
        if policy not in model_speed.POLICIES:
            raise app.UsageError(
                f"--dtype_policy must be from {model_speed.POLICIES}. Received: {policy!r}"
            )
    torch_peer = _torch_peer() if FLAGS.torch_peer else None
    threads = FLAGS.threads or model_speed.cpu_count()
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS')}, "
        f"batch {FLAGS.batch_size}, {threads} threads, median of {FLAGS.steps} steps, "
        "all measured in turn" + (", PyTorch in a process of its own" if torch_peer else ""),
        flush=True,
    )
    features = precision.matrix_features()
    print(
        f"CPU matrix features: {', '.join(features) or 'none of ' + str(precision.MATRIX_FEATURES)}"
    )
    results = model_speed.run(
        FLAGS.implementation,
        batch_size=FLAGS.batch_size,
        steps=FLAGS.steps,
        warmup=FLAGS.warmup,
        variant=FLAGS.variant,
        num_classes=FLAGS.num_classes,
        dtype_policies=FLAGS.dtype_policy,
        torch_peer=torch_peer,
        threads=threads,
    )
    if FLAGS.json:
        for result in results:
            print(json.dumps(result), flush=True)
    else:
        print(model_speed.format_results(results), flush=True)
    for policy in FLAGS.dtype_policy if FLAGS.per_layer else ():
        rows = model_speed.per_layer(
            batch_size=FLAGS.batch_size,
            variant=FLAGS.variant,
            num_classes=FLAGS.num_classes,
            implementation=FLAGS.implementation[0],
            dtype_policy=policy,
        )
        if FLAGS.json:
            for row in rows:
                print(json.dumps(dict(per_layer=row, dtype_policy=policy)), flush=True)
        else:
            print(f"per layer, {policy}:", flush=True)
            print(model_speed.format_per_layer(rows), flush=True)


def _torch_peer():
    # Looked for, not imported: PyTorch runs in a process of its own.
    if importlib.util.find_spec("torch") is None:
        raise app.UsageError("--torch_peer needs PyTorch installed (pip install torch).")
    if not os.path.isfile(FLAGS.torch_peer):
        raise app.UsageError(
            f"--torch_peer must be a Python file. Received: --torch_peer={FLAGS.torch_peer}"
        )
    if FLAGS.variant != "paper":
        raise app.UsageError(
            f"--torch_peer compares the paper's network. Received: --variant={FLAGS.variant}"
        )
    return FLAGS.torch_peer


def run():
    cli.run(main, define_flags)


if __name__ == "__main__":
    run()
