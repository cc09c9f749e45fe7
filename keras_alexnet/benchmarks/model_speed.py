"""Training and inference speed of AlexNet (`python -m keras_alexnet.benchmark`).

Measures this package's model and, in the same run, the same network built with
`keras.layers.Conv2D(groups=2)` (which Keras compiles with XLA), the GEMM peak of the
environment (a large `tf.linalg.matmul`) and, with a PyTorch peer, the same network in
PyTorch, trained and run in a process of its own (`torch_process`). They run in turn, one
step of each after the other, so that a machine shared with other jobs slows them alike
(see `run`). `per_layer` times each layer's forward and backward pass.
"""

import os
import statistics
import time

from keras_alexnet.benchmarks import torch_process
from keras_alexnet.models import alexnet as model_lib
from keras_alexnet.models import inspection
from keras_alexnet.training import steps as steps_lib

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
# The dtype a policy multiplies matrices in: the GEMM each policy is measured against.
COMPUTE_DTYPES = {"float32": "float32", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}
# The PyTorch peer: the package's own, the paper's network in PyTorch.
DEFAULT_TORCH_PEER = torch_process.DEFAULT_PEER
GEMM_SIZE = 4096


def cpu_count():
    """The CPUs this process may run on (its affinity), TensorFlow's default thread count."""
    return len(os.sched_getaffinity(0))


def alternate(fns, steps, warmup):
    """Times functions in turn: one call of each, then the next round.

    A machine shared with other jobs slows them alike, so their ratios hold where the
    figures of separate runs do not.

    Args:
        fns: functions of no arguments, each returning when its work is done: None, or
            the seconds the work took as measured where it ran (a step in another
            process), which count instead of the call's time here.
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
            measured = fn()
            elapsed = time.perf_counter() - start
            durations.append(elapsed if measured is None else measured)
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


def _gemm(size, dtype="float32"):
    """A function that multiplies two size x size matrices of `dtype`, and its FLOPs."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal((size, size)), dtype)
    b = tf.cast(tf.random.normal((size, size)), dtype)
    matmul = tf.function(lambda: tf.reduce_sum(tf.linalg.matmul(a, b)))

    def multiply():
        matmul().numpy()

    return multiply, 2 * size**3


def gemm_peak(size=GEMM_SIZE, steps=5, dtype="float32"):
    """GFLOP/s of a `tf.linalg.matmul` of two size x size matrices of `dtype`: the
    machine's matrix-multiply peak in that dtype as TensorFlow reaches it, the yardstick
    of the model's speed in that precision."""
    fn, flop = _gemm(size, dtype)
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
    """Measures each implementation and policy, the GEMM peaks and the PyTorch peers, in
    turn.

    The training steps of every model run one after the other, with one GEMM of each
    compute dtype measured (float32, and bfloat16 or float16 for a mixed policy) after
    each round, then their inference the same way. Each model is measured against the
    GEMM of its own compute dtype. Each figure is the median of its steps; each
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
            the same network in PyTorch (`DEFAULT_TORCH_PEER`, the package's own, for
            one), trained and run in a process of its own (`torch_process`), in turn
            with the Keras models, with `threads` threads: one process in float32, and
            one under bfloat16 autocast where mixed_bfloat16 is measured.
        threads: PyTorch's threads; default: TensorFlow's intra-op threads.
        gemm_size: the side of the GEMM's square matrices.

    Returns:
        A list of dicts, one per model (the PyTorch peers last, implementation "pytorch"):
        train_img_per_s, infer_img_per_s, their GFLOP/s, forward_gflop_per_img,
        gemm_dtype (the model's compute dtype), gemm_peak_gflop_per_s (the median GEMM of
        that dtype), train_fraction_of_peak and infer_fraction_of_peak (of that peak),
        train_fraction_of_float32_peak and infer_fraction_of_float32_peak; with peers,
        train_ratio_to_torch and infer_ratio_to_torch (images/s of the model over the
        peer's of the same precision) for the float32 and mixed_bfloat16 models.

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
    peers = []
    if torch_peer is not None:  # started first: PyTorch loads while Keras builds its models
        peers = [
            torch_process.TorchProcess(
                torch_peer,
                batch_size=batch_size,
                num_classes=num_classes,
                threads=threads,
                precision=precision,
            )
            for precision, policy in torch_process.KERAS_POLICY.items()
            if policy in dtype_policies
        ]
    try:
        subjects = _keras_subjects(
            implementations, dtype_policies, batch_size, variant=variant, num_classes=num_classes
        )
        keras_count = len(subjects)
        for peer in peers:
            peer.ready()
            subjects.append(peer)
        gflop = subjects[0].forward_gflop  # the same network: the same arithmetic
        dtypes = sorted({"float32", *(COMPUTE_DTYPES[p] for p in dtype_policies)})
        speeds, gemm_speeds = _speeds_in_turn(
            subjects, gflop, batch_size, steps, warmup, gemm_size, dtypes
        )
    finally:
        for peer in peers:
            peer.close()
    results = [
        _result(subject, speed, gemm_speeds, gflop, threads)
        for subject, speed in zip(subjects, speeds)
    ]
    for result, speed in zip(results[keras_count:], speeds[keras_count:]):
        _add_ratios_to_torch(results[:keras_count], speeds[:keras_count], result, speed)
    return results


def _keras_subjects(implementations, dtype_policies, batch_size, **kwargs):
    """A `KerasSubject` per dtype policy and implementation, in that order."""
    return [
        KerasSubject(impl, batch_size=batch_size, dtype_policy=policy, **kwargs)
        for policy in dtype_policies
        for impl in implementations
    ]


def _speeds_in_turn(subjects, gflop, batch_size, steps, warmup, gemm_size, dtypes):
    """The GFLOP/s of each step of each subject and of a GEMM of each dtype after each
    round.

    Returns:
        (speeds, gemm_speeds): one dict per subject, and {dtype: dict} for the GEMMs, each
        dict of lists "train" and "infer", one figure per round.
    """
    gemms = [_gemm(gemm_size, dtype) for dtype in dtypes]
    gemm_flop = gemms[0][1]
    fns = [gemm for gemm, _ in gemms]
    train = alternate([s.train for s in subjects] + fns, steps, warmup)
    infer = alternate([s.infer for s in subjects] + fns, steps, warmup)
    train, gemm_train = train[: len(subjects)], train[len(subjects) :]
    infer, gemm_infer = infer[: len(subjects)], infer[len(subjects) :]
    # A training step is about three forward passes (forward, two backward products).
    speeds = [
        dict(
            train=[3 * gflop * batch_size / t for t in train_s],
            infer=[gflop * batch_size / t for t in infer_s],
        )
        for train_s, infer_s in zip(train, infer)
    ]
    gemm_speeds = {
        dtype: dict(
            train=[gemm_flop / 1e9 / t for t in train_s],
            infer=[gemm_flop / 1e9 / t for t in infer_s],
        )
        for dtype, train_s, infer_s in zip(dtypes, gemm_train, gemm_infer)
    }
    return speeds, gemm_speeds


def _result(subject, speed, gemm_speeds, gflop, threads):
    """The dict `run` reports for one subject, from its speeds of `_speeds_in_turn`."""
    result = dict(subject.info, threads=threads, forward_gflop_per_img=round(gflop, 3))
    dtype = COMPUTE_DTYPES[result["dtype_policy"]]
    own, float32 = gemm_speeds[dtype], gemm_speeds["float32"]
    for key, flop in (("train", 3 * gflop), ("infer", gflop)):
        median = statistics.median(speed[key])
        result[f"{key}_img_per_s"] = round(median / flop, 2)
        result[f"{key}_gflop_per_s"] = round(median, 1)
        # Each step against the GEMM of its own round, which ran under the same load.
        result[f"{key}_fraction_of_peak"] = round(_median_ratio(speed[key], own[key]), 3)
        result[f"{key}_fraction_of_float32_peak"] = round(
            _median_ratio(speed[key], float32[key]), 3
        )
    result["gemm_dtype"] = dtype
    result["gemm_peak_gflop_per_s"] = round(statistics.median(own["train"] + own["infer"]), 1)
    result["float32_peak_gflop_per_s"] = round(
        statistics.median(float32["train"] + float32["infer"]), 1
    )
    return result


def _add_ratios_to_torch(results, speeds, peer_result, peer_speed):
    """Adds train_ratio_to_torch and infer_ratio_to_torch to the results of the models of
    the peer's precision."""
    for result, speed in zip(results, speeds):
        if result["dtype_policy"] == peer_result["dtype_policy"]:
            for key in ("train", "infer"):
                result[f"{key}_ratio_to_torch"] = round(
                    _median_ratio(speed[key], peer_speed[key]), 3
                )


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

    tf.nest.map_structure(lambda t: t.numpy(), tensors)


def per_layer(
    *,
    batch_size,
    steps=3,
    variant="paper",
    num_classes=1000,
    implementation="towers",
    dtype_policy="float32",
):
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
        dtype_policy: the model's Keras dtype policy; under a mixed one each layer's time
            holds its casts (its float32 weights to the compute dtype; the LRN's input to
            float32 and back, as the layer keeps its arithmetic in float32).

    Returns:
        A list of dicts, one per layer in order: name, forward_ms, backward_ms (the
        gradients with respect to the layer's input, but for the first layer's, and its
        weights: the time of forward and backward together less the forward's), gflop
        (forward, the whole batch), share (of the time of all layers) and
        train_gflop_per_s (None for a layer without multiply-adds).
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = model_lib.AlexNet(
        num_classes, variant=variant, implementation=implementation, dtype_policy=dtype_policy
    )
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
    _add_shares(rows)
    return rows


def _add_shares(rows):
    """Adds each layer's share of the step's time and its training GFLOP/s to its row."""
    total = sum(r["forward_ms"] + r["backward_ms"] for r in rows)
    for r in rows:
        ms = r["forward_ms"] + r["backward_ms"]
        r["share"] = round(ms / total, 3)
        # Forward and two backward products; the first layer has no input gradient.
        products = 2 if r is rows[0] else 3
        r["train_gflop_per_s"] = (
            round(products * r["gflop"] / (ms / 1000), 1) if r["gflop"] and ms else None
        )


def format_results(results):
    """The text the benchmark prints for `run`'s results: a line per model, each against
    the GEMM peak of its own compute dtype, the GEMM peaks, and the ratios of the first
    model to each other (to a PyTorch peer: the model of the peer's precision, the median
    of the rounds' ratios)."""
    lines = []
    for r in results:
        name = r["implementation"] + (f" {r['torch']}" if "torch" in r else "")
        peak = f"of {r['gemm_dtype']} peak"
        lines.append(
            f"{name:>18} {r['dtype_policy']:>14}: "
            f"train {r['train_img_per_s']:7.2f} img/s ({r['train_gflop_per_s']:6.1f} GFLOP/s, "
            f"{r['train_fraction_of_peak']:4.0%} {peak})   "
            f"inference {r['infer_img_per_s']:7.2f} img/s ({r['infer_gflop_per_s']:6.1f} "
            f"GFLOP/s, {r['infer_fraction_of_peak']:4.0%} {peak})"
        )
    peaks = {"float32": results[0]["float32_peak_gflop_per_s"]}
    peaks.update((r["gemm_dtype"], r["gemm_peak_gflop_per_s"]) for r in results)
    for dtype, peak in peaks.items():
        ratio = f" (x{peak / peaks['float32']:.2f} float32's)" if dtype != "float32" else ""
        lines.append(
            f"GEMM peak (tf.linalg.matmul {GEMM_SIZE}x{GEMM_SIZE}, {dtype}): "
            f"{peak:.1f} GFLOP/s{ratio}"
        )
    reference = results[0]
    for other in results[1:]:
        if other["implementation"] == "pytorch":
            model = next(
                (
                    r
                    for r in results
                    if "train_ratio_to_torch" in r and r["dtype_policy"] == other["dtype_policy"]
                ),
                None,
            )
            if model is None:
                continue
            ratios = [model[f"{key}_ratio_to_torch"] for key in ("train", "infer")]
        else:
            model = reference
            ratios = [
                reference[f"{key}_img_per_s"] / other[f"{key}_img_per_s"]
                for key in ("train", "infer")
            ]
        lines.append(
            f"{model['implementation']} {model['dtype_policy']} / "
            f"{other['implementation']} {other['dtype_policy']}: "
            f"train x{ratios[0]:.2f}, inference x{ratios[1]:.2f}"
        )
    return "\n".join(lines)


def format_per_layer(rows):
    """`per_layer`'s rows as the benchmark prints them: a table of the layers' times."""
    lines = [f"{'layer':>9} {'forward ms':>11} {'backward ms':>12} {'share':>6} {'GFLOP/s':>8}"]
    for r in rows:
        speed = f"{r['train_gflop_per_s']:8.1f}" if r["train_gflop_per_s"] else f"{'':>8}"
        lines.append(
            f"{r['name']:>9} {r['forward_ms']:11.2f} {r['backward_ms']:12.2f} "
            f"{r['share']:6.1%} {speed}"
        )
    return "\n".join(lines)
