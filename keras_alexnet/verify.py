"""The conformance report: does the model match the paper, layer by layer?

    python -m keras_alexnet.verify [--variant=paper] [--input_size=227] [--format=text]
    python -m keras_alexnet.verify --model=path/to/model.keras --variant=paper
    python -m keras_alexnet.verify --model=alexnet.onnx --format=html --output=report.html \\
        --compare=paper,caffe,one_weird_trick

Checks each layer's output size, kernel, towers, neuron and parameter counts against the
numbers the paper states, naming where the paper contradicts itself; --model takes any
AlexNet: a Keras file of any layers, an ONNX file, a PyTorch state dict. The exit status is
1 when a check fails (a model of this package) or when the model departs from the paper
(any other AlexNet), 2 when the model cannot be built or read.

The work is `paper.verification`'s; this module holds the flags and prints the report.
"""

import sys

from absl import flags

from keras_alexnet import cli
from keras_alexnet.models import variants
from keras_alexnet.paper import numbers as paper
from keras_alexnet.paper import verification

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
    flags.DEFINE_enum("format", "text", ["text", "markdown", "json", "html"], "Report format.")
    flags.DEFINE_string(
        "model",
        None,
        "A model to check instead of a new one: a Keras file (.keras, .h5) of any layers, "
        "an ONNX file or a PyTorch state dict (.pth); the weights' initialisation is not "
        "checked.",
    )
    flags.DEFINE_string("output", None, "Write the report to this file instead of stdout.")
    flags.DEFINE_list(
        "compare",
        [],
        "Variants (paper, caffe, one_weird_trick) or model files to put beside the model, "
        "in columns of the HTML page.",
    )
    flags.DEFINE_bool(
        "trust_model", False, "Load Keras files with Lambda layers (their code runs)."
    )


def main(argv):
    del argv
    try:
        result = verification.verify(
            FLAGS.model,
            FLAGS.variant,
            FLAGS.num_classes,
            FLAGS.input_size,
            FLAGS.format,
            compare=FLAGS.compare,
            trust=FLAGS.trust_model,
        )
    except (ValueError, OSError) as error:  # the model cannot be built or read
        print(f"error: {cli.one_line(error)}", file=sys.stderr)
        return 2
    if FLAGS.output:
        with open(FLAGS.output, "w", encoding="utf-8") as f:
            f.write(result.text + "\n")
        print(f"{result.summary}\nwrote {FLAGS.output}")
    else:
        print(result.text)
    return result.status


def run():
    cli.run(main, define_flags)


if __name__ == "__main__":
    run()
