"""Training AlexNet with the paper's recipe: `python -m keras_alexnet.train`."""

from keras_alexnet import cli
from keras_alexnet.training import trainer


def run():
    cli.run(trainer.main, trainer.define_flags)


if __name__ == "__main__":
    run()
