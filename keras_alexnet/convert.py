"""Pretrained AlexNet weights into this package's model: `python -m keras_alexnet.convert`.

    python -m keras_alexnet.convert bvlc_alexnet.caffemodel --output alexnet_caffe.keras
    python -m keras_alexnet.convert bvlc_alexnet.npy --allow_pickle --output alexnet_npy.keras
    python -m keras_alexnet.convert alexnet-owt-7be5be79.pth --output alexnet_torch.keras
    python -m keras_alexnet.convert bvlc_alexnet --output alexnet_caffe.keras  # fetched once

Reads Caffe's bvlc_alexnet.caffemodel (no Caffe needed), a .npy of the same weights or
torchvision's alexnet .pth, or a name of pretrained weights (its file fetched into the
Keras cache and verified first), and writes a .keras model that takes raw RGB 0-255 pixels
(the file's normalisation inside) and carries the 1000 ImageNet class names, for evaluate,
export, predict and train --init_from.

The names are `weights.catalog`'s, fetched by `weights.cache.fetch`; the work is
`weights.conversion.convert`; this module holds the flags and what it prints.
"""

import sys

from absl import app
from absl import flags

from keras_alexnet import cli
from keras_alexnet import errors
from keras_alexnet.models import labels
from keras_alexnet.weights import cache
from keras_alexnet.weights import catalog
from keras_alexnet.weights import conversion
from keras_alexnet.weights import weight_files

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags; only the entry point calls this."""
    flags.DEFINE_string("output", None, "The .keras file to write; it must not exist.")
    flags.DEFINE_enum(
        "format",
        None,
        list(weight_files.WEIGHT_FILE_FORMATS),
        f"The source's format (default: from its extension, {sorted(weight_files.EXTENSIONS)}).",
    )
    flags.DEFINE_bool(
        "allow_pickle",
        False,
        "Allow unpickling a .npy dict. Unpickling can run code hidden in the file: "
        "only for files from sources you trust.",
    )
    flags.DEFINE_integer(
        "num_classes", None, "The number of classes fc8 must have (default: fc8's).", lower_bound=1
    )
    flags.DEFINE_string(
        "variant",
        None,
        "The variant the weights belong to (default: the format's: caffe for .caffemodel "
        "and .npy, one_weird_trick for torchvision's .pth).",
    )
    flags.mark_flag_as_required("output")


def main(argv):
    if len(argv) != 2:
        raise app.UsageError(f"Expected one source file or name. Received: {argv[1:]}")
    src, fmt, variant = argv[1], FLAGS.format, FLAGS.variant
    try:
        if catalog.is_name(src):
            conversion.check_output(FLAGS.output)  # before a download, not after
            entry = catalog.entry(src)
            src, fmt, variant = cache.fetch(src), entry.format, variant or entry.variant
        model = conversion.convert(
            src,
            FLAGS.output,
            fmt,
            FLAGS.allow_pickle,
            num_classes=FLAGS.num_classes,
            variant=variant,
        )
    except errors.InputError:
        raise  # a file it cannot use: one line and exit 2 (cli.run)
    except (ValueError, OSError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    fc8 = model.get_layer("fc8")
    names = labels.class_names_of(model)
    print(
        f"Wrote {FLAGS.output}: {model.name}, {fc8.units} classes"
        + (" (ILSVRC-2012, named inside)" if names else "")
        + f", {model.count_params():,} parameters. It takes raw RGB pixels in 0-255, "
        f"{model.input_shape[1]}x{model.input_shape[2]}; the normalisation is inside.",
        flush=True,
    )
    return 0


def run():
    cli.run(main, define_flags)


if __name__ == "__main__":
    run()
