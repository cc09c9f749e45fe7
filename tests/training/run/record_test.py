"""prepare_run: what is refused before any training work, and what a run records."""

import os
import shutil

import pytest
import tiny

from keras_alexnet.training.run import folder as run_folder
from keras_alexnet.training.run import record as run_record


def test_batch_must_divide_by_replicas_and_missing_data_is_an_error(tmp_path, tiny_root):
    with pytest.raises(ValueError, match="data_dir does not exist"):
        run_record.prepare_run(tiny.train_config(tmp_path / "a", str(tmp_path / "missing")))
    assert not os.path.exists(tmp_path / "a" / "checkpoints")
    with pytest.raises(ValueError, match="global_batch_size must be between"):
        run_record.prepare_run(tiny.train_config(tmp_path / "b", tiny_root, batch_size=1000))


def test_resume_refuses_a_different_run(tmp_path, tiny_root):
    model_dir = tmp_path / "run"
    run_record.prepare_run(tiny.train_config(model_dir, tiny_root))
    with pytest.raises(ValueError, match="batch_size=8; resuming it with batch_size=4"):
        run_record.prepare_run(tiny.train_config(model_dir, tiny_root, batch_size=4))


def test_the_run_is_recorded_before_the_first_step(tmp_path, tiny_root):
    model_dir = tmp_path / "run"
    run = run_record.prepare_run(tiny.train_config(model_dir, tiny_root))
    record = run_folder.read_run(str(model_dir))
    assert record["model_args"] == run.model_args and record["variant"] == "tiny"
    assert run_folder.read_labels(str(model_dir)) == list(run.source.class_names)
    stats = run_folder.read_stats(str(model_dir))
    assert stats.num_images == 16  # stats_images of the tiny config
    assert (run.steps_per_epoch, run.total_steps) == (6, 6)  # 48 images, batch 8, 1 epoch


def test_the_plateau_rule_needs_validation_images(tmp_path, tiny_root):
    root = tmp_path / "data"
    shutil.copytree(os.path.join(tiny_root, "train"), root / "train")
    with pytest.raises(ValueError, match="lr_schedule=plateau .* has no validation images"):
        run_record.prepare_run(tiny.train_config(tmp_path / "a", str(root)))
    assert not (tmp_path / "a" / run_folder.RUN_FILE).exists()
    run = run_record.prepare_run(tiny.train_config(tmp_path / "b", str(root), lr_schedule="cosine"))
    assert run.source.num_validation == 0
