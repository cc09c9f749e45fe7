"""The conformance report: does the model match the paper, layer by layer?"""

from keras_alexnet import cli
from keras_alexnet.paper import report


def run():
    cli.run(report.main, report.define_flags)


if __name__ == "__main__":
    run()
