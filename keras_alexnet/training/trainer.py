"""The training run: `train` and its stages, the work of `python -m keras_alexnet.train`.

One custom training loop serves every `tf.distribute` strategy (one device, MirroredStrategy
over GPUs or logical CPUs, MultiWorkerMirroredStrategy): `model.fit` does not work under
MultiWorkerMirroredStrategy in Keras 3.15, and Keras' BackupAndRestore restarts a whole
epoch, while this loop resumes at the exact step.

Resuming: the checkpoint holds the model, the optimizer (momentum, learning rate), the
epoch, the step within it and the learning-rate schedule's state (see `training.state`).
The input order is a pure function of (seed, epoch), so a resumed run skips the batches it
already consumed (file names, before decoding) and goes on with exactly the batches it
would have seen. With a tf.data service (`data.service`) the batches are made on other
machines and come in the order they arrive: the state still resumes exactly, the input
does not.

Faults stop a run with a message and a checkpoint to resume from (README, "Reliability"):
SIGTERM and SIGINT (`preemption`), a second run on the model_dir (`run.lock`), a write
that fails (`write_errors`), an input that stalls (`data.input_timeout`).
"""

import math
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from keras_alexnet.data import bad_images
from keras_alexnet.data import input_timeout
from keras_alexnet.data import pipelines as input_pipeline
from keras_alexnet.data import preprocessing
from keras_alexnet.data import service as data_service
from keras_alexnet.models import alexnet as model_lib
from keras_alexnet.models import inspection
from keras_alexnet.runs import folder as run_folder
from keras_alexnet.runs import lock as run_lock
from keras_alexnet.training import config as config_lib
from keras_alexnet.training import distribute
from keras_alexnet.training import hparams
from keras_alexnet.training import metrics
from keras_alexnet.training import preemption
from keras_alexnet.training import projector
from keras_alexnet.training import run_record
from keras_alexnet.training import schedule as schedule_lib
from keras_alexnet.training import state as train_state
from keras_alexnet.training import steps
from keras_alexnet.training import summaries


def train(config, *, strategy=None, source=None):
    """Trains AlexNet, resuming from the latest checkpoint in `config.model_dir`.

    Args:
        config: a `config.TrainConfig`; None fields take the dataset's recipe.
        strategy: a `tf.distribute.Strategy`; default: one device.
        source: a `sources.Source` to use instead of `config.dataset`.

    Returns:
        A dict of the final state: step, epoch, train and validation metrics, the
        learning rate, the path of the last checkpoint and the weights' SHA-256.

    Raises:
        ValueError: bad configuration or data, before any training work;
            `run_lock.RunLocked` when another live run trains in config.model_dir.
        FloatingPointError: the loss became NaN or infinite; the last good checkpoint
            is kept.
        preemption.Preempted: SIGTERM or SIGINT; a checkpoint of every completed step
            was written.
        write_errors.WriteFailed: a checkpoint or summary could not be written; the
            previous checkpoint is intact.
        input_timeout.InputStalled: no batch came within config.input_timeout seconds;
            a checkpoint was written (on one process; across workers the last one stays).
    """
    config_lib.check_model_dir(config.model_dir)  # before the lock, which goes inside it
    chief = strategy is None or distribute.is_chief(strategy)
    with run_lock.held(config.model_dir, chief):
        return _train(config, strategy, source)


def _train(config, strategy, source):
    run = run_record.prepare_run(config, strategy, source)
    config = run.config
    state = build_state(run)
    latest = resume(run, state)
    result = dict(step=state.step, epoch=state.epoch, checkpoint=latest)
    if state.epoch >= config.epochs or (config.max_steps and state.step >= config.max_steps):
        done = f"its {config.epochs} epochs" if state.epoch >= config.epochs else "max_steps"
        print(
            f"Nothing to do: {config.model_dir} is at step {state.step} and has finished {done}.",
            flush=True,
        )
        return dict(result, weights_sha256=train_state.weights_digest(state.model))
    writer = summaries.Writer(config.model_dir, run.chief)
    writer.scalars("train", state.step, {"skipped_images": run.skipped})
    hparams.write(config.model_dir, run)
    step_fn = distribute.run_and_sum(
        run.strategy,
        steps.make_train_step(
            state.model,
            state.optimizer,
            config.batch_size,
            config.jit_compile,
            # The batches come as patches, finished where the model runs (`training_data`).
            finish=preprocessing.train_batch_finisher(run.stats),
        ),
    )
    iterator = input_timeout.TimedIterator(
        iter(training_data(run, state)),
        config.input_timeout,
        on_stall=lambda: _save_on_stall(run, state),
    )
    validation = validation_data(run)
    profiler = summaries.Profiler(config.profile_steps if run.chief else None, config.model_dir)
    with preemption.Preemption(run.strategy, state) as preempt:
        step_fn = preempt.wrap(step_fn)
        while state.epoch < config.epochs:
            result["train"] = train_epoch(run, state, step_fn, iterator, writer, profiler)
            if state.step_in_epoch < run.steps_per_epoch:  # max_steps stopped the epoch
                result["checkpoint"] = state.save("max_steps")
                break
            result.update(end_epoch(run, state, validation, writer))
            if config.max_steps and state.step >= config.max_steps:
                break
    profiler.stop()
    projector.for_run(run, state.model)
    if not run.chief:
        run_folder.remove_worker_dir(config.model_dir, distribute.task_name(run.strategy))
    return dict(
        result,
        step=state.step,
        epoch=state.epoch,
        learning_rate=distribute.scalar(state.optimizer.learning_rate),
        weights_sha256=train_state.weights_digest(state.model),
    )


def _save_on_stall(run, state):
    """The checkpoint a run whose input stalled leaves, in words, for its message."""
    if isinstance(run.strategy, tf.distribute.MultiWorkerMirroredStrategy):
        # Every worker takes part in a save, and the others wait inside the step for this
        # one's batch: the checkpoint before is the one a rerun resumes from.
        return (
            f"Across workers no checkpoint can be written now; a rerun resumes from "
            f"{state.latest_checkpoint or 'the start'}"
        )
    if state.saved_step != state.step:
        state.save("input timeout")
    return f"Checkpoint {state.latest_checkpoint} holds every step done; rerun to resume"


def build_state(run):
    """Builds the model and optimizer under the run's strategy, and their `TrainState`."""
    config = run.config
    with run.strategy.scope():
        keras.utils.set_random_seed(config.seed)
        model = model_lib.AlexNet(
            dropout=config.dropout,
            weight_decay=config.weight_decay,
            dtype_policy=model_lib.precision_policy(config.mixed_precision),
            **run.model_args,
        )
        if run.start_from is not None:
            run_record.copy_start_from(run, model)
        for name in config.freeze:
            layer = inspection.layer_or_none(model, name)
            if layer is None or not layer.weights:
                raise ValueError(
                    f"freeze names a layer without weights or not in the model. Received: {name!r}"
                )
            layer.trainable = False
        if config.optimizer == "sgd":
            optimizer = keras.optimizers.SGD(config.learning_rate, momentum=config.momentum)
        else:
            optimizer = keras.optimizers.Adam(config.learning_rate)
        if config.mixed_precision == "float16":
            # float16 gradients underflow without it; bfloat16 has float32's range.
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
    task = None if run.chief else distribute.task_name(run.strategy)
    return train_state.TrainState(
        model,
        optimizer,
        schedule_lib.PlateauSchedule(
            config.lr_patience, config.lr_max_reductions, config.learning_rate
        ),
        train_state.checkpoint_dir(config.model_dir, run.chief, task),
        config.keep_checkpoints,
    )


def resume(run, state):
    """Restores the newest checkpoint of the run's model_dir, if any; returns its path."""
    config = run.config
    latest = run_folder.readable_checkpoint(config.model_dir)  # a damaged one passed over
    if not latest:
        return None
    state.restore(latest)
    # The rate follows the flag, lowered as many times as the schedule has lowered it.
    state.optimizer.learning_rate.assign(
        state.schedule.learning_rate()
        if config.lr_schedule == "plateau"
        else schedule_lib.cosine_learning_rate(config.learning_rate, state.step, run.total_steps)
    )
    print(
        f"Resuming from {latest}: epoch {state.epoch + 1}, "
        f"step {state.step_in_epoch} of {run.steps_per_epoch}, step {state.step} "
        f"in all, learning rate {distribute.scalar(state.optimizer.learning_rate):g}",
        flush=True,
    )
    return latest


def training_data(run, state):
    """The distributed training batches from the state's epoch and step on, to the end.

    With the data service, without end: the loop takes the steps it counts.

    Raw batches (`pipelines.train_dataset`'s raw=True): the patches, uint8 for prepared
    JPEGs, with their random choices; the training step does the float work on each
    replica's device. A quarter of the bytes to copy to the accelerators (and through the
    tf.data service), and less work for the CPUs that feed them.

    Args:
        run: the `record.Run`.
        state: the run's `state.TrainState`.

    Returns:
        A distributed dataset of raw batches: ({"patches" and their random choices}, labels).
    """
    config = run.config
    epoch, start_step = state.epoch, state.step_in_epoch
    common = dict(global_batch_size=config.batch_size, stats=run.stats, seed=config.seed, raw=True)
    if config.data_service:
        # Made by the service's workers, by step (folders) or by record file; see
        # `data.service`.
        first_step = epoch * run.steps_per_epoch + start_step
        return run.strategy.distribute_datasets_from_function(
            lambda input_context: data_service.distribute(
                input_pipeline.train_dataset_for_service(
                    run.source, first_step=first_step, input_context=input_context, **common
                ),
                config.data_service,
            )
        )

    def dataset_fn(input_context):
        return input_pipeline.train_dataset(
            run.source,
            epoch=epoch,
            start_step=start_step,
            input_context=input_context,
            num_epochs=config.epochs - epoch,
            **common,
        )

    return run.strategy.distribute_datasets_from_function(dataset_fn)


def validation_data(run):
    """The distributed validation batches, or None when the source has no validation split."""
    if not run.source.num_validation:
        return None
    return run.strategy.distribute_datasets_from_function(
        lambda ctx: input_pipeline.eval_dataset(
            run.source, batch_size=run.config.batch_size, stats=run.stats, input_context=ctx
        )
    )


def train_epoch(run, state, step_fn, iterator, writer, profiler):
    """Trains from the state's step to the end of its epoch, or to max_steps.

    Returns:
        The epoch's training metrics so far (`metrics.epoch_metrics`).
    """
    config = run.config
    progbar = _progress_bar(run, state)
    totals = np.zeros(5)  # cross-entropy and weight-decay sums, top-1, top-5 hits, examples
    start, first = time.perf_counter(), state.step_in_epoch
    train_metrics = {}
    while state.step_in_epoch < run.steps_per_epoch:
        global_step = state.step + 1
        profiler.before_step(global_step)
        if config.lr_schedule == "cosine":
            state.optimizer.learning_rate.assign(
                schedule_lib.cosine_learning_rate(
                    config.learning_rate, global_step - 1, run.total_steps
                )
            )
        images, labels = next_batch(run, state, iterator)
        cross_entropy, decay, top1, top5 = (float(x) for x in step_fn(images, labels))
        loss = cross_entropy + decay
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"The loss became {loss} at step {global_step} (epoch {state.epoch + 1}). "
                f"The last good checkpoint is kept: {state.latest_checkpoint}. "
                "Try a lower --learning_rate."
            )
        state.advance()
        profiler.after_step(global_step)
        batch = config.batch_size
        totals += (cross_entropy * batch, decay * batch, top1, top5, batch)
        rate = (state.step_in_epoch - first) * config.batch_size / (time.perf_counter() - start)
        train_metrics = metrics.epoch_metrics(totals)
        if progbar:
            progbar.update(
                state.step_in_epoch,
                [(name.replace("_error", "_err"), train_metrics[name]) for name in PRINTED_METRICS]
                + [("img/s", rate)],
            )
        _write_step_summaries(run, state, writer, train_metrics, rate)
        if global_step == 1 or state.step_in_epoch == first + 1:
            writer.inputs(
                np.asarray(
                    preprocessing.finish_train_batch(
                        distribute.first_replica(run.strategy, images), run.stats
                    )
                ),
                global_step,
                run.stats.mean_image.mean(axis=(0, 1)),
            )
        unfinished = state.step_in_epoch < run.steps_per_epoch
        if global_step % config.checkpoint_every == 0 and unfinished:
            state.save("periodic")
            writer.check()
        if config.max_steps and global_step >= config.max_steps:
            if isinstance(progbar, keras.utils.Progbar) and unfinished:
                print(flush=True)  # end the progress bar's line
            break
    return train_metrics


# What the progress line shows: the cross-entropy, as validation reports it, and the
# weight-decay term the optimised loss adds to it (their sum is TensorBoard's total_loss).
PRINTED_METRICS = ("cross_entropy", "weight_decay", "top1_error", "top5_error")


def _progress_bar(run, state):
    """A progress bar on a terminal; elsewhere (a log file, CI) plain lines."""
    if not run.config.verbose:
        return None
    print(f"Epoch {state.epoch + 1}/{run.config.epochs}", flush=True)
    if not sys.stdout.isatty():
        return LogLines(run.steps_per_epoch, run.config.log_every)
    return keras.utils.Progbar(
        run.steps_per_epoch,
        stateful_metrics=[name.replace("_error", "_err") for name in PRINTED_METRICS] + ["img/s"],
    )


class LogLines:
    """The progress bar's `update`, as one plain line every `every` steps and at the end.

    For output that is not a terminal: no escape sequences, no line redrawn per step.
    """

    def __init__(self, steps, every):
        self.steps, self.every = steps, every

    def update(self, step, values):
        """Prints the (name, value) pairs of `values` at `step`, if a line is due."""
        if step % self.every and step != self.steps:
            return
        text = "  ".join(
            f"{name} {value:.2%}" if name.endswith("_err") else f"{name} {value:.4g}"
            for name, value in values
        )
        print(f"  step {step}/{self.steps}  {text}", flush=True)


def _write_step_summaries(run, state, writer, train_metrics, rate):
    step = state.step
    if step % run.config.log_every and step != 1:
        return
    scalars = dict(
        train_metrics,
        learning_rate=distribute.scalar(state.optimizer.learning_rate),
        images_per_second=rate,
    )
    if state.loss_scale is not None:
        scalars["loss_scale"] = state.loss_scale
    writer.scalars("train", step, summaries.in_percent(scalars))


def next_batch(run, state, iterator):
    """The next training batch; an image that does not decode is named in a ValueError."""
    try:
        return next(iterator)
    except tf.errors.InvalidArgumentError as error:
        if run.config.data_service:
            # The service's batches come in any order: the failed one's step is not known,
            # so the whole training split is decoded to name the files.
            raise bad_images.undecodable_error(
                error,
                run.source,
                "train",
                "training image(s)",
                "training",
                _rerun_hint(state) + ".",
            ) from error
        bad = bad_images.undecodable_in_step(
            run.source,
            seed=run.config.seed,
            epoch=state.epoch,
            step=state.step_in_epoch,
            global_batch_size=run.config.batch_size,
        )
        if not bad:
            raise
        raise ValueError(
            bad_images.describe_failures(
                bad, f"training image(s) of step {state.step + 1}", "training"
            )
            + _rerun_hint(state)
            + " (with other files, the input order differs from the interrupted run's)."
        ) from error


def _rerun_hint(state):
    return (
        ". Remove or replace them and rerun the same command; it resumes from "
        f"{state.latest_checkpoint or 'the start'}"
    )


def end_epoch(run, state, validation, writer):
    """Ends a complete epoch: validates, applies the plateau rule, writes summaries, saves.

    Returns:
        A dict: validation (its metrics, when there is a validation split) and checkpoint.
    """
    config = run.config
    result = {}
    if validation is not None:
        val = _validate(run, state, validation)
        result["validation"] = val
        writer.scalars(
            "validation",
            state.step,
            summaries.in_percent(
                {name: val[name] for name in ("cross_entropy", "top1_error", "top5_error")}
            ),
        )
        lowered = config.lr_schedule == "plateau" and state.schedule.update(
            val["top1_error"], state.optimizer
        )
        print(
            f"Epoch {state.epoch + 1}: validation top-1 error {val['top1_error']:.2%}, "
            f"top-5 error {val['top5_error']:.2%} over {val['count']} images"
            + (
                f"; learning rate lowered to {distribute.scalar(state.optimizer.learning_rate):g}"
                if lowered
                else ""
            ),
            flush=True,
        )
    writer.epoch_pictures(state.model, state.step)
    state.end_epoch()
    result["checkpoint"] = state.save("epoch end")
    writer.check()  # after the checkpoint: a rerun resumes from it
    return result


def _validate(run, state, validation):
    try:
        return steps.evaluate_dataset(state.model, validation, strategy=run.strategy)
    except tf.errors.InvalidArgumentError as error:
        raise bad_images.undecodable_error(
            error,
            run.source,
            "validation",
            "validation image(s)",
            "training",
            _rerun_hint(state) + ".",
        ) from error
