"""Pretrained AlexNet weights into this package's model: `python -m keras_alexnet.convert`."""

from keras_alexnet import cli
from keras_alexnet.weights import conversion


def run():
    cli.run(conversion.main, conversion.define_flags)


if __name__ == "__main__":
    run()
