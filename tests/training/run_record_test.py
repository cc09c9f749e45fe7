"""prepare_run: what is refused before any training work, and what a run records."""

import os
import shutil

import pytest
import tensorflow as tf
import tiny

from keras_alexnet.runs import folder as run_folder
from keras_alexnet.training import run_record
from keras_alexnet.training import trainer


def test_batch_must_divide_by_replicas_and_missing_data_is_an_error(tmp_path, tiny_root):
    with pytest.raises(ValueError, match="data_dir does not exist"):
        run_record.prepare_run(tiny.train_config(tmp_path / "a", str(tmp_path / "missing")))
    assert not os.path.exists(tmp_path / "a" / "checkpoints")
    with pytest.raises(ValueError, match=r"batch_size .* at most the training set's size \(48"):
        run_record.prepare_run(tiny.train_config(tmp_path / "b", tiny_root, batch_size=1000))


def checkpointed(model_dir):
    """Leaves a checkpoint in model_dir, as a run that trained a step does."""
    tf.train.Checkpoint(v=tf.Variable(1.0)).write(os.path.join(model_dir, "checkpoints", "ckpt-1"))


def test_resume_refuses_a_different_run(tmp_path, tiny_root):
    model_dir = tmp_path / "run"
    run_record.prepare_run(tiny.train_config(model_dir, tiny_root))
    checkpointed(model_dir)
    with pytest.raises(ValueError, match="batch_size=8; resuming it with batch_size=4"):
        run_record.prepare_run(tiny.train_config(model_dir, tiny_root, batch_size=4))


def fast_config(model_dir, root, **overrides):
    """The tiny config without the decoding scan (each new model_dir would decode anew)."""
    return tiny.train_config(model_dir, root, on_bad_image="fail", **overrides)


def test_a_refused_run_writes_nothing_and_a_run_that_never_trained_takes_new_settings(
    tmp_path, tiny_root
):
    model_dir = tmp_path / "run"
    # Refused after the data were read (48 training images): nothing in model_dir, not
    # even the folder.
    with pytest.raises(ValueError, match=r"at most the training set's size \(48 images"):
        trainer.train(fast_config(model_dir, tiny_root, batch_size=128))
    assert not model_dir.exists()
    run_record.prepare_run(fast_config(model_dir, tiny_root, batch_size=4))
    assert run_folder.read_run(str(model_dir))["batch_size"] == 4
    first_stats = (model_dir / run_folder.STATS_FILE).stat().st_mtime_ns
    # No checkpoint: the run never trained, and the next one records its own settings.
    run_record.prepare_run(fast_config(model_dir, tiny_root, batch_size=8))
    assert run_folder.read_run(str(model_dir))["batch_size"] == 8
    # Same data and seed: the statistics are read, not computed again.
    assert (model_dir / run_folder.STATS_FILE).stat().st_mtime_ns == first_stats
    run_record.prepare_run(fast_config(model_dir, tiny_root, batch_size=8, seed=1))
    assert (model_dir / run_folder.STATS_FILE).stat().st_mtime_ns != first_stats


def test_the_recipe_is_printed_recorded_and_kept_on_resume(tmp_path, tiny_root, capsys):
    model_dir = tmp_path / "run"
    run = run_record.prepare_run(fast_config(model_dir, tiny_root, recipe=None))
    printed = capsys.readouterr().out
    # An image folder's default: from scratch on small data.
    assert run.config.recipe == "scratch" and run.config.optimizer == "adam"
    assert "  recipe scratch (from scratch on small data; --recipe=paper|scratch|finetune" in (
        printed
    )
    assert run_folder.read_run(str(model_dir))["recipe"] == "scratch"
    # The global batch of 8 is more than a tenth of the 48 training images.
    assert "warning: the global batch (8) is more than a tenth of the training set (48 " in (
        printed
    )
    run_record.prepare_run(fast_config(tmp_path / "small", tiny_root, batch_size=4))
    assert "warning: the global batch" not in capsys.readouterr().out
    # A field's own flag overrides the recipe's.
    run = run_record.prepare_run(
        fast_config(tmp_path / "sgd", tiny_root, recipe=None, optimizer="sgd")
    )
    assert (run.config.recipe, run.config.optimizer, run.config.init) == ("scratch", "sgd", "paper")
    # Resumed without --recipe, a run keeps its own; another one is refused.
    paper_dir = tmp_path / "paper"
    run_record.prepare_run(fast_config(paper_dir, tiny_root, recipe="paper"))
    checkpointed(paper_dir)
    run = run_record.prepare_run(fast_config(paper_dir, tiny_root, recipe=None))
    assert run.config.recipe == "paper" and run.config.optimizer == "sgd"
    with pytest.raises(ValueError, match="holds a run with recipe='paper'.*--recipe"):
        run_record.prepare_run(fast_config(paper_dir, tiny_root, recipe="scratch"))


def test_a_file_as_model_dir_is_refused_before_the_lock(tmp_path, tiny_root):
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    with pytest.raises(ValueError, match="model_dir must be a folder .* not a file. Received"):
        trainer.train(fast_config(path, tiny_root))
    assert path.read_text() == "mine"


def test_the_run_is_recorded_before_the_first_step(tmp_path, tiny_root):
    model_dir = tmp_path / "run"
    run = run_record.prepare_run(fast_config(model_dir, tiny_root))
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
        run_record.prepare_run(fast_config(tmp_path / "a", str(root)))
    assert not (tmp_path / "a" / run_folder.RUN_FILE).exists()
    run = run_record.prepare_run(fast_config(tmp_path / "b", str(root), lr_schedule="cosine"))
    assert run.source.num_validation == 0
