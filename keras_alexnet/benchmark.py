"""Training and inference speed of AlexNet: `python -m keras_alexnet.benchmark`."""

from keras_alexnet import cli
from keras_alexnet.benchmarks import model_speed


def run():
    cli.run(model_speed.main, model_speed.define_flags)


if __name__ == "__main__":
    run()
