"""Export for serving and reuse: `python -m keras_alexnet.export`.

    python -m keras_alexnet.export --model_dir=runs/alexnet             # a training run
    python -m keras_alexnet.export --model=pretrained/bvlc_alexnet.keras  # a model file
    python -m keras_alexnet.export --model=bvlc_alexnet --format=keras_hub  # + a KerasHub preset

Writes a new numeric version under OUTPUT_DIR/<name>/, the layout TensorFlow Serving
watches: the SavedModel (image file bytes, or raw RGB pixels, in), model.keras (raw RGB
pixels in), labels.txt, dataset_stats.npz and, with --format, LiteRT and ONNX files (raw RGB
pixels in, uint8 for the int8 file) and a KerasHub preset folder (keras_hub/). An existing
version is never touched.

`serving.saved_model` describes the files.
"""

import os
import sys

from absl import app
from absl import flags

from keras_alexnet import cli
from keras_alexnet import errors
from keras_alexnet import hub
from keras_alexnet.models import alexnet as model_lib
from keras_alexnet.runs import write_errors
from keras_alexnet.serving import formats
from keras_alexnet.serving import saved_model

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags; only the entry point calls this."""
    cli.define_image_flags()
    cli.define_model_flags("The training run to export.", model_lib.PRECISIONS)
    flags.DEFINE_string("output_dir", "saved_models", "Base folder of exported models.")
    flags.DEFINE_string(
        "name", None, "The model's folder name (default: model_dir's name, or the file's)."
    )
    flags.DEFINE_list(
        "format",
        ["saved_model"],
        "Formats to write, comma-separated: saved_model (always written), litert, onnx "
        f"(needs {formats.ONNX_EXTRA}), keras_hub (a KerasHub preset folder, keras_hub/; "
        f"needs {hub.EXTRA}).",
    )
    flags.DEFINE_list(
        "quantize",
        ["none"],
        "LiteRT files to write, comma-separated: none (float32), float16, dynamic, int8.",
    )
    flags.DEFINE_integer("calibration_images", 200, "For int8: training images to calibrate on.")
    flags.DEFINE_string(
        "data_dir", None, "For int8: the run's images, if moved since (with --model: a folder)."
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        path = saved_model.export_run(
            FLAGS.model_dir,
            FLAGS.output_dir,
            FLAGS.name,
            FLAGS.checkpoint,
            FLAGS.mixed_precision,
            formats=FLAGS.format,
            quantize=FLAGS.quantize,
            calibration_images=FLAGS.calibration_images,
            data_dir=FLAGS.data_dir,
            model=FLAGS.model,
        )
    except errors.InputError:
        raise  # a file it cannot use: one line and exit 2 (cli.run)
    except (ValueError, ImportError, write_errors.WriteFailed) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    base = os.path.abspath(os.path.dirname(path))
    print(f"Exported {path}", flush=True)
    print(
        f"  serve:   tensorflow_model_server --model_base_path={base} "
        f"--model_name={os.path.basename(base)} --rest_api_port=8501"
    )
    print(f"  predict: python -m keras_alexnet.predict --model {os.path.dirname(path)} IMAGE...")
    for file in sorted(os.listdir(path)):
        if file != saved_model.KERAS_FILE and formats.is_model_file(file):
            print(f"           python -m keras_alexnet.predict --model {path}/{file} IMAGE...")
    preset = os.path.join(path, hub.PRESET_FOLDER)
    if hub.is_preset(preset):
        print(f"  keras-hub: keras_hub.models.ImageClassifier.from_preset({preset!r})")
    return 0


def run():
    cli.run(main, define_flags)


if __name__ == "__main__":
    run()
