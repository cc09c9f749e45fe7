"""Export for serving and reuse: `python -m keras_alexnet.export`."""

from keras_alexnet import cli
from keras_alexnet.serving import saved_model


def run():
    cli.run(saved_model.main, saved_model.define_flags)


if __name__ == "__main__":
    run()
