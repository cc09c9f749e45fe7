"""What every `python -m keras_alexnet.<tool>` entry point shares."""

from absl import app
from absl import flags
from absl import logging


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
