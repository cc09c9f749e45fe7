"""A training run's folder, its model_dir: the files the run leaves there, and reading them back.

The run's record (`RUN_FILE`, written by `training.run_record.prepare_run`), the training set's
statistics and class names, the checkpoints, and the other workers' scratch folders.
"""

import json
import os
import re
import sys

import numpy as np
import tensorflow as tf

from keras_alexnet import errors
from keras_alexnet.data import sources
from keras_alexnet.data import stats as stats_lib
from keras_alexnet.models import alexnet as model_lib
from keras_alexnet.runs import write_errors

STATS_FILE = "dataset_stats.npz"  # mean image and colour PCA of the training set
LABELS_FILE = "labels.txt"  # class names, one a line, in label order
RUN_FILE = "run.json"  # the run's settings; a resumed run must keep RUN_KEYS
CHECKPOINTS = "checkpoints"
WORKERS = "workers"  # other workers' scratch checkpoints, removed when they finish

# What a resumed run must share with the run that wrote the checkpoints.
RUN_KEYS = (
    "dataset",
    "recipe",  # not in the runs of 0.1.0, which are not asked for it
    "variant",
    "num_classes",
    "batch_size",
    "seed",
    "init",
    "input_scale",
    "validation_split",
)


def input_scale_value(input_scale, stats):
    """The input scale a run uses: a number as given, or for "auto" 1 / the pixel std.

    The pixel std is that of 0-255 RGB values about their mean, from the training set's
    colour PCA: the eigenvalues sum to the total variance of RGB in [0, 1].
    """
    if input_scale != "auto":
        return float(input_scale)
    return float(1.0 / (255.0 * np.sqrt(np.mean(stats.eigval))))


def read_stats(model_dir):
    """The training set's `stats.Stats` a run recorded, or None before it has any.

    Raises:
        errors.InputError: the file is a folder, cut short or not the statistics.
    """
    path = os.path.join(model_dir, STATS_FILE)
    if not tf.io.gfile.exists(path):
        return None
    try:
        return stats_lib.Stats.load(path)
    except errors.InputError:
        raise
    except Exception as error:  # noqa: BLE001 - a damaged file: any fault is its own
        raise errors.InputError(
            f"{path}: not the training set's statistics that {STATS_FILE} holds (cut short, "
            f"a folder or another kind of file: {type(error).__name__}: {_line(error)})"
        ) from error


def _line(error, limit=150):
    """An error's message on one line of at most `limit` characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def write_stats(model_dir, stats):
    """Records the training set's `stats.Stats` (written aside, then renamed)."""
    path = os.path.join(model_dir, STATS_FILE)
    try:
        tf.io.gfile.makedirs(model_dir)
        stats.save(path)
    except write_errors.WRITE_ERRORS as error:
        raise write_errors.failed("the training set's statistics", path, error) from error


def write_labels(model_dir, class_names):
    """Writes the class names, one a line, in label order; refuses a name that would
    not stay one line (`sources.class_name_problem`)."""
    path = os.path.join(model_dir, LABELS_FILE)
    for name in class_names:
        if sources.class_name_problem(name):
            raise errors.InputError(
                f"class name {name!r} holds {sources.class_name_problem(name)}: it cannot be "
                f"one line of {path}"
            )
    try:
        with tf.io.gfile.GFile(path, "w") as f:
            f.write("\n".join(class_names) + "\n")
    except write_errors.WRITE_ERRORS as error:
        raise write_errors.failed("the class names", path, error) from error


def read_labels(model_dir):
    """The class names a run wrote, in label order."""
    with tf.io.gfile.GFile(os.path.join(model_dir, LABELS_FILE)) as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def previous_run(model_dir):
    """The record (run.json) of the run a new run on model_dir continues, or None.

    A run continues only a run that trained: one with a checkpoint. The record of a run
    that never trained a step (refused, or stopped before its first checkpoint) holds no
    settings to keep; it is replaced.
    """
    if not tf.io.gfile.exists(os.path.join(model_dir, RUN_FILE)):
        return None
    if latest_checkpoint(model_dir) is None:
        return None
    return read_run(model_dir)


def check_run(model_dir, run):
    """Checks that a resumed run keeps the settings the run recorded (`RUN_KEYS`).

    Raises:
        ValueError: naming the first setting that differs.
    """
    previous = previous_run(model_dir)
    if previous is None:
        return
    for key in RUN_KEYS:
        if key in previous and previous[key] != run.get(key):
            raise ValueError(
                f"model_dir {model_dir} holds a run with {key}={previous[key]!r}; resuming it "
                f"with {key}={run.get(key)!r} would not continue that run. Use another "
                f"--model_dir, or the same --{key}. Received: {key}={run.get(key)!r}"
            )


def reusable_stats(model_dir, run, keys):
    """Whether the statistics in model_dir are the new run's: those of the run it continues,
    or of a run that never trained whose record agrees with `run` on `keys`."""
    if previous_run(model_dir) is not None:
        return True
    if not tf.io.gfile.exists(os.path.join(model_dir, RUN_FILE)):
        return False
    recorded = read_run(model_dir)
    return all(recorded.get(key) == run.get(key) for key in keys)


def write_run(model_dir, run):
    """Records the run's settings: a resumed run keeps the record of the run it continues."""
    path = os.path.join(model_dir, RUN_FILE)
    if previous_run(model_dir) is None:
        try:
            tf.io.gfile.makedirs(model_dir)
            with tf.io.gfile.GFile(path + ".tmp", "w") as f:
                json.dump(run, f, indent=1)
            tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
        except write_errors.WRITE_ERRORS as error:
            raise write_errors.failed("the run's settings", path, error) from error


def read_run(model_dir):
    """The settings a training run recorded in its model_dir (see `RUN_KEYS`)."""
    path = os.path.join(model_dir, RUN_FILE)
    if not tf.io.gfile.exists(path):
        raise ValueError(
            f"model_dir holds no training run ({RUN_FILE} is missing). Received: {model_dir}"
        )
    if tf.io.gfile.isdir(path):
        raise errors.InputError(f"{path} is a folder, not the run's record (a JSON file)")
    try:
        with tf.io.gfile.GFile(path) as f:
            run = json.load(f)
    except (ValueError, tf.errors.OpError) as error:  # JSON, UTF-8 or reading
        raise errors.InputError(
            f"{path}: not the run's record, which is JSON ({_line(error)})"
        ) from error
    if not isinstance(run, dict):
        raise errors.InputError(
            f"{path}: the run's record must be a JSON object of settings; it holds a "
            f"{type(run).__name__}"
        )
    return run


def worker_dir(model_dir, task_name):
    """The scratch folder of a worker that is not the chief."""
    return os.path.join(model_dir, WORKERS, task_name)


def remove_worker_dir(model_dir, task_name):
    """Removes a finished worker's scratch folder, and the workers folder once empty."""
    tf.io.gfile.rmtree(worker_dir(model_dir, task_name))
    workers = os.path.join(model_dir, WORKERS)
    if tf.io.gfile.isdir(workers) and not tf.io.gfile.listdir(workers):
        tf.io.gfile.rmtree(workers)


def latest_checkpoint(model_dir):
    """The newest complete checkpoint in a run's model_dir, or None.

    `tf.train.CheckpointManager` writes a checkpoint's files first and then names it in
    the directory's state file; a run killed between the two leaves a good checkpoint that
    `tf.train.latest_checkpoint` does not see. This reads the files themselves: the newest
    ckpt-N whose index reads back (TensorFlow writes the index after the data).
    """
    for prefix in _numbered(model_dir):
        try:
            tf.train.list_variables(prefix)
        except (tf.errors.OpError, ValueError):
            continue  # cut short while being written
        return prefix
    return None


def _numbered(model_dir):
    """The ckpt-N prefixes with an index in the run's checkpoints folder, newest first."""
    pattern = os.path.join(model_dir, CHECKPOINTS, "ckpt-*.index")
    numbered = []
    for index in tf.io.gfile.glob(pattern):
        prefix = index[: -len(".index")]
        match = re.fullmatch(r"ckpt-(\d+)", os.path.basename(prefix))
        if match:
            numbered.append((int(match.group(1)), prefix))
    return [prefix for _, prefix in sorted(numbered, reverse=True)]


def checkpoint_fault(prefix):
    """What is wrong with a checkpoint, or None when its index and every variable's data
    read back (TensorFlow checks each tensor's checksum as it reads it): a data file cut
    short or overwritten is found here, before a restore fails halfway."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as error:  # noqa: BLE001 - a damaged file: any fault is its own
        return f"{type(error).__name__}: {_line(error)}"
    return None


def readable_checkpoint(model_dir, checkpoint=None):
    """The checkpoint to restore: `checkpoint` when given, else the newest of the run's
    whose data reads back (`checkpoint_fault`); one that does not is passed over for the
    one before, with a warning line naming it. None when the run has no checkpoint.

    Raises:
        errors.InputError: the checkpoint given, or every checkpoint of the run, is damaged.
    """
    if checkpoint:
        fault = checkpoint_fault(checkpoint)
        if fault:
            raise errors.InputError(f"{checkpoint}: the checkpoint cannot be read ({fault})")
        return checkpoint
    damaged = []
    for prefix in _numbered(model_dir):
        fault = checkpoint_fault(prefix)
        if fault is None:
            return prefix
        print(
            f"warning: passing over the checkpoint {prefix}, which cannot be read (cut short "
            f"or damaged: {fault}); trying the one before",
            file=sys.stderr,
            flush=True,
        )
        damaged.append(prefix)
    if damaged:
        raise errors.InputError(
            f"{damaged[0]}: the checkpoint cannot be read (cut short or damaged), nor can "
            f"any before it in {os.path.join(model_dir, CHECKPOINTS)}; remove that folder to "
            "start the run over"
        )
    return None


def restore_model(model_dir, checkpoint=None, dtype_policy=None):
    """Rebuilds a trained model from a training run's checkpoint.

    Args:
        model_dir: the run's model_dir.
        checkpoint: a checkpoint path (e.g. model_dir/checkpoints/ckpt-500); default: the
            latest.
        dtype_policy: the Keras dtype policy to build with (checkpoints hold float32
            variables, whatever precision trained them); default: Keras' global policy.

    Returns:
        (model, run): the Keras model with the checkpoint's weights, and the run's
        recorded settings (variant, class names, ...).

    Raises:
        ValueError: no run or no checkpoint in model_dir.
    """
    run = read_run(model_dir)
    checkpoint = checkpoint or readable_checkpoint(model_dir)  # one given: checked by its caller
    if not checkpoint:
        raise ValueError(f"model_dir holds no checkpoint yet. Received: model_dir={model_dir}")
    if "model_args" not in run:
        raise ValueError(
            f"{RUN_FILE} in model_dir does not record the model's arguments (model_args). "
            f"Received: model_dir={model_dir}"
        )
    model = model_lib.AlexNet(**run["model_args"], dtype_policy=dtype_policy)
    tf.train.Checkpoint(state=tf.train.Checkpoint(model=model)).restore(checkpoint).expect_partial()
    return model, run
