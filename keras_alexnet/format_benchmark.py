"""What each exported format costs and keeps: `python -m keras_alexnet.format_benchmark`."""

from keras_alexnet import cli
from keras_alexnet.benchmarks import format_speed


def run():
    cli.run(format_speed.main, format_speed.define_flags)


if __name__ == "__main__":
    run()
