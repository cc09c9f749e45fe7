"""The paper's test measure, the work of `python -m keras_alexnet.evaluate`.

Top-1 and top-5 error of a trained model on a labelled set, with the central 227x227 patch
or the paper's ten patches (section 4.1: the four corners and the centre of the 256x256
image, and their mirror images, softmax averaged). The preprocessing is the training run's
own evaluation path, with the mean image it stored; a model file's (--model), with the
normalisation and mean image that travel with it (`model_files`).

It runs where training runs (`distribute.make_strategy`): on one GPU, mirrored over all GPUs
where there are several, or on the CPU (over --cpu_replicas logical CPUs, if given).
"""

import os
import time

import tensorflow as tf

from keras_alexnet.data import bad_images
from keras_alexnet.data import folder_sources
from keras_alexnet.data import pipelines as input_pipeline
from keras_alexnet.data import sources
from keras_alexnet.models import imagenet_classes
from keras_alexnet.runs import folder as run_folder
from keras_alexnet.runs import model_files
from keras_alexnet.training import config as config_lib
from keras_alexnet.training import distribute
from keras_alexnet.training import steps
from keras_alexnet.training import summaries

CROPS = ("center", "10")  # the central patch, or the paper's ten (section 6)


def evaluate(
    model_dir=None,
    *,
    model=None,
    checkpoint=None,
    source=None,
    dataset=None,
    data_dir=None,
    manual_dir=None,
    split="validation",
    crops="center",
    batch_size=64,
    on_bad_image="skip",
    strategy=None,
    write_summaries=True,
    mixed_precision="none",
    progress_seconds=10.0,
):
    """Evaluates a training run's checkpoint, or a model file.

    The dataset's classes must be the model's, or some of them (matched by class id, e.g.
    a folder of a few ImageNet synsets for a 1000-class ImageNet model); top-1 and top-5
    rank all of the model's classes.

    Args:
        model_dir: the training run's model_dir (checkpoints, statistics, labels), or None
            with `model`.
        model: a .keras file or exported model folder (see `model_files.load_model_or_run`), or None
            with `model_dir`.
        checkpoint: with model_dir, a checkpoint path; default: the latest in model_dir.
        source: a `sources.Source`; default: the one named by dataset/data_dir,
            or, when dataset is None too, the run's own dataset (a model file has none).
        dataset: as for training (`config.TrainConfig`).
        data_dir: as for training.
        manual_dir: as for training.
        split: "validation", "train" or "test".
        crops: "center" or "10" (the paper's ten patches).
        batch_size: images per batch.
        on_bad_image: as for training: "skip" or "fail".
        strategy: a `tf.distribute.Strategy`; default: `distribute.make_strategy("auto")`,
            the GPU, all GPUs where there are several, or else the CPU.
        write_summaries: write the errors as TensorBoard scalars in model_dir/eval_<crops>
            (a training run's only).
        mixed_precision: "none", "float16" or "bfloat16": the compute dtype.
        progress_seconds: print a progress line (images done of the total, time) at most
            this often, and at the end; None prints none.

    Returns:
        A dict: top1_error, top5_error (fractions), cross_entropy (the mean, as training
        reports it), images (evaluated), skipped (bad files left
        out), checkpoint, step, dataset, split, crops, replicas (of the strategy) and
        devices (this worker's, e.g. ["GPU:0"]).

    Raises:
        ValueError: no run or checkpoint in model_dir, a model file that does not load, a
            bad crops value, bad data, no dataset for a model file, or a dataset whose
            classes are not the model's.
    """
    crops = _check_arguments(crops, batch_size, split)
    # The run (when there is one) and the data are checked before the model is loaded.
    run, checkpoint = _read_run(model_dir, model, checkpoint)
    if run is None and source is None and dataset is None:
        raise ValueError(
            "A model file has no training run whose data it would default to: name the "
            f"dataset (--dataset, --data_dir). Received: model={model!r}, dataset=None"
        )
    source = _open_source(run, source, dataset, data_dir, manual_dir, on_bad_image, split)
    source = _checked_split(source, split, on_bad_image, model_dir if run is not None else None)
    strategy = strategy or distribute.make_strategy("auto")
    with strategy.scope():
        loaded = model_files.load_model_or_run(model, model_dir, checkpoint, mixed_precision)
    label_map = _label_map(source.class_names, loaded.class_names)
    progress = None
    if progress_seconds is not None and distribute.is_chief(strategy):
        progress = _progress(source.num_examples(split), split, crops, progress_seconds)
    result = _evaluate_split(
        loaded, source, label_map, split, crops, batch_size, strategy, progress
    )
    report = _report(result, loaded, source, split, crops, strategy)
    if write_summaries and loaded.model_dir and distribute.is_chief(strategy):
        _write_summaries(loaded.model_dir, report)
    return report


def _check_arguments(crops, batch_size, split):
    """Checks `evaluate`'s crops, batch_size and split; returns the crops as a string of `CROPS`.

    Raises:
        ValueError: naming the first bad argument and its value.
    """
    if str(crops) not in CROPS:
        raise ValueError(f"crops must be center or 10. Received: crops={crops!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be >= 1. Received: batch_size={batch_size!r}")
    if split not in sources.SPLITS:
        raise ValueError(f"split must be one of {sources.SPLITS}. Received: split={split!r}")
    return str(crops)


def _read_run(model_dir, model, checkpoint):
    """The training run of model_dir (None for a model file) and the checkpoint to load.

    Raises:
        ValueError: no run in model_dir, or no checkpoint yet.
    """
    run = run_folder.read_run(model_dir) if model is None and model_dir is not None else None
    if run is not None:
        checkpoint = run_folder.readable_checkpoint(model_dir, checkpoint)
        if not checkpoint:
            raise ValueError(f"model_dir holds no checkpoint yet. Received: model_dir={model_dir}")
    return run, checkpoint


def _report(result, loaded, source, split, crops, strategy):
    """`evaluate`'s report: the split's errors, what was evaluated, and where."""
    return dict(
        top1_error=result["top1_error"],
        top5_error=result["top5_error"],
        cross_entropy=result["cross_entropy"],
        images=result["count"],
        skipped=len(source.bad_files),
        checkpoint=loaded.origin,
        step=loaded.step,
        dataset=source.name,
        split=split,
        crops=crops,
        replicas=strategy.num_replicas_in_sync,
        devices=[name.rsplit("device:", 1)[-1] for name in strategy.extended.worker_devices],
    )


def _progress(total, split, crops, every):
    """Prints the evaluation's first line now; returns the function that prints its progress."""
    patches = "ten patches" if crops == "10" else "central patch"
    print(f"Evaluating {total:,} {split} images ({patches})", flush=True)
    start = last = time.perf_counter()

    def progress(done):
        nonlocal last
        now = time.perf_counter()
        if now - last >= every or done >= total:
            last = now
            print(f"  {done:,}/{total:,} images, {now - start:.0f} s", flush=True)

    return progress


def _evaluate_split(loaded, source, label_map, split, crops, batch_size, strategy, progress):
    """steps.evaluate_dataset over a split; an image that does not decode is named."""

    def dataset(ctx):
        data = input_pipeline.eval_dataset(
            source,
            batch_size=batch_size,
            stats=loaded.stats,
            split=split,
            crops=crops,
            input_context=ctx,
        )
        if label_map is None:
            return data
        table = tf.constant(label_map, tf.int32)
        # Padding examples keep their negative label, which counts for nothing.
        return data.map(lambda x, y: (x, tf.where(y >= 0, tf.gather(table, tf.maximum(y, 0)), y)))

    data = strategy.distribute_datasets_from_function(dataset)
    try:
        return steps.evaluate_dataset(
            loaded.model, data, strategy=strategy, crops=crops, progress=progress
        )
    except tf.errors.InvalidArgumentError as error:
        raise bad_images.undecodable_error(
            error, source, split, f"{split} image(s)", "evaluating"
        ) from error


def _checked_split(source, split, on_bad_image, model_dir):
    """The source, without the split's files that do not decode when on_bad_image is skip.

    Args:
        source: a `sources.Source`.
        split: the split to evaluate.
        on_bad_image: "skip" or "fail".
        model_dir: the training run's model_dir, whose list of files that do not decode is
            used when the files are the same; None for a model file.

    Raises:
        ValueError: the split has no images.
    """
    if on_bad_image == "skip":
        # The evaluation writes only its own outputs.
        source, _ = bad_images.check_decoding(source, model_dir=model_dir, splits=[split])
    if source.num_examples(split) == 0:
        raise ValueError(f"{source.name} has no {split} images. Received: split={split!r}")
    return source


def _open_source(run, source, dataset, data_dir, manual_dir, on_bad_image, split):
    """The source to evaluate on: by default the run's own, with its validation_split.

    An image folder is opened for its split alone (`folder_sources.evaluation_source`): a
    folder of class folders, or a validation folder without train/, is enough.

    Raises:
        ValueError: bad data.
    """
    run = run or {}
    if source is None:
        own = dataset is None
        if own:
            dataset = run.get("dataset_flag", config_lib.BUILTIN_DATASET)
            data_dir = data_dir or run.get("data_dir")
            manual_dir = manual_dir or run.get("manual_dir")
        config = config_lib.TrainConfig(
            model_dir="unused",  # only the data fields matter here
            dataset=dataset,
            data_dir=data_dir,
            manual_dir=manual_dir,
            on_bad_image=on_bad_image,
            validation_split=run.get("validation_split") if own else None,
            seed=run.get("seed", 0),
        )
        config = config_lib.resolve(config)
        if config.dataset == "folder" and config.validation_split is None:
            return folder_sources.evaluation_source(
                config.data_dir, split, on_bad_image=on_bad_image
            )
        source = config_lib.load_source(config)  # applies on_bad_image
    else:
        sources.check_bad_files(source.bad_files, on_bad_image)
    return source


def _label_map(dataset_classes, model_classes):
    """The model's class index of each dataset label, or None where they are the same.

    Classes are matched by id (`imagenet_classes.split_label`): a dataset labelled with
    ImageNet synsets ("n02123045") matches a model's "n02123045 tabby, tabby cat".

    Raises:
        ValueError: naming the dataset's classes the model does not have.
    """
    dataset_classes, model_classes = list(dataset_classes), list(model_classes)
    if dataset_classes == model_classes:
        return None
    index = {imagenet_classes.split_label(n)[0]: i for i, n in enumerate(model_classes)}
    ids = [imagenet_classes.split_label(n)[0] for n in dataset_classes]
    unknown = [i for i in ids if i not in index]
    if unknown:
        raise ValueError(
            f"The dataset's classes are not the model's ({len(model_classes)} classes: "
            f"{model_classes[:3]}...): the model has no class {unknown[:5]}. Received: "
            f"{len(dataset_classes)} classes {dataset_classes[:3]}..."
        )
    return [index[i] for i in ids]


def _write_summaries(model_dir, report):
    """The report's errors as TensorBoard scalars in model_dir/eval_center or eval_10.

    Under the tags training writes (`summaries.in_percent`), so that they draw on its charts.
    """
    writer = tf.summary.create_file_writer(os.path.join(model_dir, f"eval_{report['crops']}"))
    names = ("top1_error", "top5_error", "cross_entropy")
    scalars = summaries.in_percent({name: report[name] for name in names})
    with writer.as_default(step=report["step"]):
        for name, value in scalars.items():
            tf.summary.scalar(name, value)
        tf.summary.scalar("skipped_images", report["skipped"])
    writer.flush()
