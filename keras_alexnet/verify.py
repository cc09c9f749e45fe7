"""The conformance report: does the model match the paper, layer by layer?

    python -m keras_alexnet.verify [--variant=paper] [--input_size=227] [--format=text]
    python -m keras_alexnet.verify --model=path/to/model.keras --variant=paper

The checks are `paper.conformance`'s and the report `paper.report`'s; this module holds
the flags and prints the report. The exit status is 1 when any check fails, 2 when the
model cannot be built or loaded.
"""

import sys

from absl import flags

from keras_alexnet import cli
from keras_alexnet.models import variants
from keras_alexnet.paper import conformance
from keras_alexnet.paper import numbers as paper
from keras_alexnet.paper import report

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags; only the entry point calls this."""
    flags.DEFINE_enum(
        "variant",
        "paper",
        sorted(variants.VARIANTS),
        "The variant to build, or that --model claims to be.",
    )
    flags.DEFINE_integer("input_size", paper.INPUT_SIZE, "Input height and width.", lower_bound=1)
    flags.DEFINE_integer("num_classes", paper.NUM_CLASSES, "Classes of fc8.", lower_bound=1)
    flags.DEFINE_enum("format", "text", ["text", "markdown", "json"], "Report format.")
    flags.DEFINE_string(
        "model",
        None,
        "A saved .keras model to check instead of a new one "
        "(its weights are not checked against the paper's initialisation).",
    )


def main(argv):
    del argv
    try:
        model = report.model_to_check(
            FLAGS.model, FLAGS.variant, FLAGS.num_classes, FLAGS.input_size
        )
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    checks, rows = conformance.check_model(model, FLAGS.variant, check_init=not FLAGS.model)
    print(report.render(FLAGS.variant, model, checks, rows, FLAGS.format))
    return 1 if any(c.status == conformance.FAIL for c in checks) else 0


def run():
    cli.run(main, define_flags)


if __name__ == "__main__":
    run()
