"""The training and evaluation steps, on one device and on several replicas."""

import json
import textwrap

import fresh_process
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_alexnet.training import steps


def test_evaluate_dataset_matches_numpy():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(7, activation="softmax")])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(23, 6)).astype(np.float32)
    y = rng.integers(0, 7, 23).astype(np.int32)
    got = steps.evaluate_dataset(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(5))
    probs = model.predict(x, verbose=0).astype(np.float64)
    ranks = (-probs).argsort(axis=1)
    assert got["count"] == 23
    assert got["cross_entropy"] == pytest.approx(-np.log(probs[np.arange(23), y]).mean(), rel=1e-5)
    assert got["top1_error"] == pytest.approx(np.mean(ranks[:, 0] != y))
    assert got["top5_error"] == pytest.approx(np.mean([t not in r[:5] for t, r in zip(y, ranks)]))
    # Padding examples (label -1) count for nothing.
    padded = tf.data.Dataset.from_tensor_slices(
        (np.concatenate([x, np.zeros((3, 6), np.float32)]), np.concatenate([y, [-1, -1, -1]]))
    )
    again = steps.evaluate_dataset(model, padded.batch(4))
    assert again["count"] == 23
    for key in ("cross_entropy", "top1_error", "top5_error"):
        assert again[key] == pytest.approx(got[key], rel=1e-5)


# Evaluation through the real input pipeline on 1, 2 and 3 replicas, for splits that
# leave the last step uneven (fewer images than replicas, less than a batch, many batches
# and a remainder), with a model that has the paper's towers, LRN and dropout.
DISTRIBUTED_EVAL = textwrap.dedent("""
    import json, os, sys
    import keras_alexnet
    from keras_alexnet.data import folder_sources, stats
    from keras_alexnet.data import pipelines as input_pipeline
    from keras_alexnet.models import layers
    from keras_alexnet.training import distribute, steps
    import keras, numpy as np, tensorflow as tf
    from PIL import Image

    root, sizes = sys.argv[1], json.loads(sys.argv[2])
    distribute.make_strategy("auto", cpu_replicas=3)
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategies = {
        1: tf.distribute.OneDeviceStrategy(cpus[0]),
        2: tf.distribute.MirroredStrategy(cpus[:2]),
        3: tf.distribute.MirroredStrategy(cpus),
    }
    rng = np.random.default_rng(0)

    def write_folder(path, num_validation):
        for split in ("train", "validation"):  # every split has every class folder
            for label in range(3):
                os.makedirs(f"{path}/{split}/class{label}", exist_ok=True)
        for split, count in (("train", 3), ("validation", num_validation)):
            for i in range(count):
                label = i % 3
                folder = f"{path}/{split}/class{label}"
                os.makedirs(folder, exist_ok=True)
                pixels = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
                pixels[..., label] = 255
                Image.fromarray(pixels).save(f"{folder}/{i:04d}.png")

    def build():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((227, 227, 3))
        x = keras.layers.Conv2D(8, 11, strides=8, activation="relu", name="conv1")(inputs)
        x = layers.LocalResponseNormalization()(x)
        x = layers.GroupedConv2D(8, 3, groups=2, padding="same", activation="relu")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        x = keras.layers.Dropout(0.5)(x)
        return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))

    mean = stats.Stats(np.full((256, 256, 3), 100.0), np.ones(3), np.eye(3))
    results = {}
    for n in sizes:
        write_folder(f"{root}/n{n}", n)
        source = folder_sources.folder_source(f"{root}/n{n}")
        for crops in ("center", "10") if n <= 5 else ("center",):
            for replicas, strategy in strategies.items():
                with strategy.scope():
                    model = build()
                data = strategy.distribute_datasets_from_function(
                    lambda ctx: input_pipeline.eval_dataset(
                        source, batch_size=6, stats=mean, crops=crops, input_context=ctx
                    )
                )
                got = steps.evaluate_dataset(model, data, strategy=strategy, crops=crops)
                results[f"{n} {crops} {replicas}"] = got
    print("RESULTS " + json.dumps(results))
""")


def test_distributed_evaluation_counts_every_example_once(tmp_path):
    sizes = [1, 5, 2 * 6 + 1, 17 * 6 + 5]
    result = fresh_process.run_script(DISTRIBUTED_EVAL, str(tmp_path), json.dumps(sizes))
    assert result.returncode == 0, result.stderr[-4000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULTS "))
    results = json.loads(line[len("RESULTS ") :])
    for n in sizes:
        for crops in ("center", "10") if n <= 5 else ("center",):
            one = results[f"{n} {crops} 1"]
            assert one["count"] == n
            for replicas in (2, 3):
                got = results[f"{n} {crops} {replicas}"]
                assert got["count"] == n, (n, crops, replicas)
                for key in ("cross_entropy", "top1_error", "top5_error"):
                    assert got[key] == pytest.approx(one[key], rel=1e-5, abs=1e-6), (n, key)
