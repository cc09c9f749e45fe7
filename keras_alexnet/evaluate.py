"""The paper's test measure: `python -m keras_alexnet.evaluate`."""

from keras_alexnet import cli
from keras_alexnet.training import evaluation


def run():
    cli.run(evaluation.main, evaluation.define_flags)


if __name__ == "__main__":
    run()
