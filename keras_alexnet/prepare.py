"""The paper's 256x256 preparation, done once: `python -m keras_alexnet.prepare`.

    python -m keras_alexnet.prepare --dataset=folder --data_dir=DIR --output_dir=PREPARED
    python -m keras_alexnet.train --dataset=prepared:PREPARED ...

Reads any source the training tool reads (same --dataset, --data_dir, --manual_dir,
--validation_split, --on_bad_image flags) and writes its images at 256x256 to sharded
TFRecord files, which training then decodes instead of full-size photos. An interrupted
preparation resumes where it stopped.

The writer is `data.shard_writer`.
"""

import sys

from absl import app
from absl import flags

from keras_alexnet import cli
from keras_alexnet.data import bad_images
from keras_alexnet.data import shard_writer
from keras_alexnet.data import shards
from keras_alexnet.data import sources
from keras_alexnet.training import config as config_lib

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags; only the entry point calls this."""
    cli.define_image_flags()
    config_lib.define_data_flags()
    flags.DEFINE_string("output_dir", None, "The prepared folder to write.")
    flags.DEFINE_enum(
        "encoding",
        "jpeg",
        list(shards.ENCODINGS),
        "How images are stored: jpeg (4:2:0 chroma, the fastest to train from), jpeg444 (full "
        "chroma) or png (lossless, the slowest).",
    )
    flags.DEFINE_integer("quality", 90, "JPEG quality.")
    flags.DEFINE_integer("images_per_shard", 1024, "Images per TFRecord file.")
    flags.mark_flag_as_required("output_dir")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        config = config_lib.resolve(
            config_lib.TrainConfig(
                model_dir=FLAGS.output_dir,
                dataset=FLAGS.dataset,
                data_dir=FLAGS.data_dir,
                manual_dir=FLAGS.manual_dir,
                validation_split=FLAGS.validation_split,
                on_bad_image=FLAGS.on_bad_image,
                seed=FLAGS.seed,
            )
        )
        source = config_lib.load_source(config)
        if config.on_bad_image == "skip":
            source, _ = bad_images.check_decoding(
                source, model_dir=FLAGS.output_dir, write_list=True
            )
        print(
            f"Preparing {source.name} ({source.num_classes} classes; "
            + ", ".join(f"{source.num_examples(s):,} {s}" for s in sources.SPLITS)
            + f") into {FLAGS.output_dir} at 256x256, {FLAGS.encoding}",
            flush=True,
        )
        metadata = shard_writer.prepare(
            source,
            FLAGS.output_dir,
            encoding=FLAGS.encoding,
            quality=FLAGS.quality,
            images_per_shard=FLAGS.images_per_shard,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    num_shards = sum(len(info["shards"]) for info in metadata["splits"].values())
    print(
        f"Done: {num_shards} shards in {FLAGS.output_dir}; train with "
        f"--dataset=prepared:{FLAGS.output_dir}",
        flush=True,
    )
    return 0


def run():
    cli.run(main, define_flags)


if __name__ == "__main__":
    run()
