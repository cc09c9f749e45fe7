"""Strategies: MirroredStrategy over logical CPUs trains like one device."""

import json
import textwrap

import fresh_process
import pytest

from keras_alexnet.training import distribute

MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import keras_alexnet
    from keras_alexnet.training import distribute, steps, trainer
    import keras, numpy as np, tensorflow as tf
    import tiny

    tiny.register()

    mirrored = distribute.make_strategy("mirrored", cpu_replicas=2)
    assert mirrored.num_replicas_in_sync == 2, mirrored.num_replicas_in_sync
    one = tf.distribute.OneDeviceStrategy("/cpu:0")
    rng = np.random.default_rng(0)
    images = rng.normal(0, 40, (8, 227, 227, 3)).astype(np.float32)
    labels = (np.arange(8) % 4).astype(np.int32)
    weights, losses, initials = {}, {}, {}
    # The third round: dropout on, each replica its own masks. The last three: dropout on,
    # float32 and mixed_bfloat16 from the same weights, on one device and on 2 replicas.
    for name, strategy, dropout, policy in (
        ("one", one, 0.0, None),
        ("mirrored", mirrored, 0.0, None),
        ("dropout", mirrored, 0.5, None),
        ("dropout_bfloat16", mirrored, 0.5, "mixed_bfloat16"),
        ("one_dropout", one, 0.5, None),
        ("one_dropout_bfloat16", one, 0.5, "mixed_bfloat16"),
    ):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = keras_alexnet.AlexNet(4, dropout=dropout, variant="tiny", dtype_policy=policy)
            opt = keras.optimizers.SGD(0.001, momentum=0.9)
            opt.build(model.trainable_variables)
        initial = initials[name] = [v.numpy() for v in model.trainable_variables]
        probs = model(images, training=False).numpy().astype(np.float64)
        reference = (
            -np.log(probs[np.arange(8), labels]).mean(),
            sum(float(x) for x in model.losses),
        )
        step = distribute.run_and_sum(strategy, steps.make_train_step(model, opt, 8))
        data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
        batch = next(iter(strategy.experimental_distribute_dataset(data)))
        cross_entropy, decay, _, _ = (float(x) for x in step(*batch))
        losses[name] = dict(cross_entropy=cross_entropy, weight_decay=decay, reference=reference)
        weights[name] = [v.numpy() for v in model.trainable_variables]
        assert any(not np.allclose(a, b) for a, b in zip(initial, weights[name]))
    for a, b in zip(weights["one"], weights["mirrored"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    print("LOSSES " + json.dumps(losses))
    # Each weight's update in mixed_bfloat16 against its float32 update (relative norm).
    errors = {}
    pairs = (("dropout_bfloat16", "dropout"), ("one_dropout_bfloat16", "one_dropout"))
    for name, reference in pairs:
        assert all(np.array_equal(a, b) for a, b in zip(initials[name], initials[reference]))
        errors[name] = [
            # A weight float32 leaves where it was (a bias of units that are all cut by
            # the ReLU): 0 if bfloat16 leaves it too, else infinite.
            float(np.linalg.norm(a - b) / np.linalg.norm(b - start))
            if np.any(b != start)
            else (0.0 if np.array_equal(a, b) else float("inf"))
            for a, b, start in zip(weights[name], weights[reference], initials[name])
        ]
    print("BFLOAT16 " + json.dumps(errors))
    print("SAME_WEIGHTS", len(weights["one"]))
    # A few steps of the full loop on the built-in set under the mirrored strategy.
    cfg = tiny.train_config(sys.argv[2], sys.argv[1], max_steps=3)
    result = trainer.train(cfg, strategy=mirrored)
    train = result["train"]
    assert result["step"] == 3 and np.isfinite(train["cross_entropy"]), result
    assert train["total_loss"] == train["cross_entropy"] + train["weight_decay"], train
    print("MIRRORED_TRAINED", result["step"])
""")


def test_mirrored_step_equals_one_device_step(scripts):
    stdout = scripts("mirrored")
    assert "SAME_WEIGHTS 16" in stdout
    assert "MIRRORED_TRAINED 3" in stdout


def test_the_reported_cross_entropy_is_the_global_batch_mean_on_two_replicas(scripts):
    line = next(x for x in scripts("mirrored").splitlines() if x.startswith("LOSSES "))
    losses = json.loads(line[len("LOSSES ") :])
    for name in ("one", "mirrored", "dropout"):
        cross_entropy, decay = losses[name]["reference"]  # NumPy, and sum(model.losses)
        # The replicas' shares sum to the global batch's mean, not twice it.
        rel = 1e-4 if name != "dropout" else 0.05  # dropout: other masks, near-uniform output
        assert losses[name]["cross_entropy"] == pytest.approx(cross_entropy, rel=rel), name
        assert losses[name]["weight_decay"] == pytest.approx(decay, rel=1e-5), name
        assert decay > 0


# mixed_bfloat16's step against float32's, dropout on: (bfloat16 round, float32 round).
BFLOAT16_PAIRS = (("dropout_bfloat16", "dropout"), ("one_dropout_bfloat16", "one_dropout"))
# Each weight's update, relative to float32's (relative norm): measured at most 0.52 in
# the convolutions, whose gradients sum many positions of small activations, 0.025 in fc6,
# fc7 and fc8, whose units the same dropout masks keep (with other masks: about 1).
BFLOAT16_TOLERANCE, BFLOAT16_FC_TOLERANCE = 0.75, 0.1


def test_a_bfloat16_step_with_dropout_matches_float32_on_one_and_two_replicas(scripts):
    stdout = scripts("mirrored")
    losses = json.loads(next(x for x in stdout.splitlines() if x.startswith("LOSSES "))[7:])
    errors = json.loads(next(x for x in stdout.splitlines() if x.startswith("BFLOAT16 "))[9:])
    print(errors)
    for name, reference in BFLOAT16_PAIRS:
        # bfloat16 keeps 8 bits of mantissa (a relative rounding of 2^-9); the same dropout
        # masks as float32's, so only the rounding parts the two steps.
        got, want = losses[name], losses[reference]
        assert got["cross_entropy"] == pytest.approx(want["cross_entropy"], rel=0.02), name
        assert got["weight_decay"] == pytest.approx(want["weight_decay"], rel=1e-5), name
        assert len(errors[name]) == 16, errors
        assert max(errors[name]) < BFLOAT16_TOLERANCE, (name, errors[name])
        assert max(errors[name][-6:]) < BFLOAT16_FC_TOLERANCE, (name, errors[name])


def test_multi_worker_refuses_cpu_replicas():
    with pytest.raises(ValueError, match="one CPU device per worker"):
        distribute.make_strategy("multi_worker", cpu_replicas=2)


# Dropout on 2 replicas: the masks of keras.layers.Dropout (the same on both replicas)
# and of head_layers.ReplicaDropout (each replica its own), over 10 steps of 4 x 4096
# units each.
DROPOUT_SCRIPT = textwrap.dedent("""
    import keras_alexnet
    from keras_alexnet.models import head_layers
    from keras_alexnet.training import distribute
    import keras, numpy as np, tensorflow as tf

    strategy = distribute.make_strategy("mirrored", cpu_replicas=2)
    data = tf.data.Dataset.from_tensors(tf.ones((8, 4096))).repeat(10)
    for cls in (keras.layers.Dropout, head_layers.ReplicaDropout):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            layer = cls(0.5)
            layer.build((None, 4096))
        run = tf.function(lambda x: strategy.run(lambda y: layer(y, training=True), args=(x,)))
        same, dropped = [], []
        for batch in strategy.experimental_distribute_dataset(data):
            a, b = (v.numpy() == 0 for v in strategy.experimental_local_results(run(batch)))
            same.append(float(np.mean(a == b)))
            dropped += [float(a.mean()), float(b.mean())]
        print(cls.__module__.split(".")[0], "same", np.mean(same), "dropped", min(dropped),
              "to", max(dropped))
""")


def test_each_replica_draws_its_own_dropout_masks(scripts):
    figures = {
        line.split()[0]: [float(x) for x in line.split()[2::2]]
        for line in scripts("dropout").splitlines()
        if " same " in line
    }  # {package: [same, lowest dropped fraction, highest]}
    print(figures)
    # keras.layers.Dropout: replica 1 drops exactly replica 0's units (the defect).
    assert figures["keras"][0] == 1.0
    # Ours: independent masks agree on about half the units; each drops about half.
    same, low, high = figures["keras_alexnet"]
    assert 0.47 < same < 0.53 and 0.48 < low <= high < 0.52, figures


# float16 on 2 replicas: the second replica's images overflow (1e6 > float16's 65504),
# the first replica's do not. The step must be skipped and the loss scale halved on both,
# as on one device with the same global batch.
OVERFLOW_SCRIPT = textwrap.dedent("""
    import keras_alexnet
    from keras_alexnet.training import distribute, steps
    import keras, numpy as np, tensorflow as tf
    import tiny

    tiny.register()
    mirrored = distribute.make_strategy("mirrored", cpu_replicas=2)
    one = tf.distribute.OneDeviceStrategy("/cpu:0")
    rng = np.random.default_rng(0)
    images = rng.normal(0, 40, (8, 227, 227, 3)).astype(np.float32)
    images[4:] *= 1e6  # replica 1's half of the global batch
    labels = (np.arange(8) % 4).astype(np.int32)
    for name, strategy in (("one", one), ("mirrored", mirrored)):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = keras_alexnet.AlexNet(4, variant="tiny", dtype_policy="mixed_float16")
            opt = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.01))
            opt.build(model.trainable_variables)
        before = [v.numpy() for v in model.trainable_variables]
        scale = float(opt.dynamic_scale.numpy())
        run = distribute.run_and_sum(strategy, steps.make_train_step(model, opt, 8))
        data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
        run(*next(iter(strategy.experimental_distribute_dataset(data))))
        after = [v.numpy() for v in model.trainable_variables]
        unchanged = all(np.array_equal(a, b) for a, b in zip(before, after))
        finite = all(np.isfinite(a).all() for a in after)
        print(name, "unchanged", unchanged, "finite", finite, "scale",
              scale, float(opt.dynamic_scale.numpy()))
""")


def test_a_float16_overflow_on_one_replica_skips_the_step_on_all(scripts):
    output = scripts("overflow")
    lines = {line.split()[0]: line for line in output.splitlines() if " scale " in line}
    print(lines)
    for name in ("one", "mirrored"):
        words = lines[name].split()
        assert words[2] == "True" and words[4] == "True", lines[name]
        assert float(words[7]) == float(words[6]) / 2, lines[name]


# The scripts above, in two fresh processes that run at the same time: the mirrored step
# and the dropout masks one after the other in one (each script in its own namespace, its
# output kept apart), which spares a TensorFlow import. The overflow script has a process
# of its own: two MirroredStrategy objects that both all-reduce in one process clash on
# TensorFlow's collective instance keys.
RUN_SCRIPTS = textwrap.dedent("""
    import contextlib, io, json, sys, traceback
    import keras_alexnet  # first: it sets TensorFlow's environment

    scripts, argv = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    results = {}
    for name, source in scripts.items():
        sys.argv = [name, *argv.get(name, [])]
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(source, name, "exec"), {"__name__": "__main__"})
            error = None
        except BaseException:
            error = traceback.format_exc()
        results[name] = dict(stdout=out.getvalue(), error=error)
    print("RESULTS " + json.dumps(results))
""")


@pytest.fixture(scope="module")
def scripts(tmp_path_factory, tiny_root):
    """fn(name) -> the standard output of that script ("mirrored", "dropout", "overflow")."""
    groups = [
        dict(mirrored=MIRRORED_SCRIPT, dropout=DROPOUT_SCRIPT),
        dict(overflow=OVERFLOW_SCRIPT),
    ]
    argv = dict(mirrored=[tiny_root, str(tmp_path_factory.mktemp("mirrored") / "run")])
    results = {}
    for result in fresh_process.run_scripts(
        *[(RUN_SCRIPTS, [json.dumps(group), json.dumps(argv)]) for group in groups]
    ):
        line = [x for x in result.stdout.splitlines() if x.startswith("RESULTS ")]
        assert result.returncode == 0 and line, result.stderr[-4000:]
        results.update(json.loads(line[-1][len("RESULTS ") :]))

    def get(name):
        assert results[name]["error"] is None, results[name]["error"][-4000:]
        return results[name]["stdout"]

    return get
