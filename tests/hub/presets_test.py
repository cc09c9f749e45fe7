"""AlexNet as a KerasHub model: the weights one-to-one from `keras_alexnet.AlexNet` and back,
preset folders from a training run and from converted weights, loaded by KerasHub's own
`ImageClassifier.from_preset` in fresh processes (TensorFlow and JAX), predicting as
`predict` does; fine-tuning with a new head; `verify` reading a preset folder.

The references are the package's own code paths: `prediction.serving_function` (what
`python -m keras_alexnet.predict` runs on image files) and the hub_exports model.keras.
"""

import json
import os
import sys

import fresh_process
import image_data
import keras
import numpy as np
import pytest
import tensorflow as tf
import tiny
import weight_server
from caffe_files import random_weights
from caffe_files import write_caffemodel

pytest.importorskip("keras_hub", reason="the keras_hub extra (pip install keras-hub) is missing")

import keras_hub  # noqa: E402

import keras_alexnet  # noqa: E402
from keras_alexnet import hub  # noqa: E402
from keras_alexnet.data import preprocessing  # noqa: E402
from keras_alexnet.data import stats as stats_lib  # noqa: E402
from keras_alexnet.hub import models as hub_models  # noqa: E402
from keras_alexnet.hub import presets  # noqa: E402
from keras_alexnet.models import mean_image  # noqa: E402
from keras_alexnet.paper import verification  # noqa: E402
from keras_alexnet.serving import prediction  # noqa: E402
from keras_alexnet.serving import saved_model  # noqa: E402
from keras_alexnet.weights import catalog  # noqa: E402
from keras_alexnet.weights import downloads  # noqa: E402

# Landscape, portrait, square, and one shrunk more than 2x (the antialiased resize).
IMAGE_SHAPES = ((200, 300), (340, 250), (256, 256), (700, 600))


def write_images(folder):
    """PNG files of the shapes above and one JPEG; their paths."""
    paths = []
    for seed, (height, width) in enumerate(IMAGE_SHAPES):
        paths.append(os.path.join(folder, f"image{seed}.png"))
        image_data.write_png(paths[-1], seed, height, width)
    paths.append(os.path.join(folder, "photo.jpg"))
    image_data.write_jpeg(paths[-1], 7, 300, 420)
    return paths


def predicted(serving_fn, paths):
    """{path: (probabilities, top-5 labels)} as predict computes them."""
    found = {}
    for path in paths:
        out = serving_fn(images=tf.constant([open(path, "rb").read()]))
        labels = [label.decode() for label in out["top5_labels"].numpy()[0]]
        found[path] = (np.asarray(out["probabilities"])[0], labels)
    return found


def pixels_of(path):
    """The decoded pixels of an image file, as a KerasHub user has them."""
    return tf.io.decode_image(open(path, "rb").read(), channels=3).numpy()


# What a fresh process runs: KerasHub's own loader, raw decoded pixels in.
LOAD_AND_PREDICT = """
import json, os, sys
import numpy as np
import keras_alexnet, tiny
tiny.register()
hub_before = "keras_hub" in sys.modules  # keras_alexnet does not import it
import keras_hub, keras, tensorflow as tf
out = {"backend": keras.backend.backend(), "hub_before": hub_before}
for folder in sys.argv[2:]:
    classifier = keras_hub.models.ImageClassifier.from_preset(folder)
    rows = {}
    for path in json.loads(sys.argv[1]):
        pixels = tf.io.decode_image(open(path, "rb").read(), channels=3).numpy()
        probs = np.asarray(classifier.predict(pixels[None], verbose=0))
        top5 = np.argsort(-probs[0], kind="stable")[:5]
        rows[path] = {"probs": probs[0].tolist(),
                      "top5": [classifier.class_names[i] for i in top5]}
    out[folder] = {"class": type(classifier).__name__, "rows": rows}
print("RESULT " + json.dumps(out))
"""

# Then fine-tuning (TensorFlow backend only): a new head of 3 classes on an image folder.
FINE_TUNE = """
classifier = keras_hub.models.ImageClassifier.from_preset(sys.argv[2], num_classes=3)
preset = keras_hub.models.ImageClassifier.from_preset(sys.argv[2])
same = all(np.array_equal(a, b) for a, b in zip(
    classifier.backbone.get_weights(), preset.backbone.get_weights()))
before = [w.copy() for w in classifier.backbone.get_weights()]
data = keras.utils.image_dataset_from_directory(
    os.environ["FINE_TUNE_FOLDER"], image_size=(256, 256), crop_to_aspect_ratio=True,
    batch_size=4, seed=0)
history = classifier.fit(data, epochs=1, verbose=0)
after = classifier.backbone.get_weights()
print("TUNED " + json.dumps({
    "backbone_loaded": same,
    "class_names": classifier.class_names,
    "outputs": classifier.output_shape[-1],
    "loss": history.history["loss"][-1],
    "backbone_trained": any(not np.array_equal(a, b) for a, b in zip(before, after)),
    "backend": keras.backend.backend()}))
"""


def result_of(completed, key="RESULT"):
    assert completed.returncode == 0, completed.stderr[-4000:]
    line = [x for x in completed.stdout.splitlines() if x.startswith(f"{key} ")][-1]
    return json.loads(line[len(key) + 1 :])


def test_weights_map_one_to_one_and_back_and_preprocessing_is_predicts(tmp_path):
    tiny.register()
    keras.utils.set_random_seed(0)
    names = ["cat", "dog", "fox", "owl"]
    inner = keras_alexnet.AlexNet(4, variant="tiny", input_scale=0.02, class_names=names)
    mean = np.random.default_rng(1).uniform(60, 180, (256, 256, 3)).astype(np.float32)
    model = mean_image.with_mean(inner, mean)  # as an hub_exports model.keras: raw pixels in
    classifier = presets.from_keras_model(model)
    assert isinstance(classifier.backbone, hub_models.AlexNetBackbone)
    assert classifier.class_names == names and classifier.num_classes == 4
    assert classifier.backbone.mean_image_size == 256
    # One-to-one: every weighted layer of the model is one of the classifier, same values.
    mapped = presets.weighted_layers(classifier)
    assert sorted(mapped) == sorted(presets.weighted_layers(model))
    assert {"conv1", "conv5", "subtract_mean"} <= {x.name for x in classifier.backbone.layers}
    for layer in model.layers:
        for a, b in zip(layer.get_weights(), mapped.get(layer.name, layer).get_weights()):
            np.testing.assert_array_equal(a, b)
    # And back: the same weights, in the same order, as the package's model.
    back = presets.to_keras_model(classifier)
    assert [w.path for w in back.weights] == [w.path for w in model.weights]
    for a, b in zip(back.weights, model.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Raw images through the preprocessor and the classifier, as predict's serving function
    # computes them from the files (the mean image subtracted by the tools' preprocessing).
    paths = write_images(tmp_path)[:-1]
    pca = stats_lib.IMAGENET_PCA
    stats = stats_lib.Stats(mean, pca.eigval, pca.eigvec)
    from_bytes, _ = saved_model.serving_functions(inner, stats, names)
    expected = predicted(tf.function(from_bytes), paths)
    for path in paths:
        probs = classifier.predict(pixels_of(path)[None], verbose=0)[0]
        np.testing.assert_allclose(probs, expected[path][0], atol=1e-6)
    # A batch of images of different sizes is one batch of patches.
    patches = classifier.preprocessor.image_converter([pixels_of(p) for p in paths])
    assert tuple(patches.shape) == (len(paths), 227, 227, 3)
    np.testing.assert_array_equal(
        patches[3],
        preprocessing.center_crop(preprocessing.central_square(pixels_of(paths[3])), 227),
    )


def test_the_backbone_of_every_variant_is_alexnets_conv_layers():
    for variant in keras_alexnet.VARIANTS:
        backbone = hub_models.AlexNetBackbone(variant=variant)
        reference = keras_alexnet.AlexNet(variant=variant, include_top=False)
        assert [(w.path, w.shape) for w in backbone.weights] == [
            (w.path, w.shape) for w in reference.weights
        ], variant
        assert backbone.output_shape == reference.output_shape
        again = hub_models.AlexNetBackbone.from_config(backbone.get_config())
        assert again.get_config() == backbone.get_config()


@pytest.fixture(scope="module")
def hub_exports(trained, tmp_path_factory):
    """Preset folders, written by the export tool in fresh processes: one from the tiny
    training run (--model_dir), one from named converted weights (--model=NAME, fetched
    from a server on 127.0.0.1 and converted). {"run": ..., "named": ...}: their version
    folders, the environment of the named one, and the image files."""
    tiny.register()
    model_dir, _ = trained
    base = tmp_path_factory.mktemp("hub")
    publisher = base / "tiny_bvlc.caffemodel"
    write_caffemodel(publisher, random_weights(tiny.caffe_shapes(), seed=3))
    data = publisher.read_bytes()
    served = weight_server.Server()
    entry = weight_server.entry("tiny_bvlc", data, "tiny")
    served.files[entry.file_name] = data
    env = dict(
        os.environ,
        KERAS_HOME=str(base / "keras_home"),
        **{downloads.MIRROR_ENV: served.url},
        **weight_server.environment([entry]),
    )
    out = base / "saved_models"
    try:
        run, named = fresh_process.run_together(
            fresh_process.command(
                "export", f"--model_dir={model_dir}", f"--output_dir={out}", "--format=keras_hub"
            ),
            fresh_process.command(
                "export", "--model=tiny_bvlc", f"--output_dir={out}", "--format=keras_hub"
            ),
            env=env,
        )
    finally:
        served.stop()
    for completed in (run, named):
        assert completed.returncode == 0, completed.stderr[-4000:]
    images = write_images(base / "images")
    return {
        "run": (out / os.path.basename(model_dir) / "1", model_dir),
        "printed": run.stdout,
        "named": (out / "tiny_bvlc" / "1", env),
        "images": images,
        "base": base,
        "entry": entry,
    }


@pytest.fixture(scope="module")
def children(hub_exports):
    """What three fresh processes, started together, printed: KerasHub loading both
    presets and predicting, then fine-tuning (TensorFlow); loading the converted one and
    predicting (JAX); `verify --model=` the run's preset folder."""
    run_preset = hub_exports["run"][0] / presets.FOLDER
    named_preset = hub_exports["named"][0] / presets.FOLDER
    images = json.dumps(hub_exports["images"])
    tune_folder = os.path.join(image_data.make_folder(hub_exports["base"] / "folder"), "train")
    python = ["env", "KERAS_BACKEND=tensorflow", f"FINE_TUNE_FOLDER={tune_folder}"]
    tf_run, jax_run, verified = fresh_process.run_together(
        [
            *python,
            sys.executable,
            "-c",
            LOAD_AND_PREDICT + FINE_TUNE,
            images,
            named_preset,
            run_preset,
        ],
        ["env", "KERAS_BACKEND=jax", sys.executable, "-c", LOAD_AND_PREDICT, images, named_preset],
        fresh_process.command("verify", f"--model={run_preset}", "--variant=tiny"),
        env=fresh_process.script_env(),
    )
    return {"tensorflow": tf_run, "jax": jax_run, "verify": verified}


def test_presets_from_a_run_and_converted_weights_predict_as_predict(
    hub_exports, children, monkeypatch
):
    run_version, model_dir = hub_exports["run"]
    named_version, env = hub_exports["named"]
    run_preset, named_preset = run_version / presets.FOLDER, named_version / presets.FOLDER
    assert f"from_preset({str(run_preset)!r})" in hub_exports["printed"]
    assert sorted(os.listdir(run_preset)) == [
        "config.json",
        "image_converter.json",
        "metadata.json",
        "model.weights.h5",
        "preprocessor.json",
        "task.json",
        "task.weights.h5",
    ]
    images = hub_exports["images"]
    # predict --model_dir=RUN and predict --model=NAME (its cached .keras file), in process.
    monkeypatch.setenv("KERAS_HOME", env["KERAS_HOME"])
    monkeypatch.setitem(catalog.ENTRIES, "tiny_bvlc", hub_exports["entry"])
    references = {
        str(run_preset): predicted(prediction.serving_function(model_dir=model_dir)[0], images),
        str(named_preset): predicted(prediction.serving_function(model="tiny_bvlc")[0], images),
    }
    results, on_jax = result_of(children["tensorflow"]), result_of(children["jax"])
    assert (results["backend"], on_jax["backend"]) == ("tensorflow", "jax")
    assert not results["hub_before"] and not on_jax["hub_before"]
    for folder, expected in references.items():
        assert results[folder]["class"] == "AlexNetImageClassifier"
        for path in images:
            row = results[folder]["rows"][path]
            probs, top5 = expected[path]
            # The JPEG too: predict decodes its central square only (decode_and_crop_jpeg),
            # the user the whole image, and the pixels are the same.
            np.testing.assert_allclose(row["probs"], probs, atol=1e-5, err_msg=path)
            assert row["top5"] == top5, path
    for path in images:  # JAX computes the same network
        jax_probs = on_jax[str(named_preset)]["rows"][path]["probs"]
        np.testing.assert_allclose(jax_probs, references[str(named_preset)][path][0], atol=1e-5)


def test_fine_tuning_from_a_preset_gets_a_new_head_and_the_backbones_weights(children):
    tuned = result_of(children["tensorflow"], "TUNED")
    assert tuned["backend"] == "tensorflow" and tuned["backbone_loaded"]
    assert tuned["outputs"] == 3 and tuned["class_names"] is None
    assert np.isfinite(tuned["loss"]) and tuned["backbone_trained"]


def test_verify_reads_a_preset_folder_as_the_exported_keras_file(hub_exports, children):
    run_version, _ = hub_exports["run"]
    from_preset = children["verify"]
    # The report of the version's model.keras, the same network, made in this process.
    from_file = verification.verify(str(run_version / "model.keras"), "tiny", 1000, 227, "text")
    assert from_preset.returncode == from_file.status, from_preset.stderr[-2000:]
    assert "conv1" in from_preset.stdout
    assert from_preset.stdout.rstrip("\n").replace(presets.FOLDER, "model.keras") == from_file.text


def test_a_folder_that_is_not_a_preset_is_refused(tmp_path):
    folder = tmp_path / "not_a_preset"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "task.json").write_text("{}")
    assert hub.is_preset(str(folder))
    with pytest.raises(keras_alexnet.errors.InputError, match="not a readable KerasHub preset"):
        presets.load_keras_model(str(folder))
    assert keras_hub.models.ImageClassifier is not None
