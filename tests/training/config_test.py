"""TrainConfig: the recipes, the checks of resolve, and the flags made from the fields."""

import dataclasses

import pytest
import tiny
from absl import flags

from keras_alexnet.training import config as config_lib
from keras_alexnet.training import recipes


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(batch_size=0), "batch_size must be >= 1. Received: batch_size=0"),
        (dict(epochs=-1), "epochs must be >= 1"),
        (dict(learning_rate=0.0), "learning_rate must be > 0"),
        (dict(momentum=1.0), r"momentum must be in \[0, 1\)"),
        (dict(dropout=1.5), "dropout"),
        (dict(variant="vgg"), "variant must be one of"),
        (dict(init="xavier"), "init must be one of"),
        (dict(lr_schedule="step"), "lr_schedule must be one of"),
        (dict(on_bad_image="ignore"), "on_bad_image"),
        (dict(profile_steps=(5, 2)), "profile_steps"),
        (dict(dataset="folder", data_dir=None), "data_dir must name the image folder"),
        (dict(dataset="cifar10", data_dir=None), "data_dir must name the TFDS data folder"),
        (dict(manual_dir="/tmp"), "manual_dir is only read for dataset=imagenet2012"),
    ],
)
def test_bad_config_is_refused_with_its_name(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        config_lib.resolve(tiny.train_config(tmp_path, "/nonexistent", **overrides))


def test_the_recipe_follows_the_dataset_and_each_flag_overrides_it(tmp_path):
    paper = config_lib.resolve(
        config_lib.TrainConfig(model_dir="m", dataset="imagenet2012", data_dir="d")
    )
    assert paper.recipe == "paper"
    assert (paper.batch_size, paper.epochs, paper.learning_rate, paper.momentum) == (
        128,
        90,
        0.01,
        0.9,
    )
    assert (paper.weight_decay, paper.dropout, paper.init) == (5e-4, 0.5, "paper")
    assert paper.lr_schedule == "plateau"  # the paper's rule; the others decay by cosine
    demo = config_lib.resolve(config_lib.TrainConfig(model_dir="m"))
    assert (
        demo.dataset == "shapes" and demo.recipe == "scratch" and demo == config_lib.resolve(demo)
    )
    scratch = recipes.RECIPES["scratch"]
    assert (demo.batch_size, demo.epochs, demo.init, demo.optimizer) == (
        scratch.batch_size,
        scratch.epochs,
        scratch.init,
        "adam",
    )
    assert demo.lr_schedule == "cosine"
    # An image folder learns from scratch on small data, not with a 1.2M-image recipe.
    folder = config_lib.resolve(
        config_lib.TrainConfig(model_dir="m", dataset="folder", data_dir="d")
    )
    assert (folder.recipe, folder.batch_size, folder.init) == ("scratch", 32, "he")
    finetune = config_lib.resolve(
        config_lib.TrainConfig(model_dir="m", dataset="folder", data_dir="d", init_from="a.keras")
    )
    assert (finetune.recipe, finetune.optimizer, finetune.learning_rate) == (
        "finetune",
        "sgd",
        1e-3,
    )
    assert finetune.lr_schedule == "cosine"
    # --recipe names one for any dataset; a flag the user gave wins over the recipe.
    named = config_lib.resolve(
        config_lib.TrainConfig(model_dir="m", dataset="folder", data_dir="d", recipe="paper")
    )
    assert (named.batch_size, named.optimizer) == (128, "sgd")
    assert config_lib.resolve(config_lib.TrainConfig(model_dir="m", batch_size=64)).batch_size == 64
    with pytest.raises(
        ValueError, match=r"recipe must be one of \['paper', 'scratch', 'finetune'\]"
    ):
        config_lib.resolve(config_lib.TrainConfig(model_dir="m", recipe="demo"))


def test_flags_are_made_from_the_fields_and_parse_back():
    values = flags.FlagValues()
    config_lib.define_flags(values)
    fields = {f.name: f for f in dataclasses.fields(config_lib.TrainConfig)}
    flagged = {name for name, f in fields.items() if f.metadata["flag"] is not None}
    assert (
        flagged == set(values)
        and {
            "keep_checkpoints",
            "verbose",
            "precision_reason",
        }
        == set(fields) - flagged
    )
    for name in flagged:
        # One description: the flag's help is the field's, plus the recipes' defaults.
        assert fields[name].metadata["help"] in values[name].help
    assert "paper's 128, scratch's 32, finetune's 32" in values["batch_size"].help
    assert values["model_dir"].default == config_lib.DEFAULT_MODEL_DIR
    values(
        [
            "train",
            "--profile_steps=2,4",
            "--input_scale=0.5",
            "--freeze=conv1,conv2",
            "--batch_size=16",
            "--deterministic",
            "--recipe=finetune",
        ]
    )
    config = config_lib.from_flags(values)
    assert config == config_lib.TrainConfig(
        model_dir=config_lib.DEFAULT_MODEL_DIR,
        profile_steps=(2, 4),
        input_scale=0.5,
        freeze=("conv1", "conv2"),
        batch_size=16,
        deterministic=True,
        recipe="finetune",
        mixed_precision="auto",
    )
    values.unparse_flags()
    values(["train", "--input_scale=auto"])
    assert config_lib.from_flags(values).input_scale == "auto"
    values.unparse_flags()
    values(["train", "--profile_steps=a,b"])
    with pytest.raises(ValueError, match="profile_steps must be two step numbers"):
        config_lib.from_flags(values)
    values.unparse_flags()
    values(["train", "--input_scale=big"])
    with pytest.raises(ValueError, match="input_scale must be a number or .auto.*big"):
        config_lib.from_flags(values)


def test_imagenet2012_without_its_folders_names_both(tmp_path):
    config = config_lib.TrainConfig(model_dir=str(tmp_path), dataset="imagenet2012")
    with pytest.raises(ValueError, match="missing: no data_dir: .*; no manual_dir: "):
        config_lib.resolve(config)
