"""input_pipeline: the datasets compute the pure functions; order, resume, sharding."""

import image_data
import numpy as np
import pytest
import tensorflow as tf
import tiny

from keras_alexnet.data import bad_images
from keras_alexnet.data import folder_sources
from keras_alexnet.data import pipelines as input_pipeline
from keras_alexnet.data import preprocessing
from keras_alexnet.data import shard_writer as prepare
from keras_alexnet.data import shards as prepared
from keras_alexnet.data import sources

CROP = preprocessing.CROP_SIZE


def test_train_dataset_computes_the_pure_functions(source, stats):
    ds = input_pipeline.train_dataset(source, global_batch_size=4, stats=stats, seed=3, epoch=2)
    images, labels = next(iter(ds))
    assert images.shape == (4, CROP, CROP, 3) and images.dtype == tf.float32
    assert labels.dtype == tf.int32
    examples = list(source.examples("train", order=(3, 2)).take(4).as_numpy_iterator())
    for i, (ref, label) in enumerate(examples):
        expected = preprocessing.preprocess_for_train(tf.io.read_file(ref), stats, 3, 2, i)
        np.testing.assert_array_equal(images[i].numpy(), expected.numpy())
        assert labels[i] == label


def test_train_dataset_same_seed_same_batches(source, stats):
    def run(seed, epoch):
        return image_data.all_batches(
            input_pipeline.train_dataset(
                source, global_batch_size=5, stats=stats, seed=seed, epoch=epoch
            )
        )

    a, b, c = run(0, 0), run(0, 0), run(0, 1)
    assert len(a) == input_pipeline.steps_per_epoch(source, 5) == source.num_train // 5
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert any(not np.array_equal(ya, yc) for (_, ya), (_, yc) in zip(a, c))


@pytest.mark.parametrize("start_step, num_epochs", [(2, 1), (7, 2)])
def test_resume_yields_exactly_the_remaining_batches(source, stats, start_step, num_epochs):
    kwargs = dict(global_batch_size=4, stats=stats, seed=1, epoch=0, num_epochs=num_epochs)
    full = image_data.all_batches(input_pipeline.train_dataset(source, **kwargs))
    resumed = image_data.all_batches(
        input_pipeline.train_dataset(source, start_step=start_step, **kwargs)
    )
    assert len(full) == num_epochs * input_pipeline.steps_per_epoch(source, 4)
    assert len(resumed) == len(full) - start_step
    for (xf, yf), (xr, yr) in zip(full[start_step:], resumed):
        np.testing.assert_array_equal(yf, yr)
        np.testing.assert_array_equal(xf, xr)


def test_two_input_pipelines_partition_each_step(source, stats):
    kwargs = dict(global_batch_size=4, stats=stats, seed=2, epoch=1)
    single = image_data.all_batches(input_pipeline.train_dataset(source, **kwargs))
    shards = [
        image_data.all_batches(
            input_pipeline.train_dataset(
                source,
                input_context=tf.distribute.InputContext(
                    num_input_pipelines=2, input_pipeline_id=i, num_replicas_in_sync=2
                ),
                **kwargs,
            )
        )
        for i in range(2)
    ]
    assert len(shards[0]) == len(shards[1]) == len(single)
    for (x, y), (x0, y0), (x1, y1) in zip(single, *shards):
        assert x0.shape == (2, CROP, CROP, 3)
        # Pipeline i holds positions i, i + 2, ... of the global step.
        np.testing.assert_array_equal(np.stack([x0, x1], 1).reshape(x.shape), x)
        np.testing.assert_array_equal(np.stack([y0, y1], 1).reshape(-1), y)


def test_train_dataset_rejects_bad_arguments(source, stats):
    with pytest.raises(ValueError, match="global_batch_size"):
        input_pipeline.train_dataset(source, global_batch_size=10_000, stats=stats, seed=0, epoch=0)
    with pytest.raises(ValueError, match="start_step"):
        input_pipeline.train_dataset(
            source, global_batch_size=4, stats=stats, seed=0, epoch=0, start_step=6
        )


def test_eval_dataset_keeps_every_example(source, stats):
    ds = input_pipeline.eval_dataset(source, batch_size=4, stats=stats)
    batches = image_data.all_batches(ds)
    labels = np.concatenate([y for _, y in batches])
    assert source.num_validation == 9 and len(labels) == 9
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    first_ref = next(iter(source.examples("validation")))[0]
    expected = preprocessing.preprocess_for_eval(tf.io.read_file(first_ref), stats).numpy()
    np.testing.assert_array_equal(batches[0][0][0], expected)
    shards = [
        np.concatenate(
            [
                y
                for _, y in image_data.all_batches(
                    input_pipeline.eval_dataset(
                        source,
                        batch_size=4,
                        stats=stats,
                        input_context=tf.distribute.InputContext(2, i, 2),
                    )
                )
            ]
        )
        for i in range(2)
    ]
    # Two pipelines of one replica each: every pipeline gives ceil(9 / 4) = 3 steps of full
    # per-replica batches of 2; the places the split does not fill hold padding.
    padding = input_pipeline.PADDING_LABEL
    assert [len(shard) for shard in shards] == [6, 6]
    merged = np.concatenate(shards)
    assert sorted(merged[merged != padding].tolist()) == sorted(labels.tolist())
    assert (merged == padding).sum() == 3


def test_eval_dataset_ten_crops(source, stats):
    images, labels = next(
        iter(input_pipeline.eval_dataset(source, batch_size=2, stats=stats, crops="10"))
    )
    # Each image once, mean subtracted: the evaluation step cuts its ten patches.
    assert images.shape == (2, 256, 256, 3)
    ref = next(iter(source.examples("validation")))[0]
    image = preprocessing.decode_and_center_crop(tf.io.read_file(ref)).numpy() - stats.mean_image
    np.testing.assert_array_equal(images[0].numpy(), image)
    with pytest.raises(ValueError, match="crops"):
        input_pipeline.eval_dataset(source, batch_size=2, stats=stats, crops="five")


@pytest.mark.parametrize("pipelines", [1, 2])
def test_undecodable_in_step_names_the_file_the_pipelines_fail_on(tmp_path, stats, pipelines):
    root = image_data.make_folder(
        tmp_path / "f", classes=("a", "b"), train_per_class=6, val_per_class=1
    )
    damaged = tmp_path / "f" / "train" / "b" / "damaged.png"
    damaged.write_bytes(tiny.damaged_png())
    source = folder_sources.folder_source(root)
    assert source.num_train == 14  # 7 steps of 2: no example is dropped
    # Which step fails, found by running the real pipelines (each its share of the batch).
    failed = set()
    for pipeline_id in range(pipelines):
        context = tf.distribute.InputContext(pipelines, pipeline_id, pipelines)
        batches = iter(
            input_pipeline.train_dataset(
                source, global_batch_size=2, stats=stats, seed=3, epoch=1, input_context=context
            )
        )
        for step in range(7):
            try:
                next(batches)
            except tf.errors.InvalidArgumentError:
                failed.add(step)
                break
    assert len(failed) == 1
    for step in range(7):
        bad = bad_images.undecodable_in_step(
            source, seed=3, epoch=1, step=step, global_batch_size=2
        )
        if step in failed:
            assert [name for name, _ in bad] == [str(damaged)]
            assert "PNG" in bad[0][1] and "function_node" not in bad[0][1]
        else:
            assert bad == []
    assert [name for name, _ in bad_images.undecodable(source, "train")] == [str(damaged)]


def test_many_epochs_equal_the_epochs_one_by_one(source, stats):
    kwargs = dict(global_batch_size=6, stats=stats, seed=5)
    joined = image_data.all_batches(
        input_pipeline.train_dataset(source, epoch=1, num_epochs=3, **kwargs)
    )
    separate = [
        b
        for e in (1, 2, 3)
        for b in image_data.all_batches(input_pipeline.train_dataset(source, epoch=e, **kwargs))
    ]
    assert len(joined) == len(separate) == 3 * input_pipeline.steps_per_epoch(source, 6)
    for (xj, yj), (xs, ys) in zip(joined, separate):
        np.testing.assert_array_equal(yj, ys)
        np.testing.assert_array_equal(xj, xs)


@pytest.fixture(scope="module")
def prepared_source(tmp_path_factory, folder):
    """The `folder` fixture's images prepared (256x256 JPEG shards of 4 images)."""
    out = tmp_path_factory.mktemp("prepared")
    prepare.prepare(folder_sources.folder_source(folder), str(out), images_per_shard=4)
    return prepared.prepared_source(out)


def _expected_steps(source, stats, *, seed, epoch, start_step, global_batch_size, pipelines, i):
    """Pipeline i's batches computed example by example from the epoch's order: positions
    i, i + pipelines, ... of `examples(order)`, `preprocess_for_train` of each."""
    refs = list(source.examples("train", order=(seed, epoch)).as_numpy_iterator())
    per_step = global_batch_size // pipelines
    steps = input_pipeline.steps_per_epoch(source, global_batch_size)
    batches = []
    for step in range(start_step, steps):
        positions = [i + pipelines * k for k in range(step * per_step, (step + 1) * per_step)]
        images = [
            preprocessing.preprocess_for_train(source.load(refs[p][0]), stats, seed, epoch, p)
            for p in positions
        ]
        batches.append((np.stack(images), np.array([refs[p][1] for p in positions])))
    return batches


@pytest.mark.parametrize("kind, window", [("folder", 3), ("prepared", 3), ("prepared", 1024)])
def test_windows_shards_and_resume_against_example_by_example(
    source, prepared_source, stats, monkeypatch, kind, window
):
    # The pipeline works a window of examples at a time: windows of several sizes, two
    # pipelines and a resumed start must still give each example's own augmentation.
    monkeypatch.setattr(sources, "WINDOW", window)
    data = source if kind == "folder" else prepared_source
    assert (data.jpeg_size == preprocessing.IMAGE_SIZE) == (kind == "prepared")
    for pipelines, start_step in [(2, 1), (3, 2)]:
        gbs = 2 * pipelines
        for i in range(pipelines):
            context = tf.distribute.InputContext(pipelines, i, pipelines)
            kwargs = dict(global_batch_size=gbs, stats=stats, seed=4, epoch=1)
            got = input_pipeline.train_dataset(
                data, start_step=start_step, input_context=context, raw=True, **kwargs
            )
            expected = _expected_steps(
                data,
                stats,
                seed=4,
                epoch=1,
                start_step=start_step,
                global_batch_size=gbs,
                pipelines=pipelines,
                i=i,
            )
            got = [(b, y.numpy()) for b, y in got]
            assert len(got) == len(expected) > 0
            for (batch, labels), (images, expected_labels) in zip(got, expected):
                # uint8 patches from prepared JPEGs, float32 from other images.
                assert batch["patches"].dtype == (tf.uint8 if kind == "prepared" else tf.float32)
                finished = preprocessing.finish_train_batch(batch, stats).numpy()
                np.testing.assert_array_equal(finished, images)
                np.testing.assert_array_equal(labels, expected_labels)
