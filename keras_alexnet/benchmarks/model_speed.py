"""Training and inference speed of AlexNet: `python -m keras_alexnet.benchmark`.

Measures this package's model and, in the same run, the same network built with
`keras.layers.Conv2D(groups=2)` (which Keras compiles with XLA), the GEMM peak of the
environment (a large `tf.linalg.matmul`) and, with --torch, the PyTorch build of the same
network (--torch_peer). They run in turn, one step of each after the other, so that a
machine shared with other jobs slows them alike (see `run`). Prints each figure, as
images/s, GFLOP/s and a fraction of the GEMM peak, and the ratios to the first
implementation; with --per_layer, the forward and backward time of each layer.

    python -m keras_alexnet.benchmark --batch_size=32 --steps=5 --torch --per_layer
"""

import importlib.util
import json
import os
import statistics
import time

from absl import app
from absl import flags

from keras_alexnet.models import alexnet as model_lib
from keras_alexnet.models import inspection
from keras_alexnet.models import variants
from keras_alexnet.training import steps as steps_lib

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
# The PyTorch peer: ../shared/bench/torch_peer.py beside the repository, when it is there.
DEFAULT_TORCH_PEER = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    os.pardir,
    "shared",
    "bench",
    "torch_peer.py",
)
GEMM_SIZE = 4096
FLAGS = flags.FLAGS


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
        f"Keras dtype policies to measure, from {POLICIES}, e.g. float32,mixed_float16.",
    )
    flags.DEFINE_integer("num_classes", 1000, "Classes of fc8.", lower_bound=1)
    flags.DEFINE_boolean("json", False, "Print one JSON line per measurement instead of text.")
    flags.DEFINE_boolean(
        "per_layer", False, "Also time each layer's forward and backward pass (float32)."
    )
    flags.DEFINE_boolean(
        "torch",
        False,
        "Also measure the PyTorch build of the same network (--torch_peer; needs torch), "
        "in turn with the others, step by step. The paper variant only.",
    )
    flags.DEFINE_string(
        "torch_peer",
        DEFAULT_TORCH_PEER,
        "Python file defining paper_alexnet(num_classes), the PyTorch network of --torch.",
    )
    flags.DEFINE_integer(
        "threads",
        0,
        "Threads of TensorFlow's (intra-op) and PyTorch's pools; 0 for one per CPU this "
        "process may use.",
        lower_bound=0,
    )


def cpu_count():
    """The CPUs this process may run on (its affinity), TensorFlow's default thread count."""
    return len(os.sched_getaffinity(0))


def alternate(fns, steps, warmup):
    """Times functions in turn: one call of each, then the next round.

    A machine shared with other jobs slows them alike, so their ratios hold where the
    figures of separate runs do not.

    Args:
        fns: functions of no arguments, each returning when its work is done.
        steps: timed rounds.
        warmup: untimed rounds first.

    Returns:
        One list of `steps` durations in seconds per function, in the order of `fns`.
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    seconds = [[] for _ in fns]
    for _ in range(steps):
        for fn, durations in zip(fns, seconds):
            start = time.perf_counter()
            fn()
            durations.append(time.perf_counter() - start)
    return seconds


class KerasSubject:
    """This package's AlexNet, its training step and its inference, on random data."""

    def __init__(self, implementation, *, batch_size, variant, num_classes, dtype_policy):
        import keras
        import tensorflow as tf

        keras.utils.set_random_seed(0)
        self.model = model_lib.AlexNet(
            num_classes, variant=variant, implementation=implementation, dtype_policy=dtype_policy
        )
        # SGD with momentum; the paper's weight decay is the model's L2 regularizer.
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
        if dtype_policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        self._step = steps_lib.make_train_step(self.model, optimizer, batch_size)
        self._images = tf.random.normal((batch_size, *self.model.input_shape[1:]), stddev=50.0)
        self._labels = tf.random.uniform((batch_size,), 0, num_classes, dtype=tf.int32)
        self._predict = tf.function(lambda x: self.model(x, training=False))
        self.batch_size = batch_size
        self.info = dict(
            implementation=implementation,
            variant=variant,
            dtype_policy=self.model.get_layer("conv1").dtype_policy.name,
            batch=batch_size,
        )
        self.forward_gflop = 2 * sum(inspection.multiply_adds(self.model).values()) / 1e9

    def train(self):
        self._step(self._images, self._labels)[0].numpy()

    def infer(self):
        self._predict(self._images).numpy()


class TorchSubject:
    """The PyTorch network of a peer file, trained and run as PyTorch users do.

    Training: train() mode, SGD with momentum 0.9 and weight decay 5e-4 (the paper's), a
    cross-entropy loss, backward and the optimizer's step; inference: eval() mode under
    no_grad. float32, `threads` threads. PyTorch is imported here only: it is not a
    dependency of this package.
    """

    def __init__(self, peer_path, *, batch_size, num_classes, threads, input_size=227):
        import torch

        spec = importlib.util.spec_from_file_location("torch_peer", peer_path)
        peer = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(peer)
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        self._torch = torch
        self.model = peer.paper_alexnet(num_classes)
        self._optimizer = torch.optim.SGD(
            self.model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4
        )
        self._loss = torch.nn.CrossEntropyLoss()
        self._images = torch.randn(batch_size, 3, input_size, input_size)
        self._labels = torch.randint(0, num_classes, (batch_size,))
        self.batch_size = batch_size
        self.info = dict(
            implementation="pytorch",
            peer=os.path.basename(peer_path),
            torch=torch.__version__,
            dtype_policy="float32",
            batch=batch_size,
        )

    def train(self):
        self.model.train()
        self._optimizer.zero_grad()
        self._loss(self.model(self._images), self._labels).backward()
        self._optimizer.step()

    def infer(self):
        self.model.eval()
        with self._torch.no_grad():
            self.model(self._images)


def _gemm(size):
    """A function that multiplies two float32 size x size matrices, and its FLOPs."""
    import tensorflow as tf

    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    matmul = tf.function(lambda: tf.reduce_sum(tf.linalg.matmul(a, b)))
    return lambda: matmul().numpy(), 2 * size**3


def gemm_peak(size=GEMM_SIZE, steps=5):
    """GFLOP/s of a float32 `tf.linalg.matmul` of two size x size matrices: the machine's
    matrix-multiply peak as TensorFlow reaches it, the yardstick of the model's speed."""
    fn, flop = _gemm(size)
    (seconds,) = alternate([fn], steps, warmup=1)
    return flop / statistics.median(seconds) / 1e9


def run(
    implementations=("towers",),
    *,
    batch_size,
    steps,
    warmup=2,
    variant="paper",
    num_classes=1000,
    dtype_policies=("float32",),
    torch_peer=None,
    threads=None,
    gemm_size=GEMM_SIZE,
):
    """Measures each implementation and policy, the GEMM peak and the PyTorch peer, in turn.

    The training steps of every model run one after the other, with one GEMM after each
    round, then their inference the same way. Each figure is the median of its steps; each
    fraction of the peak and each ratio to PyTorch is the median over the rounds of one
    step's figure over the other's in the same round, which ran under the same load (on a
    machine shared with other jobs the load changes between rounds, not within one).

    Args:
        implementations: values of `AlexNet(implementation=...)`.
        batch_size: images per step.
        steps: timed steps of each.
        warmup: untimed steps first.
        variant: the network variant ("paper" with a torch_peer).
        num_classes: classes of fc8.
        dtype_policies: Keras dtype policies ("float32", "mixed_float16",
            "mixed_bfloat16"); float16 trains with loss scaling, as `keras_alexnet.train`.
        torch_peer: None, or the path of a Python file defining `paper_alexnet(num_classes)`,
            the same network in PyTorch, measured in float32 with `threads` threads.
        threads: PyTorch's threads; default: TensorFlow's intra-op threads.
        gemm_size: the side of the GEMM's square matrices.

    Returns:
        A list of dicts, one per model (the PyTorch peer last, implementation "pytorch"):
        train_img_per_s, infer_img_per_s, their GFLOP/s, forward_gflop_per_img,
        gemm_peak_gflop_per_s (the median GEMM), train_fraction_of_peak and
        infer_fraction_of_peak; with a peer, train_ratio_to_torch and infer_ratio_to_torch
        (images/s of the model over the peer's) for the float32 models.

    Raises:
        ValueError: a torch_peer with a variant other than "paper".
    """
    import tensorflow as tf

    if torch_peer is not None and variant != "paper":
        raise ValueError(
            f'The PyTorch peer is the paper\'s network: it needs variant="paper". '
            f"Received: variant={variant!r}"
        )
    threads = threads or tf.config.threading.get_intra_op_parallelism_threads() or cpu_count()
    subjects = [
        KerasSubject(
            impl,
            batch_size=batch_size,
            variant=variant,
            num_classes=num_classes,
            dtype_policy=policy,
        )
        for policy in dtype_policies
        for impl in implementations
    ]
    if torch_peer is not None:
        subjects.append(
            TorchSubject(
                torch_peer, batch_size=batch_size, num_classes=num_classes, threads=threads
            )
        )
    gemm, gemm_flop = _gemm(gemm_size)
    *train, gemm_train = alternate([s.train for s in subjects] + [gemm], steps, warmup)
    *infer, gemm_infer = alternate([s.infer for s in subjects] + [gemm], steps, warmup)
    gflop = subjects[0].forward_gflop  # the same network: the same arithmetic
    # GFLOP/s of each step; a training step is about three forward passes (forward, two
    # backward products).
    speeds = [
        dict(
            train=[3 * gflop * batch_size / t for t in train_s],
            infer=[gflop * batch_size / t for t in infer_s],
        )
        for train_s, infer_s in zip(train, infer)
    ]
    gemm_speeds = dict(
        train=[gemm_flop / 1e9 / t for t in gemm_train],
        infer=[gemm_flop / 1e9 / t for t in gemm_infer],
    )
    results = []
    for subject, speed in zip(subjects, speeds):
        result = dict(subject.info, threads=threads, forward_gflop_per_img=round(gflop, 3))
        for key, flop in (("train", 3 * gflop), ("infer", gflop)):
            median = statistics.median(speed[key])
            result[f"{key}_img_per_s"] = round(median / flop, 2)
            result[f"{key}_gflop_per_s"] = round(median, 1)
            # Each step against the GEMM of its own round, which ran under the same load.
            result[f"{key}_fraction_of_peak"] = round(
                _median_ratio(speed[key], gemm_speeds[key]), 3
            )
        result["gemm_peak_gflop_per_s"] = round(
            statistics.median(gemm_speeds["train"] + gemm_speeds["infer"]), 1
        )
        results.append(result)
    if torch_peer is not None:
        for result, speed in zip(results[:-1], speeds[:-1]):
            if result["dtype_policy"] == "float32":
                for key in ("train", "infer"):
                    result[f"{key}_ratio_to_torch"] = round(
                        _median_ratio(speed[key], speeds[-1][key]), 3
                    )
    return results


def _median_ratio(a, b):
    """The median over rounds of a[i] / b[i]: each pair measured under the same load."""
    return statistics.median(x / y for x, y in zip(a, b))


def measure(
    implementation,
    *,
    batch_size,
    steps,
    warmup=2,
    variant="paper",
    num_classes=1000,
    dtype_policy=None,
    gemm_size=GEMM_SIZE,
):
    """Measures one implementation on random data (`run` with one model and the GEMM).

    Args:
        implementation: a value of `AlexNet(implementation=...)`.
        batch_size, steps, warmup, variant, num_classes, gemm_size: as for `run`.
        dtype_policy: a Keras dtype policy; default: Keras' global policy.

    Returns:
        The dict of `run` for that model.
    """
    import keras

    (result,) = run(
        (implementation,),
        batch_size=batch_size,
        steps=steps,
        warmup=warmup,
        variant=variant,
        num_classes=num_classes,
        dtype_policies=(dtype_policy or keras.config.dtype_policy().name,),
        gemm_size=gemm_size,
    )
    return result


def _fetch(tensors):
    """Waits for the tensors' values (a call is timed to its results)."""
    import tensorflow as tf

    return tf.nest.map_structure(lambda t: t.numpy(), tensors)


def per_layer(*, batch_size, steps=3, variant="paper", num_classes=1000, implementation="towers"):
    """Forward and backward time of each layer, on the activations and gradients of a real
    training step.

    Each layer runs on its input from a forward pass of random images and is given, as its
    upstream gradient, that of the cross-entropy loss on random labels: mostly zeros below
    the ReLUs and max-pools, as in training (some kernels, TensorFlow's LRNGrad for one,
    take longer on dense random gradients).

    Args:
        batch_size: images per step.
        steps: timed calls of each (after one untimed), forward and backward in turn.
        variant, num_classes, implementation: as for `run`.

    Returns:
        A list of dicts, one per layer in order: name, forward_ms, backward_ms (the
        gradients with respect to the layer's input, but for the first layer's, and its
        weights: the time of forward and backward together less the forward's), gflop
        (forward, the whole batch).
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = model_lib.AlexNet(num_classes, variant=variant, implementation=implementation)
    counts = inspection.multiply_adds(model)
    inputs = [tf.random.normal((batch_size, *model.input_shape[1:]), stddev=50.0)]
    labels = tf.random.uniform((batch_size,), 0, num_classes, dtype=tf.int32)
    with tf.GradientTape() as tape:
        for layer in model.layers[1:]:
            inputs.append(layer(inputs[-1], training=True))
        loss = keras.losses.sparse_categorical_crossentropy(labels, inputs[-1])
    upstreams = tape.gradient(loss, inputs[1:])
    rows = []
    for layer, x, upstream in zip(model.layers[1:], inputs, upstreams):
        forward = tf.function(lambda v, layer=layer: layer(v, training=True))

        # Training needs no gradient with respect to the images: not for the first layer.
        @tf.function
        def backward(v, layer=layer, upstream=upstream, wrt_input=layer is not model.layers[1]):
            with tf.GradientTape() as tape:
                tape.watch(v)
                out = layer(v, training=True)
            sources = ([v] if wrt_input else []) + layer.trainable_weights
            return tape.gradient(out, sources, output_gradients=upstream)

        forward_s, both_s = alternate(
            [lambda fn=fn, v=x: _fetch(fn(v)) for fn in (forward, backward)], steps, warmup=1
        )
        forward_s, both_s = statistics.median(forward_s), statistics.median(both_s)
        rows.append(
            dict(
                name=layer.name,
                forward_ms=round(1000 * forward_s, 2),
                backward_ms=round(1000 * max(both_s - forward_s, 0.0), 2),
                gflop=round(2 * counts.get(layer.name, 0) * batch_size / 1e9, 2),
            )
        )
    return rows


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
        if policy not in POLICIES:
            raise app.UsageError(f"--dtype_policy must be from {POLICIES}. Received: {policy!r}")
    torch_peer = _torch_peer() if FLAGS.torch else None
    threads = FLAGS.threads or cpu_count()
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS')}, "
        f"batch {FLAGS.batch_size}, {threads} threads, median of {FLAGS.steps} steps, "
        "all measured in turn",
        flush=True,
    )
    results = run(
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
        _print_results(results)
    if FLAGS.per_layer:
        _print_per_layer(
            per_layer(
                batch_size=FLAGS.batch_size,
                variant=FLAGS.variant,
                num_classes=FLAGS.num_classes,
                implementation=FLAGS.implementation[0],
            ),
            FLAGS.json,
        )


def _torch_peer():
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise app.UsageError(f"--torch needs PyTorch installed ({e}).") from e
    if not os.path.isfile(FLAGS.torch_peer):
        raise app.UsageError(
            f"--torch_peer must be a Python file. Received: --torch_peer={FLAGS.torch_peer}"
        )
    if FLAGS.variant != "paper":
        raise app.UsageError(
            f"--torch compares the paper's network. Received: --variant={FLAGS.variant}"
        )
    return FLAGS.torch_peer


def _print_results(results):
    for r in results:
        name = r["implementation"] + (f" {r['torch']}" if "torch" in r else "")
        print(
            f"{name:>18} {r['dtype_policy']:>14}: "
            f"train {r['train_img_per_s']:7.2f} img/s ({r['train_gflop_per_s']:6.1f} GFLOP/s, "
            f"{r['train_fraction_of_peak']:4.0%} of peak)   "
            f"inference {r['infer_img_per_s']:7.2f} img/s ({r['infer_gflop_per_s']:6.1f} "
            f"GFLOP/s, {r['infer_fraction_of_peak']:4.0%} of peak)",
            flush=True,
        )
    print(
        f"GEMM peak (tf.linalg.matmul {GEMM_SIZE}x{GEMM_SIZE}, float32): "
        f"{results[0]['gemm_peak_gflop_per_s']:.1f} GFLOP/s",
        flush=True,
    )
    reference = results[0]
    for other in results[1:]:
        if other["implementation"] == "pytorch" and "train_ratio_to_torch" in reference:
            ratios = [reference[f"{key}_ratio_to_torch"] for key in ("train", "infer")]
        else:
            ratios = [
                reference[f"{key}_img_per_s"] / other[f"{key}_img_per_s"]
                for key in ("train", "infer")
            ]
        print(
            f"{reference['implementation']} {reference['dtype_policy']} / "
            f"{other['implementation']} {other['dtype_policy']}: "
            f"train x{ratios[0]:.2f}, inference x{ratios[1]:.2f}",
            flush=True,
        )


def _print_per_layer(rows, as_json):
    total = sum(r["forward_ms"] + r["backward_ms"] for r in rows)
    if not as_json:
        print(f"{'layer':>9} {'forward ms':>11} {'backward ms':>12} {'share':>6} {'GFLOP/s':>8}")
    for r in rows:
        ms = r["forward_ms"] + r["backward_ms"]
        r["share"] = round(ms / total, 3)
        # Forward and two backward products; the first layer has no input gradient.
        products = 2 if r is rows[0] else 3
        r["train_gflop_per_s"] = (
            round(products * r["gflop"] / (ms / 1000), 1) if r["gflop"] and ms else None
        )
        if as_json:
            print(json.dumps(dict(per_layer=r)), flush=True)
        else:
            speed = f"{r['train_gflop_per_s']:8.1f}" if r["train_gflop_per_s"] else f"{'':>8}"
            print(
                f"{r['name']:>9} {r['forward_ms']:11.2f} {r['backward_ms']:12.2f} "
                f"{r['share']:6.1%} {speed}",
                flush=True,
            )
