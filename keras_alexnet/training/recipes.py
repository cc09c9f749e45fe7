"""The training recipes: the paper's, one that learns from scratch on small data, and one
that fine-tunes a pretrained model.

A recipe gives the fields of `config.TrainConfig` that the user does not give by flag;
`--recipe` names one, and each of its fields is still overridden by its own flag. Without
`--recipe` a run takes `default_recipe`'s: the paper's for ImageNet (and any other TFDS or
prepared dataset), the from-scratch one for the built-in set and image folders, the
fine-tuning one with `--init_from`. A resumed run keeps the recipe it recorded.
"""

import dataclasses

from keras_alexnet.paper import numbers as paper
from keras_alexnet.runs import dataset as run_dataset

BUILTIN_DATASET = run_dataset.BUILTIN_DATASET
FOLDER_DATASET = run_dataset.FOLDER_DATASET


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Training hyperparameters: the fields of `TrainConfig` that a recipe gives."""

    epochs: int
    batch_size: int
    optimizer: str
    learning_rate: float
    momentum: float
    weight_decay: float
    dropout: float
    lr_schedule: str
    lr_patience: int
    lr_max_reductions: int
    init: str
    input_scale: object


# Section 5 of the paper. The patience is not stated ("when the validation error rate
# stopped improving"); the learning rate was lowered three times in about 90 epochs.
PAPER = Recipe(
    epochs=paper.EPOCHS,
    batch_size=paper.BATCH_SIZE,
    optimizer="sgd",
    learning_rate=paper.LEARNING_RATE,
    momentum=paper.MOMENTUM,
    weight_decay=paper.WEIGHT_DECAY,
    dropout=paper.DROPOUT_RATE,
    lr_schedule="plateau",
    lr_patience=5,
    lr_max_reductions=paper.LR_REDUCTIONS,
    init="paper",
    input_scale=1.0,
)

# From scratch on small data (the built-in set, a folder of a few thousand images). The
# paper's recipe stays at chance there for hundreds of steps (its N(0, 0.01) weights and
# biases of 1 give a long flat loss, as Caffe's authors reported); to learn in minutes on
# a CPU this one uses He init on inputs scaled to unit variance, and Adam, which was
# steadier than SGD across seeds; a cosine decay over the run's few steps ends it better
# than waiting for a plateau. Measured in docs/data.md, "The built-in dataset".
SCRATCH = dataclasses.replace(
    PAPER,
    epochs=5,
    batch_size=32,
    optimizer="adam",
    learning_rate=1e-4,
    lr_schedule="cosine",
    lr_patience=2,
    init="he",
    input_scale="auto",
)

# Fine-tuning a pretrained model (--init_from) on small data: the weights, the variant and
# the input normalisation come from the file (init and input_scale are not read but for a
# new fc8). SGD with momentum at a tenth of the paper's rate, the base rate of Caffe's
# fine-tuning example, so that the pretrained layers move little; a cosine decay, which
# needs no validation images.
FINETUNE = dataclasses.replace(
    PAPER,
    epochs=10,
    batch_size=32,
    learning_rate=paper.LEARNING_RATE / 10,
    lr_schedule="cosine",
    lr_patience=2,
)

RECIPES = {"paper": PAPER, "scratch": SCRATCH, "finetune": FINETUNE}

# What each recipe is for, in the words the run prints.
PURPOSES = {
    "paper": "the paper's, section 5",
    "scratch": "from scratch on small data",
    "finetune": "fine-tuning a pretrained model",
}


def default_recipe(dataset, init_from=None):
    """The name of the recipe a run takes when `--recipe` is not given.

    Args:
        dataset: the `--dataset` value.
        init_from: the `--init_from` file, or None.

    Returns:
        "finetune" with init_from; "scratch" for the built-in set and image folders;
        otherwise (imagenet2012, any TFDS or prepared dataset) "paper".
    """
    if init_from:
        return "finetune"
    if dataset in (BUILTIN_DATASET, FOLDER_DATASET):
        return "scratch"
    return "paper"


def recorded_recipe(record):
    """The recipe of a run recorded in run.json (`record`).

    Runs recorded before recipes were named (no "recipe" in run.json) took the demo's,
    today's "scratch", on the built-in set and the paper's everywhere else.
    """
    if record.get("recipe"):
        return record["recipe"]
    return "scratch" if record.get("dataset_flag") == BUILTIN_DATASET else "paper"
