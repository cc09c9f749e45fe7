"""Input on other machines: a tf.data service cluster, and training batches read from it."""

from keras_alexnet import cli
from keras_alexnet.data import service


def run():
    cli.run(service.main, service.define_flags)


if __name__ == "__main__":
    run()
