"""A quick look at a model's predictions: `python -m keras_alexnet.predict`.

    python -m keras_alexnet.predict --model saved_models/alexnet image.jpg other.png
    python -m keras_alexnet.predict --model bvlc_alexnet.keras image.jpg
    python -m keras_alexnet.predict --model imagenet image.jpg  # fetched once, then cached
    python -m keras_alexnet.predict --model_dir runs/alexnet image.jpg

prints the five most probable labels of each image. --model is an exported model's folder
(its highest version is used), one version folder, a .keras file, or a LiteRT .tflite or
ONNX .onnx file of a version folder; --model_dir a training run. An image that does not
decode is reported by name; the others are still predicted, and the exit status is 1. A
model that cannot be read ends in one line, `error: ...`, and exit status 2. A SavedModel
is a program: one whose graph uses operations this package's exports never use (file reads
and writes, Python functions, ...) is refused unless --trust_model.

The work is `serving.prediction`.
"""

import sys

from absl import app
from absl import flags

from keras_alexnet import cli
from keras_alexnet import errors
from keras_alexnet.serving import prediction

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags; only the entry point calls this."""
    cli.define_image_flags()
    flags.DEFINE_string(
        "model",
        None,
        "An exported model folder or one of its versions, a .keras file (from convert, "
        "export or model.save), a .tflite or .onnx file of a version folder, or a name of "
        "pretrained weights (bvlc_alexnet, imagenet, ...; fetched and cached on first "
        "use). Or --model_dir.",
    )
    flags.DEFINE_string("model_dir", None, "A training run (its latest checkpoint). Or --model.")
    flags.DEFINE_string("checkpoint", None, "With --model_dir: a checkpoint (default: the latest).")
    flags.DEFINE_bool(
        "trust_model",
        False,
        "Run a SavedModel folder even if its graph uses operations this package's exports "
        "never use (file reads and writes, Python functions, ...): a SavedModel is a program.",
    )
    flags.mark_flags_as_mutual_exclusive(["model", "model_dir"], required=True)


def main(argv):
    paths = argv[1:]
    if not paths:
        raise app.UsageError("Name one or more image files after the flags.")
    try:
        serving_fn, version = prediction.serving_function(
            FLAGS.model, FLAGS.model_dir, FLAGS.checkpoint, trust=FLAGS.trust_model
        )
    except errors.InputError:
        raise
    except (ValueError, OSError, ImportError) as error:
        given = f"--model={FLAGS.model}" if FLAGS.model else f"--model_dir={FLAGS.model_dir}"
        print(f"error: cannot load {given}: {cli.one_line(error)}", file=sys.stderr)
        return errors.EXIT_CODE
    print(f"Model {version}", flush=True)
    failed = 0
    for path, result, error in prediction.predict_files(serving_fn, paths):
        if error:
            failed += 1
            print(
                f"error: {errors.printable(path)}: not a readable JPEG, PNG, BMP, GIF or WebP "
                f"image ({error})",
                file=sys.stderr,
            )
            continue
        print(errors.printable(path))
        for label, prob in result:
            print(f"  {prob:7.2%}  {label}")
    return 1 if failed else 0


def run():
    cli.run(main, define_flags)


if __name__ == "__main__":
    run()
