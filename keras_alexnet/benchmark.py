"""Training and inference speed of AlexNet: `python -m keras_alexnet.benchmark`.

Measures this package's model and, in the same run, the same network built with
`keras.layers.Conv2D(groups=2)` (which Keras compiles with XLA), and prints the ratio.
Compare ratios measured in one run, not absolute figures from different runs.

    python -m keras_alexnet.benchmark --batch_size=32 --steps=5
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
    reference = results[0]
    for other in results[1:]:
        print(
            f"{reference['implementation']} {reference['dtype_policy']} / "
            f"{other['implementation']} {other['dtype_policy']}: "
            f"train x{reference['train_img_per_s'] / other['train_img_per_s']:.2f}, "
            f"inference x{reference['infer_img_per_s'] / other['infer_img_per_s']:.2f}"
        )


if __name__ == "__main__":
    cli.run(main, define_flags)
