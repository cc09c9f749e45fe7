"""The paper's 256x256 preparation, done once: `python -m keras_alexnet.prepare`."""

from keras_alexnet import cli
from keras_alexnet.data import shard_writer


def run():
    cli.run(shard_writer.main, shard_writer.define_flags)


if __name__ == "__main__":
    run()
