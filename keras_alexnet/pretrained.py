"""The named pretrained weights and their cache: `python -m keras_alexnet.pretrained`.

    python -m keras_alexnet.pretrained [--list]                 # the names, cached or not
    python -m keras_alexnet.pretrained --download=bvlc_alexnet  # fetch, verify, convert now
    python -m keras_alexnet.pretrained --file=bvlc_alexnet=~/Downloads/bvlc_alexnet.caffemodel

Lists the named pretrained weights (AlexNet(weights=NAME), --model=NAME, --init_from=NAME)
and whether each is cached. --download readies a machine that will be offline later;
--file caches a file downloaded by other means, once its hash is the publisher's.

The work is in `weights.cache`.
"""

import sys

from absl import app
from absl import flags

from keras_alexnet import cli
from keras_alexnet.weights import cache
from keras_alexnet.weights import catalog
from keras_alexnet.weights import downloads

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags; only the entry point calls this."""
    flags.DEFINE_boolean(
        "list", False, "List the names and whether each is cached (what no flag does too)."
    )
    flags.DEFINE_string(
        "download",
        None,
        "A name to fetch, verify and convert now (for a machine that will be offline later).",
    )
    flags.DEFINE_string(
        "file",
        None,
        "NAME=PATH: cache a file downloaded by other means (its hash is checked) and convert it.",
    )
    flags.mark_flags_as_mutual_exclusive(["download", "file"])


def describe(entry):
    """An entry's lines: its names, variant, size, accuracy, license and whether cached."""
    aliases = f" (alias {', '.join(entry.aliases)})" if entry.aliases else ""
    return [
        f"{entry.name}{aliases}: {entry.file_name}, becomes variant {entry.variant}",
        f"  size      {entry.size_note}",
        f"  accuracy  {entry.accuracy}",
        f"  license   {entry.license}",
        f"  hash      {entry.stated_hash()}",
        f"  source    {entry.source}",
        f"  cached    {cache.status(entry)}",
    ]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if FLAGS.list and (FLAGS.download or FLAGS.file):
        raise app.UsageError("--list does not go with --download or --file: give one of them.")
    try:
        if FLAGS.download:
            path = cache.model_file(FLAGS.download)
        elif FLAGS.file:
            name, sep, file = FLAGS.file.partition("=")
            if not sep or not file:
                raise ValueError(f"file must be NAME=PATH. Received: --file={FLAGS.file}")
            path = cache.add_file(name, file)
        else:
            path = None
    except ValueError as error:  # downloads.DownloadError among them
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    if path:
        print(f"Cached {path}: use it by name, e.g. AlexNet(weights=...), --model=NAME")
        return 0
    print(
        f"Pretrained weights, cached in {downloads.cache_dir()} (KERAS_HOME moves it; "
        f"{downloads.MIRROR_ENV} fetches from a mirror):"
    )
    for entry in catalog.ENTRIES.values():
        print("\n".join(describe(entry)))
    return 0


def run():
    cli.run(main, define_flags)


if __name__ == "__main__":
    run()
