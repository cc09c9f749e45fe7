"""graph_ops: the operations of a SavedModel read without running it, and the allowlist
derived again from fresh exports of this package's models.

Run as a script (`PYTHONPATH=tests python tests/serving/graph_ops_test.py`), it exports
every configuration of `ALL_CONFIGS` and prints the operations of each kind: what
`graph_ops.ALLOWED` must hold.
"""

import dataclasses
import os
import sys

import numpy as np
import pytest
import tensorflow as tf
import tiny

from keras_alexnet import errors
from keras_alexnet.models import alexnet as model_lib
from keras_alexnet.models import mean_image
from keras_alexnet.models import variants
from keras_alexnet.serving import graph_ops
from keras_alexnet.serving import saved_model

TESTDATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "testdata", "v0_1_0")
CLASSES = ["a", "b", "c", "d"]


def small_variant(name):
    """A registered variant with `name`'s layout and few channels: its graph has the same
    operations as the full network's (the channel counts are attributes, not ops)."""
    spec = variants.VARIANTS[name]
    small = dataclasses.replace(
        spec,
        name=f"ops_{name}",
        convs=tuple(
            dataclasses.replace(conv, filters=filters)
            for conv, filters in zip(spec.convs, (12, 32, 48, 48, 32))
        ),
        dense_units=(16, 16),
    )
    variants.VARIANTS.setdefault(small.name, small)
    return small.name


@dataclasses.dataclass(frozen=True)
class Config:
    """One export: a model built by the package, or a 0.1.0 file or run."""

    variant: str = "paper"
    implementation: str = "towers"
    mixed_precision: str = "none"
    normalized: bool = False  # an input normalisation inside, no mean image
    file: str = None  # a .keras file of tests/testdata/v0_1_0
    run: str = None  # a training run of tests/testdata/v0_1_0


# Every variant, implementation and precision the export tool takes, the two ways a model
# carries its preprocessing, and the 0.1.0 files.
ALL_CONFIGS = (
    *(
        Config(v, i, p)
        for v in ("paper", "caffe", "one_weird_trick")
        for i in ("towers", "native")
        for p in ("none", "float16", "bfloat16")
    ),
    *(Config(v, normalized=True) for v in ("paper", "caffe", "one_weird_trick")),
    Config(file="model.keras"),
    Config(run="run"),
)
# What the suite exports (about 40 s): a configuration for each operation of the lists.
CONFIGS = (
    Config("paper"),
    Config("caffe", "native", "float16", normalized=True),
    Config("one_weird_trick", mixed_precision="bfloat16"),
    Config(file="model.keras"),
)


def export(config, folder):
    """The version folder of an export of `config`, as `python -m keras_alexnet.export`
    writes it (`saved_model.export_run`)."""
    if config.file:
        return saved_model.export_run(
            model=os.path.join(TESTDATA, config.file), output_dir=folder, name="v0_1_0"
        )
    if config.run:
        tiny.register()  # the run's variant
        return saved_model.export_run(
            model_dir=os.path.join(TESTDATA, config.run), output_dir=folder, name="run"
        )
    norm = dict(input_scale=1 / 64.0, input_offset=-2.0) if config.normalized else {}
    model = model_lib.AlexNet(
        len(CLASSES),
        variant=small_variant(config.variant),
        implementation=config.implementation,
        class_names=CLASSES,
        init="he",
        **norm,
    )
    if not config.normalized:
        mean = np.random.default_rng(0).uniform(0, 255, (256, 256, 3)).astype("float32")
        model = mean_image.with_mean(model, mean)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model.keras")
    model.save(path)
    try:
        return saved_model.export_run(
            model=path, output_dir=folder, name="m", mixed_precision=config.mixed_precision
        )
    finally:
        os.remove(path)


def derive(configs, folder):
    """{kind: operations} over fresh exports of `configs` under `folder`."""
    found = {kind: set() for kind in graph_ops.ALLOWED}
    for n, config in enumerate(configs):
        version = export(config, os.path.join(folder, str(n)))
        for kind, ops in graph_ops.op_types(graph_ops.read_graph(version)).items():
            found[kind] |= ops
    return found


def assert_same_as_allowed(found):
    for kind, ops in found.items():
        missing = sorted(ops - graph_ops.ALLOWED[kind])
        unused = sorted(graph_ops.ALLOWED[kind] - ops)
        assert not missing and not unused, (
            f"graph_ops.ALLOWED[{kind!r}] has drifted from the exports: add {missing}, "
            f"remove {unused} (PYTHONPATH=tests python tests/serving/graph_ops_test.py "
            "prints the lists)"
        )


def test_the_allowlist_is_what_fresh_exports_use(tmp_path):
    assert_same_as_allowed(derive(CONFIGS, str(tmp_path)))


@pytest.mark.slow
def test_the_allowlist_is_what_every_export_configuration_uses(tmp_path):
    assert_same_as_allowed(derive(ALL_CONFIGS, str(tmp_path)))


def hostile_saved_model(folder):
    """A SavedModel whose serving_default writes a file and reads it back."""

    class Hostile(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, images):
            path = tf.strings.join([folder, "/written.txt"])
            tf.io.write_file(path, "written")
            return {"contents": tf.io.read_file(path)}

    tf.saved_model.save(Hostile(), folder, signatures={"serving_default": Hostile().serve})
    return folder


def test_a_graph_of_file_operations_is_refused_and_names_them(tmp_path):
    folder = hostile_saved_model(str(tmp_path / "hostile"))
    assert graph_ops.foreign_ops(folder) == ["ReadFile", "WriteFile"]
    with pytest.raises(errors.InputError, match=r"\(ReadFile, WriteFile\).*--trust_model"):
        graph_ops.check(folder)
    graph_ops.check(folder, trust=True)
    assert not os.path.exists(os.path.join(folder, "written.txt"))  # nothing ran


def test_the_saver_operations_are_refused_in_a_signature(tmp_path):
    """SaveV2 and RestoreV2 are in every export, for the saver only: a signature that
    writes or reads a checkpoint is refused."""

    class Saver(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
        def serve(self, prefix):
            tf.raw_ops.SaveV2(
                prefix=prefix, tensor_names=["x"], shape_and_slices=[""], tensors=[[1.0]]
            )
            return tf.raw_ops.RestoreV2(
                prefix=prefix, tensor_names=["x"], shape_and_slices=[""], dtypes=[tf.float32]
            )

    folder = str(tmp_path / "saver")
    tf.saved_model.save(Saver(), folder, signatures={"serving_default": Saver().serve})
    assert graph_ops.foreign_ops(folder) == ["RestoreV2", "SaveV2"]


@pytest.mark.parametrize("how", ["signature", "collection", "node"])
def test_the_saver_is_refused_where_anything_else_runs_it(tmp_path, how):
    """The saver's save function may write checkpoints; a graph that runs it from a
    signature, a collection (TensorFlow 1's main op) or another node is refused."""

    class Variable(tf.Module):
        def __init__(self):
            self.v = tf.Variable(1.0)

        @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
        def serve(self, x):
            return {"y": x * self.v}

    folder = str(tmp_path / "saver")
    module = Variable()
    tf.saved_model.save(module, folder, signatures={"serving_default": module.serve})
    assert graph_ops.foreign_ops(folder) == []
    proto = graph_ops.read_graph(folder)
    meta_graph = proto.meta_graphs[0]
    save = meta_graph.saver_def.save_tensor_name
    if how == "signature":
        meta_graph.signature_def["serving_default"].outputs["y"].name = save
    elif how == "collection":
        meta_graph.collection_def["saved_model_main_op"].node_list.value.append(save)
    else:
        meta_graph.graph_def.node.add(name="uses_save", op="Identity", input=[save])
    with open(os.path.join(folder, graph_ops.GRAPH_FILE), "wb") as f:
        f.write(proto.SerializeToString())
    assert {"MergeV2Checkpoints", "SaveV2"} <= set(graph_ops.foreign_ops(folder))


def test_a_broken_or_oversized_graph_file_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / graph_ops.GRAPH_FILE).write_bytes(b"\xff" * 100)
    with pytest.raises(errors.InputError, match="not a SavedModel graph"):
        graph_ops.check(str(folder))
    monkeypatch.setattr(graph_ops, "MAX_GRAPH_BYTES", 99)
    with pytest.raises(errors.InputError, match="100 bytes, over the 99"):
        graph_ops.check(str(folder))


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        configs = ALL_CONFIGS if sys.argv[1:] != ["--suite"] else CONFIGS
        for kind, ops in derive(configs, work).items():
            print(kind, sorted(ops))
