"""The model_dir: run records, labels, worker folders and the newest complete checkpoint."""

import json

import pytest
import tensorflow as tf

from keras_alexnet import errors
from keras_alexnet.runs import folder as run_folder

RUN = dict(
    dataset="folder:x",
    variant="paper",
    num_classes=4,
    batch_size=8,
    seed=0,
    init="paper",
    input_scale=1.0,
    validation_split=None,
    recipe="scratch",
)


def test_the_record_of_a_run_that_trained_is_kept_and_a_different_run_is_refused(tmp_path):
    model_dir = str(tmp_path / "run")
    run_folder.check_run(model_dir, RUN)  # nothing recorded yet: nothing to refuse
    run_folder.write_run(model_dir, dict(RUN, note="first"))
    # No checkpoint: a run that never trained a step holds no settings; a new one replaces it.
    run_folder.check_run(model_dir, dict(RUN, batch_size=4))
    run_folder.write_run(model_dir, dict(RUN, note="second"))
    assert run_folder.read_run(model_dir)["note"] == "second"
    assert run_folder.previous_run(model_dir) is None
    tf.train.Checkpoint(v=tf.Variable(1.0)).write(str(tmp_path / "run" / "checkpoints" / "ckpt-1"))
    run_folder.write_run(model_dir, dict(RUN, note="third"))
    assert run_folder.read_run(model_dir)["note"] == "second"
    assert json.loads((tmp_path / "run" / run_folder.RUN_FILE).read_text())["seed"] == 0
    run_folder.check_run(model_dir, dict(RUN, note="other"))  # only RUN_KEYS must agree
    for key in run_folder.RUN_KEYS:
        changed = dict(RUN, **{key: "changed"})
        with pytest.raises(ValueError, match=f"holds a run with {key}=.*--{key}"):
            run_folder.check_run(model_dir, changed)


def test_no_run_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="holds no training run"):
        run_folder.read_run(str(tmp_path))


def test_labels_round_trip(tmp_path):
    names = ["n01 tench", "n02 goldfish", "zebra"]
    run_folder.write_labels(str(tmp_path), names)
    assert run_folder.read_labels(str(tmp_path)) == names


def test_worker_dirs_are_removed_with_their_parent_when_empty(tmp_path):
    model_dir = str(tmp_path)
    for task in ("worker_1", "worker_2"):
        tf.io.gfile.makedirs(run_folder.worker_dir(model_dir, task))
    run_folder.remove_worker_dir(model_dir, "worker_1")
    assert (tmp_path / run_folder.WORKERS).is_dir()
    run_folder.remove_worker_dir(model_dir, "worker_2")
    assert not (tmp_path / run_folder.WORKERS).exists()


def test_latest_checkpoint_reads_the_files_and_skips_a_cut_index(tmp_path):
    directory = tmp_path / run_folder.CHECKPOINTS
    assert run_folder.latest_checkpoint(str(tmp_path)) is None
    checkpoint = tf.train.Checkpoint(v=tf.Variable(1.0))
    for number in (3, 10, 7):  # the newest by number, not by name order or write order
        checkpoint.write(str(directory / f"ckpt-{number}"))
    assert run_folder.latest_checkpoint(str(tmp_path)) == str(directory / "ckpt-10")
    with open(directory / "ckpt-10.index", "r+b") as f:
        f.truncate(10)
    assert run_folder.latest_checkpoint(str(tmp_path)) == str(directory / "ckpt-7")


def test_a_run_record_that_is_a_folder_a_list_or_not_json_is_named(tmp_path):
    path = tmp_path / run_folder.RUN_FILE
    path.mkdir()
    with pytest.raises(errors.InputError, match=f"{path} is a folder, not the run's record"):
        run_folder.read_run(str(tmp_path))
    path.rmdir()
    path.write_text("[1, 2]")
    with pytest.raises(
        errors.InputError, match="must be a JSON object of settings; it holds a list"
    ):
        run_folder.read_run(str(tmp_path))
    path.write_text('{"variant": ')
    with pytest.raises(errors.InputError) as raised:
        run_folder.read_run(str(tmp_path))
    assert str(path) in str(raised.value) and "not the run's record, which is JSON" in str(
        raised.value
    )


def test_statistics_cut_short_are_named(tmp_path):
    from image_data import random_stats

    random_stats().save(str(tmp_path / run_folder.STATS_FILE))
    assert run_folder.read_stats(str(tmp_path)) is not None
    path = tmp_path / run_folder.STATS_FILE
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(errors.InputError, match=f"{path}: not an .npz file"):
        run_folder.read_stats(str(tmp_path))


@pytest.mark.parametrize("damage", ["cut", "zeroed"])
def test_a_checkpoint_whose_data_is_damaged_is_passed_over_for_the_one_before(
    tmp_path, capsys, damage
):
    directory = tmp_path / run_folder.CHECKPOINTS
    for number in (3, 7):
        tf.train.Checkpoint(v=tf.Variable(tf.fill([1000], float(number)))).write(
            str(directory / f"ckpt-{number}")
        )
    assert run_folder.readable_checkpoint(str(tmp_path)) == str(directory / "ckpt-7")
    data = directory / "ckpt-7.data-00000-of-00001"
    size = data.stat().st_size
    data.write_bytes(data.read_bytes()[: size // 2] if damage == "cut" else bytes(size))
    # The index still reads back: the cheap check keeps it, the full one passes it over.
    assert run_folder.latest_checkpoint(str(tmp_path)) == str(directory / "ckpt-7")
    assert run_folder.readable_checkpoint(str(tmp_path)) == str(directory / "ckpt-3")
    warning = capsys.readouterr().err
    assert f"warning: passing over the checkpoint {directory / 'ckpt-7'}, which cannot" in warning
    with pytest.raises(errors.InputError, match="ckpt-7: the checkpoint cannot be read"):
        run_folder.readable_checkpoint(str(tmp_path), str(directory / "ckpt-7"))
    (directory / "ckpt-3.data-00000-of-00001").write_bytes(b"")
    with pytest.raises(errors.InputError, match="ckpt-7: the checkpoint cannot be read .* nor"):
        run_folder.readable_checkpoint(str(tmp_path))
