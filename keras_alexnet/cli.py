"""What every `python -m keras_alexnet.<tool>` entry point shares.

`pip install` puts a `keras-alexnet-<tool>` command beside `python -m keras_alexnet.<tool>`
for each of `TOOLS` (setup.cfg's console_scripts); both call the tool module's `run`.
"""

from absl import app
from absl import flags
from absl import logging

# The flags that `define_model_flags` defines are the calling tool's: its --help lists them.
flags.disclaim_key_flags()


def run(main, define_flags=None):
    """Defines the tool's flags and runs `main` under `absl.app`.

    absl logs at INFO under `app.run`, which fills the console with TensorFlow's own
    INFO lines (one for every checkpoint saved); the tools log at WARNING unless
    `--verbosity` is given.
    """
    if define_flags is not None:
        define_flags()

    def quiet_main(argv):
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)
        return main(argv)

    app.run(quiet_main)


# The tools, each `python -m keras_alexnet.<tool>` and the console script
# `keras-alexnet-<tool>` (setup.cfg), which calls the tool module's `run`.
TOOLS = (
    "train",
    "evaluate",
    "export",
    "predict",
    "convert",
    "pretrained",
    "verify",
    "prepare",
    "launch",
    "data_service",
    "benchmark",
    "input_benchmark",
    "format_benchmark",
)


def define_model_flags(model_dir_help, precisions):
    """Defines the flags of every tool that works on a model: --model or --model_dir.

    --model (a .keras file, or an exported model's folder), --model_dir (a training run),
    exactly one of them; --checkpoint (default: the run's latest) and --mixed_precision.

    Args:
        model_dir_help: --model_dir's help, saying what the tool does with the run.
        precisions: --mixed_precision's choices, `model.PRECISIONS` (passed in: this module
            is imported by tools that never load Keras, such as the launcher).
    """
    flags.DEFINE_string(
        "model",
        None,
        "A .keras model file (from convert, export or model.save), an exported model's "
        "folder, or a name of pretrained weights (bvlc_alexnet, imagenet, "
        "torchvision_alexnet, IMAGENET1K_V1; fetched and cached on first use, see "
        "keras_alexnet.pretrained); its preprocessing and class names come with it. "
        "Or --model_dir.",
    )
    flags.DEFINE_string("model_dir", None, model_dir_help + " Or --model.")
    flags.DEFINE_string("checkpoint", None, "With --model_dir: a checkpoint (default: the latest).")
    flags.DEFINE_enum("mixed_precision", "none", list(precisions), "Compute dtype.")
    flags.mark_flags_as_mutual_exclusive(["model", "model_dir"], required=True)
