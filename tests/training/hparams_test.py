"""The run's settings in TensorBoard: Text and HParams, read back from the event files
(`trained` is a session fixture in conftest.py: a tiny run of one epoch)."""

import json
import pathlib

import tensorflow as tf
from event_files import logged_values
from tensorboard.plugins.hparams import plugin_data_pb2

from keras_alexnet.training import hparams


def _plugin_data(value):
    data = plugin_data_pb2.HParamsPluginData()
    data.ParseFromString(value.metadata.plugin_data.content)
    return data


def test_hparams_hold_the_runs_settings_and_metrics(trained):
    model_dir, root = trained
    model_dir = pathlib.Path(model_dir)
    run = json.loads((model_dir / "run.json").read_text())
    [(_, session)] = logged_values(model_dir, "_hparams_/session_start_info")
    values = _plugin_data(session).session_start_info.hparams
    assert values["batch_size"].number_value == run["batch_size"] == 8
    assert values["variant"].string_value == run["variant"] == "tiny"
    assert values["init"].string_value == "he"
    assert values["num_classes"].number_value == len(run["class_names"])
    assert values["deterministic"].bool_value is False
    assert values["dataset"].string_value == "folder" and "dataset_name" not in values
    assert values["max_steps"].string_value == "none"
    assert "model_dir" not in values and "log_every" not in values  # in the Text table only
    [(_, experiment)] = logged_values(model_dir, "_hparams_/experiment")
    metrics = _plugin_data(experiment).experiment.metric_infos
    assert [(m.name.tag, m.name.group) for m in metrics] == [
        ("top1_error_pct", "validation"),
        ("top5_error_pct", "validation"),
    ]
    # The metrics are scalars the run writes where the HParams view looks for them.
    for metric in metrics:
        assert logged_values(model_dir / metric.name.group, metric.name.tag)


def test_the_settings_table_in_the_text_view(trained):
    model_dir, _ = trained
    [(step, value)] = logged_values(pathlib.Path(model_dir) / "train", "settings")
    text = tf.make_ndarray(value.tensor).item().decode()
    assert step == 0 and text.startswith("| setting | value |\n|---|---|\n")
    assert "| batch_size | `8` |" in text and "| variant | `tiny` |" in text


def test_values_hparams_takes():
    assert hparams._value(None) == "none"
    assert hparams._value(("conv1", "conv2")) == "conv1,conv2"
    assert hparams._value(0.5) == 0.5 and hparams._value(True) is True
    assert hparams.table({"a": 1}) == "| setting | value |\n|---|---|\n| a | `1` |"
