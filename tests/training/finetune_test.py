"""Starting from saved weights: AlexNet(weights=), variant detection, fine-tuning."""

import json
import os

import keras
import numpy as np
import pytest
import tiny

import keras_alexnet
from keras_alexnet.data import shapes as shapes_dataset
from keras_alexnet.data import stats as stats_lib
from keras_alexnet.models import inspection
from keras_alexnet.models import variants
from keras_alexnet.runs import folder as run_folder
from keras_alexnet.training import config as config_lib
from keras_alexnet.training import trainer

CAFFE_OFFSET = [-122.68, -116.67, -104.01]  # a converted Caffe model's RGB mean


# Fine-tuning is the same whatever the size: a model of Caffe's variant with few channels
# (tiny.CAFFE_VARIANT) stands in for a converted bvlc_alexnet.
CAFFE = tiny.CAFFE_VARIANT.name


@pytest.fixture(scope="module")
def saved_caffe(tmp_path_factory):
    """A 10-class model of Caffe's layout that normalises its own input, saved as .keras."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(variants.VARIANTS, CAFFE, tiny.CAFFE_VARIANT)
        keras.utils.set_random_seed(7)
        model = keras_alexnet.AlexNet(10, variant=CAFFE, input_offset=CAFFE_OFFSET)
        path = str(tmp_path_factory.mktemp("weights") / "caffe10.keras")
        model.save(path)
        yield path, model


def finetune_config(model_dir, root, init_from, **overrides):
    """A TrainConfig that starts from saved weights, on an image folder at `root`."""
    return config_lib.TrainConfig(
        model_dir=str(model_dir),
        dataset="folder",
        data_dir=root,
        init_from=init_from,
        batch_size=8,
        **overrides,
    )


@pytest.mark.parametrize("variant", sorted(variants.VARIANTS))
def test_variant_of_recognises_each_variant(variant):
    assert inspection.variant_of(keras_alexnet.AlexNet(5, variant=variant)) == variant


def test_alexnet_weights_argument_loads_by_name(saved_caffe):
    path, original = saved_caffe
    loaded = keras_alexnet.AlexNet(10, variant=CAFFE, weights=path)
    for a, b in zip(loaded.weights, original.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # The file's input normalisation comes along.
    assert loaded.get_layer("input_rescaling").get_config()["offset"] == pytest.approx(CAFFE_OFFSET)
    features = keras_alexnet.AlexNet(variant=CAFFE, include_top=False, weights=path)
    np.testing.assert_array_equal(
        features.get_layer("conv5").kernel.numpy(), original.get_layer("conv5").kernel.numpy()
    )
    with pytest.raises(ValueError, match=r"Layer 'fc8'.*\(64, 3\).*\(64, 10\)"):
        keras_alexnet.AlexNet(3, variant=CAFFE, weights=path)
    with pytest.raises(ValueError, match="conv1"):
        keras_alexnet.AlexNet(10, variant="one_weird_trick", weights=path)
    with pytest.raises(ValueError, match="weights must be the path of a .keras file"):
        keras_alexnet.AlexNet(weights="model.h5")


def test_finetuning_replaces_fc8_and_freezes_layers(saved_caffe, tmp_path, capsys):
    path, original = saved_caffe
    root = shapes_dataset.ensure_shapes_dataset(
        tmp_path / "shapes", num_classes=4, train_per_class=8, val_per_class=2, image_size=(64, 80)
    )
    model_dir = str(tmp_path / "run")
    frozen = ("conv1", "conv2", "conv3", "conv4", "conv5")
    config = finetune_config(
        model_dir,
        root,
        path,
        freeze=frozen,
        epochs=1,
        max_steps=2,
        learning_rate=0.01,
        stats_images=8,
        verbose=False,
    )
    capsys.readouterr()
    result = trainer.train(config)
    assert result["step"] == 2
    printed = capsys.readouterr().out
    # The fine-tuning recipe, and where the weights come from (not an init).
    assert "  recipe finetune (fine-tuning a pretrained model; " in printed, printed
    assert f", weights from {path}, " in printed and "init paper" not in printed
    model, run = run_folder.restore_model(model_dir)
    assert run["variant"] == CAFFE  # detected from the file
    assert model.get_layer("fc8").units == 4
    for name in frozen:
        for a, b in zip(model.get_layer(name).weights, original.get_layer(name).weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    for name in ("fc6", "fc7"):
        assert not np.array_equal(
            model.get_layer(name).kernel.numpy(), original.get_layer(name).kernel.numpy()
        )
    # The model subtracts its own mean, so the pipeline subtracts none.
    stats = stats_lib.Stats.load(os.path.join(model_dir, run_folder.STATS_FILE))
    assert not stats.mean_image.any()
    with open(os.path.join(model_dir, run_folder.RUN_FILE)) as f:
        assert json.load(f)["model_args"]["input_offset"] == pytest.approx(CAFFE_OFFSET)
    with pytest.raises(ValueError, match=f"init_from holds a '{CAFFE}' model"):
        trainer.train(finetune_config(tmp_path / "other", root, path, variant="paper"))
    with pytest.raises(ValueError, match="freeze names a layer"):
        trainer.train(
            finetune_config(tmp_path / "third", root, path, freeze=("conv9",), stats_images=8)
        )
