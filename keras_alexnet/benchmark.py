"""Training and inference speed of AlexNet: `python -m keras_alexnet.benchmark`.

Measures this package's model and, in the same run, the same network built with
`keras.layers.Conv2D(groups=2)` (which Keras compiles with XLA), and prints the ratio; then
the GEMM peak of the environment (a large `tf.linalg.matmul`) and each measurement as a
fraction of it; with --per_layer, the forward and backward time of each layer. Compare
ratios measured in one run, not absolute figures from different runs.

    python -m keras_alexnet.benchmark --batch_size=32 --steps=5 --per_layer
"""

import json
import os
import time

from absl import app
from absl import flags

from keras_alexnet import cli
from keras_alexnet import model as model_lib
from keras_alexnet import steps as steps_lib
from keras_alexnet import variants

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
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
    flags.DEFINE_boolean("json", False, "Print one JSON line per implementation instead of text.")
    flags.DEFINE_boolean(
        "per_layer", False, "Also time each layer's forward and backward pass (float32)."
    )


def _images_per_second(fn, batch_size, steps, warmup):
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return batch_size * steps / (time.perf_counter() - start)


def measure(
    implementation,
    *,
    batch_size,
    steps,
    warmup=2,
    variant="paper",
    num_classes=1000,
    dtype_policy=None,
):
    """Measures one implementation on random data.

    Args:
        implementation: a value of `AlexNet(implementation=...)`.
        batch_size: images per step.
        steps: timed steps for each of training and inference.
        warmup: untimed steps before timing.
        variant: the network variant.
        num_classes: classes of fc8.
        dtype_policy: a Keras dtype policy ("float32", "mixed_float16", "mixed_bfloat16");
            float16 trains with loss scaling, as `keras_alexnet.train` does.

    Returns:
        A dict with train_img_per_s, infer_img_per_s, their GFLOP/s and the forward
        GFLOP per image.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = model_lib.AlexNet(
        num_classes, variant=variant, implementation=implementation, dtype_policy=dtype_policy
    )
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    if dtype_policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    step = steps_lib.make_train_step(model, optimizer, batch_size)
    images = tf.random.normal((batch_size, *model.input_shape[1:]), stddev=50.0)
    labels = tf.random.uniform((batch_size,), 0, num_classes, dtype=tf.int32)
    predict = tf.function(lambda x: model(x, training=False))

    train = _images_per_second(lambda: step(images, labels)[0].numpy(), batch_size, steps, warmup)
    infer = _images_per_second(lambda: predict(images).numpy(), batch_size, steps, warmup)
    gflop = 2 * sum(model_lib.multiply_adds(model).values()) / 1e9
    return dict(
        implementation=implementation,
        variant=variant,
        dtype_policy=model.get_layer("conv1").dtype_policy.name,
        batch=batch_size,
        train_img_per_s=round(train, 2),
        infer_img_per_s=round(infer, 2),
        forward_gflop_per_img=round(gflop, 3),
        # A training step is about three forward passes (forward, two backward products).
        train_gflop_per_s=round(3 * gflop * train, 1),
        infer_gflop_per_s=round(gflop * infer, 1),
    )


def gemm_peak(size=4096, steps=5):
    """GFLOP/s of a float32 `tf.linalg.matmul` of two size x size matrices: the machine's
    matrix-multiply peak as TensorFlow reaches it, the yardstick of the model's speed."""
    import tensorflow as tf

    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    matmul = tf.function(lambda: tf.reduce_sum(tf.linalg.matmul(a, b)))
    per_second = _images_per_second(lambda: matmul().numpy(), 1, steps, warmup=1)
    return 2 * size**3 * per_second / 1e9


def _fetch(tensors):
    """Waits for the tensors' values (a call is timed to its results)."""
    import tensorflow as tf

    return tf.nest.map_structure(lambda t: t.numpy(), tensors)


def per_layer(*, batch_size, steps=3, variant="paper", num_classes=1000, implementation="towers"):
    """Forward and backward time of each layer, on the activations of a real forward pass.

    Args:
        batch_size: images per step.
        steps: timed calls of each (after one untimed).
        variant, num_classes, implementation: as for `measure`.

    Returns:
        A list of dicts, one per layer in order: name, forward_ms, backward_ms (the
        gradients with respect to the layer's input, but for the first layer's, and its
        weights), gflop (forward, the whole batch).
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = model_lib.AlexNet(num_classes, variant=variant, implementation=implementation)
    counts = model_lib.multiply_adds(model)
    x = tf.random.normal((batch_size, *model.input_shape[1:]), stddev=50.0)
    rows = []
    for layer in model.layers[1:]:
        forward = tf.function(lambda v, layer=layer: layer(v, training=True))
        y = forward(x)
        upstream = tf.random.normal(y.shape)

        # Training needs no gradient with respect to the images: not for the first layer.
        @tf.function
        def backward(v, layer=layer, upstream=upstream, wrt_input=layer is not model.layers[1]):
            with tf.GradientTape() as tape:
                tape.watch(v)
                out = layer(v, training=True)
            sources = ([v] if wrt_input else []) + layer.trainable_weights
            return tape.gradient(out, sources, output_gradients=upstream)

        seconds = [
            1.0 / _images_per_second(lambda fn=fn, v=x: _fetch(fn(v)), 1, steps, warmup=1)
            for fn in (forward, backward)
        ]
        rows.append(
            dict(
                name=layer.name,
                forward_ms=round(1000 * seconds[0], 2),
                backward_ms=round(1000 * seconds[1], 2),
                gflop=round(2 * counts.get(layer.name, 0) * batch_size / 1e9, 2),
            )
        )
        x = y
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
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS')}, "
        f"batch {FLAGS.batch_size}, {FLAGS.steps} timed steps",
        flush=True,
    )
    results = []
    for policy in FLAGS.dtype_policy:
        for impl in FLAGS.implementation:
            result = measure(
                impl,
                batch_size=FLAGS.batch_size,
                steps=FLAGS.steps,
                warmup=FLAGS.warmup,
                variant=FLAGS.variant,
                num_classes=FLAGS.num_classes,
                dtype_policy=policy,
            )
            results.append(result)
            if FLAGS.json:
                print(json.dumps(result), flush=True)
            else:
                print(
                    f"{impl:>13} {policy:>14}: train {result['train_img_per_s']:7.2f} img/s "
                    f"({result['train_gflop_per_s']:6.1f} GFLOP/s)   "
                    f"inference {result['infer_img_per_s']:7.2f} img/s "
                    f"({result['infer_gflop_per_s']:6.1f} GFLOP/s)",
                    flush=True,
                )
    peak = gemm_peak()
    print(f"GEMM peak (tf.linalg.matmul 4096x4096, float32): {peak:.1f} GFLOP/s", flush=True)
    for result in results:
        result["gemm_peak_gflop_per_s"] = round(peak, 1)
        result["train_fraction_of_peak"] = round(result["train_gflop_per_s"] / peak, 3)
        result["infer_fraction_of_peak"] = round(result["infer_gflop_per_s"] / peak, 3)
        line = (
            json.dumps(result)
            if FLAGS.json
            else f"{result['implementation']:>13} {result['dtype_policy']:>14}: train at "
            f"{result['train_fraction_of_peak']:.0%} of the GEMM peak, inference at "
            f"{result['infer_fraction_of_peak']:.0%}"
        )
        print(line, flush=True)
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
    reference = results[0]
    for other in results[1:]:
        print(
            f"{reference['implementation']} {reference['dtype_policy']} / "
            f"{other['implementation']} {other['dtype_policy']}: "
            f"train x{reference['train_img_per_s'] / other['train_img_per_s']:.2f}, "
            f"inference x{reference['infer_img_per_s'] / other['infer_img_per_s']:.2f}"
        )


def _print_per_layer(rows, as_json):
    total = sum(r["forward_ms"] + r["backward_ms"] for r in rows)
    if not as_json:
        print(f"{'layer':>9} {'forward ms':>11} {'backward ms':>12} {'share':>6} {'GFLOP/s':>8}")
    for r in rows:
        ms = r["forward_ms"] + r["backward_ms"]
        r["share"] = round(ms / total, 3)
        r["train_gflop_per_s"] = round(3 * r["gflop"] / (ms / 1000), 1) if r["gflop"] else None
        if as_json:
            print(json.dumps(dict(per_layer=r)), flush=True)
        else:
            speed = f"{r['train_gflop_per_s']:8.1f}" if r["gflop"] else f"{'':>8}"
            print(
                f"{r['name']:>9} {r['forward_ms']:11.2f} {r['backward_ms']:12.2f} "
                f"{r['share']:6.1%} {speed}",
                flush=True,
            )


if __name__ == "__main__":
    cli.run(main, define_flags)
