"""Several training workers on this machine: `python -m keras_alexnet.launch`."""

from keras_alexnet import cli
from keras_alexnet.training import launcher


def run():
    cli.run(launcher.main, launcher.define_flags)


if __name__ == "__main__":
    run()
