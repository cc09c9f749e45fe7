"""What a training run saves and resumes: `TrainState` and its checkpoints.

The checkpoint layout (kept compatible across versions, so that a run resumes after an
upgrade):

    Checkpoint(
        state=Checkpoint(model, optimizer, schedule, step, epoch, step_in_epoch, rng_state),
        loss_scale=Checkpoint(scale, counter),   # float16 runs only
    )

The optimizer saved is the SGD or Adam state whatever the precision, so a run can resume
with or without mixed precision; float16's loss scale is the separate, optional part.
"""

import hashlib
import os

import keras
import numpy as np
import tensorflow as tf

from keras_alexnet.runs import folder as run_folder
from keras_alexnet.runs import write_errors
from keras_alexnet.training import distribute


class TrainState:
    """The step, epoch, schedule, dropout RNG and loss scale of a run, and its checkpoints.

    Args:
        model: the Keras model being trained.
        optimizer: its optimizer; a `keras.optimizers.LossScaleOptimizer` for float16.
        schedule: a `schedule.PlateauSchedule` (saved even when another schedule runs).
        checkpoint_dir: where this process writes its checkpoints.
        keep_checkpoints: how many are kept.
    """

    def __init__(self, model, optimizer, schedule, checkpoint_dir, keep_checkpoints):
        self.model = model
        self.optimizer = optimizer
        self.schedule = schedule
        scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        self.base_optimizer = optimizer.inner_optimizer if scaled else optimizer
        # Host-side counters, read and written eagerly between steps.
        self.step_var = tf.Variable(0, dtype=tf.int64, trainable=False)  # skipped steps too
        self.epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.step_in_epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
        # Dropout's random state is not tracked by the model's checkpoint dependencies; it
        # is saved explicitly so that a resumed run draws the masks the uninterrupted one
        # would.
        rng_state = [v for v in model.non_trainable_variables if "seed_generator" in v.path]
        self._state = tf.train.Checkpoint(
            model=model,
            optimizer=self.base_optimizer,
            schedule=schedule,
            step=self.step_var,
            epoch=self.epoch_var,
            step_in_epoch=self.step_in_epoch_var,
            rng_state=rng_state,
        )
        self._loss_scale = tf.train.Checkpoint()
        if scaled:
            self._loss_scale.scale = optimizer.dynamic_scale
            self._loss_scale.counter = optimizer.step_counter
        checkpoint = tf.train.Checkpoint(state=self._state, loss_scale=self._loss_scale)
        self.manager = tf.train.CheckpointManager(
            checkpoint, checkpoint_dir, max_to_keep=keep_checkpoints
        )

    @property
    def step(self):
        """Steps taken in all."""
        return int(self.step_var)

    @property
    def epoch(self):
        """Epochs completed."""
        return int(self.epoch_var)

    @property
    def step_in_epoch(self):
        """Steps taken in the current epoch."""
        return int(self.step_in_epoch_var)

    @property
    def loss_scale(self):
        """float16's current loss scale, or None without loss scaling."""
        scale = getattr(self._loss_scale, "scale", None)
        return None if scale is None else distribute.scalar(scale)

    @property
    def latest_checkpoint(self):
        """The newest checkpoint this process wrote or resumed from, or None."""
        return self.manager.latest_checkpoint or self._restored

    _restored = None
    saved_step = None  # the step of the checkpoint last written or restored

    def restore(self, path):
        """Restores everything from the checkpoint at `path` (the loss scale if it has one)."""
        status = tf.train.Checkpoint(state=self._state).restore(path)
        status.assert_existing_objects_matched().expect_partial()  # the loss scale: below
        tf.train.Checkpoint(loss_scale=self._loss_scale).restore(path).expect_partial()
        self._restored = path
        self.saved_step = self.step

    def advance(self):
        """Counts one step taken."""
        self.step_in_epoch_var.assign_add(1)
        self.step_var.assign_add(1)

    def end_epoch(self):
        """Counts the epoch completed."""
        self.epoch_var.assign_add(1)
        self.step_in_epoch_var.assign(0)

    def save(self, reason):
        """Writes a checkpoint numbered by the step, if every weight is finite.

        Raises:
            FloatingPointError: a weight is NaN or infinite; the last good checkpoint is
                kept and named.
            write_errors.WriteFailed: the checkpoint could not be written (a full disk, a
                read-only folder, a vanished mount); what it left is removed, the previous
                checkpoint is intact and named.
        """
        finite = all(
            bool(tf.reduce_all(tf.math.is_finite(v))) for v in self.model.trainable_variables
        )
        if not finite:
            raise FloatingPointError(
                f"The weights are no longer finite at step {self.step}; not saving them "
                f"({reason}). The last good checkpoint is {self.latest_checkpoint}."
            )
        try:
            path = self.manager.save(checkpoint_number=self.step)
        except write_errors.WRITE_ERRORS as error:
            prefix = os.path.join(self.manager.directory, f"ckpt-{self.step}")
            resume_from = prefix if _complete_or_removed(prefix) else self.latest_checkpoint
            raise write_errors.failed(
                f"the checkpoint of step {self.step} ({reason})",
                prefix,
                error,
                f"The previous checkpoint is intact: {self.latest_checkpoint}; rerun the same "
                f"command to resume from {resume_from} once the folder can be written.",
            ) from error
        self.saved_step = self.step
        return path


def _complete_or_removed(prefix):
    """Whether the checkpoint a failed save of `prefix` left is complete; if not, removes it.

    A checkpoint is complete when its index reads back: TensorFlow writes it last, so only
    the state file naming it failed.
    """
    try:
        tf.train.list_variables(prefix)
        return True
    except (tf.errors.OpError, ValueError):
        pass
    for path in tf.io.gfile.glob(prefix + ".*") + tf.io.gfile.glob(prefix + "_temp*"):
        try:
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            else:
                tf.io.gfile.remove(path)
        except tf.errors.OpError:
            pass  # a vanished mount: nothing to clean
    return False


def checkpoint_dir(model_dir, chief, task_name=None):
    """Where a process of a run writes its checkpoints.

    Every worker saves (saving is a collective operation under
    MultiWorkerMirroredStrategy), but only the chief into model_dir; the others into a
    scratch folder of their own, removed at the end. Every worker resumes from the
    chief's checkpoints.
    """
    if chief:
        return os.path.join(model_dir, run_folder.CHECKPOINTS)
    return os.path.join(run_folder.worker_dir(model_dir, task_name), run_folder.CHECKPOINTS)


def weights_digest(model):
    """SHA-256 of the model's weights: equal on every worker of a synchronous run."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()
