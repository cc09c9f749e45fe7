"""How fast is the training input pipeline, on image files and on prepared shards?"""

from keras_alexnet import cli
from keras_alexnet.benchmarks import input_speed


def run():
    cli.run(input_speed.main, input_speed.define_flags)


if __name__ == "__main__":
    run()
