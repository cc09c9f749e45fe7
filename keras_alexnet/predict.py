"""A quick look at a model's predictions: `python -m keras_alexnet.predict`."""

from keras_alexnet import cli
from keras_alexnet.serving import prediction


def run():
    cli.run(prediction.main, prediction.define_flags)


if __name__ == "__main__":
    run()
