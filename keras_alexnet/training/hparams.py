"""A run's settings in TensorBoard: a Text entry, and HParams to compare runs by.

Written when a run starts (and again when it resumes): the resolved `TrainConfig` and what
the run found (the dataset, its classes and images, the replicas). The Text entry (in
model_dir/train) holds them all; the HParams view lists each run with its recipe (the
settings but where it writes and how it reports) and its last validation top-1 and top-5
error, the scalars the run writes to model_dir/validation.
"""

import dataclasses
import os

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from keras_alexnet.runs import write_errors
from keras_alexnet.training import summaries

# Where a run reads and writes and how it reports, not what it learns: in the Text table, not in
# the HParams, whose view then lists the recipe.
NOT_HPARAMS = (
    "model_dir",
    "data_dir",
    "manual_dir",
    "dataset_name",
    "checkpoint_every",
    "keep_checkpoints",
    "input_timeout",
    "data_service",
    "log_every",
    "profile_steps",
    "projector_images",
    "verbose",
)

# The validation scalars the HParams view shows as metrics: (tag, folder, display name).
METRICS = (
    ("top1_error" + summaries.PERCENT_SUFFIX, "validation", "validation top-1 error (%)"),
    ("top5_error" + summaries.PERCENT_SUFFIX, "validation", "validation top-5 error (%)"),
)


def settings(run):
    """The run's settings: {name: bool, int, float or str}, in the config's order.

    Args:
        run: a `record.Run`.
    """
    values = dataclasses.asdict(run.config)
    values.update(
        dataset_name=run.source.name,
        num_classes=run.source.num_classes,
        train_images=run.source.num_train,
        validation_images=run.source.num_validation,
        replicas=run.strategy.num_replicas_in_sync,
    )
    return {name: _value(value) for name, value in values.items()}


def _value(value):
    """A value HParams takes: bool, int, float and str as they are, others as text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return str(value)


def table(values):
    """The settings as a Markdown table, for TensorBoard's Text view."""
    rows = ["| setting | value |", "|---|---|"]
    rows += [f"| {name} | `{value}` |" for name, value in values.items()]
    return "\n".join(rows)


def write(model_dir, run):
    """Writes the run's settings as Text (model_dir/train) and HParams (model_dir).

    Args:
        model_dir: the run's folder.
        run: a `record.Run`; only its chief writes.

    Raises:
        write_errors.WriteFailed: the log folder cannot be written.
    """
    if not run.chief:
        return
    values = settings(run)
    recipe = {name: value for name, value in values.items() if name not in NOT_HPARAMS}
    try:
        session = tf.summary.create_file_writer(model_dir)
        with session.as_default(step=0):
            hp.hparams_config(
                hparams=[hp.HParam(name) for name in recipe],
                metrics=[
                    hp.Metric(tag, group=group, display_name=shown) for tag, group, shown in METRICS
                ],
            )
            hp.hparams(recipe, trial_id=os.path.basename(os.path.normpath(model_dir)))
        session.close()
        text = tf.summary.create_file_writer(os.path.join(model_dir, "train"))
        with text.as_default(step=0):
            tf.summary.text("settings", table(values), description="The run's resolved settings.")
        text.close()
    except write_errors.WRITE_ERRORS as error:
        raise write_errors.failed("TensorBoard summaries to", model_dir, error) from error
