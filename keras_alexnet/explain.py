"""What the network sees: `python -m keras_alexnet.explain`.

    python -m keras_alexnet.explain --model_dir=runs/alexnet --output_dir=explained IMAGES...
    python -m keras_alexnet.explain --model=alexnet.keras --output_dir=out --neighbours=ref/ me.jpg

For each image (files, or folders of them): its five most probable labels as bars (the
paper's figure 4; the true label marked when the image sits in a class folder), the
Grad-CAM map of the top class on conv5 over the image and, with --neighbours, the six
images of that folder nearest in fc7. Writes OUTPUT_DIR/index.html (one self-contained
page), explanations.json and the PNGs; with --projector the fc7 vectors for TensorBoard's
projector in OUTPUT_DIR/projector. An image that does not decode is named and skipped.
"""

import os
import sys

from absl import app
from absl import flags

from keras_alexnet import cli
from keras_alexnet import errors
from keras_alexnet.models import alexnet as model_lib
from keras_alexnet.runs import model_files
from keras_alexnet.serving import explain_page
from keras_alexnet.serving import explanations
from keras_alexnet.training import projector

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags; only the entry point calls this."""
    cli.define_image_flags()
    cli.define_model_flags("A training run (its latest checkpoint).", model_lib.PRECISIONS)
    flags.DEFINE_string("output_dir", None, "A new or empty folder for index.html and the PNGs.")
    flags.DEFINE_string(
        "neighbours", None, "A folder of images: show each image's six nearest in fc7."
    )
    flags.DEFINE_boolean(
        "projector",
        False,
        "Also write the fc7 vectors (the images' and --neighbours') for TensorBoard's "
        "projector: tensorboard --logdir=OUTPUT_DIR/projector.",
    )
    flags.mark_flag_as_required("output_dir")


def main(argv):
    if len(argv) < 2:
        raise app.UsageError("Name one or more image files or folders after the flags.")
    try:
        explain_page.check_output_dir(FLAGS.output_dir)
        if FLAGS.neighbours is not None and not os.path.isdir(FLAGS.neighbours):
            raise ValueError(f"neighbours must be a folder. Received: {FLAGS.neighbours}")
        paths = explanations.list_images(argv[1:])
        loaded = model_files.load_model_or_run(
            FLAGS.model, FLAGS.model_dir, FLAGS.checkpoint, FLAGS.mixed_precision
        )
    except (ValueError, OSError) as error:  # unusable input: one line, exit 2
        print(f"error: {cli.one_line(error)}", file=sys.stderr)
        return 2
    print(f"Model {loaded.name} ({loaded.origin}): {len(paths)} images", flush=True)
    results, references, skipped = explanations.explain(
        loaded, paths, FLAGS.neighbours, progress=_progress
    )
    for path, reason in skipped:
        print(
            f"error: {errors.printable(path)}: skipped, does not decode ({reason})", file=sys.stderr
        )
    page = explain_page.write(
        FLAGS.output_dir,
        results,
        references,
        title=f"{loaded.name} ({loaded.origin})",
        skipped=skipped,
    )
    for result in results:
        best, prob = result.top[0]
        truth = f" (true: {result.true_label})" if result.true_label else ""
        near = f"; nearest {result.neighbours[0][1]:.1f}" if result.neighbours else ""
        print(f"  {result.path}: {prob:7.2%} {best}{truth}{near}")
    if FLAGS.projector and results:
        _write_projector(results, references)
    print(f"Wrote {page}", flush=True)
    return 1 if skipped else 0


def _progress(what, done, total):
    print(f"  {done:,}/{total:,} {what} read", flush=True)


def _write_projector(results, references):
    vectors = [r.embedding for r in results]
    pictures = [r.pixels for r in results]
    rows = {
        "label": [r.true_label or "" for r in results],
        "predicted": [r.top[0][0] for r in results],
        "set": ["explained"] * len(results),
        "file": [r.path for r in results],
    }
    if references is not None:
        ref_paths, ref_pictures, ref_vectors = references
        vectors += list(ref_vectors)
        pictures += list(ref_pictures)
        rows["label"] += [os.path.basename(os.path.dirname(p)) for p in ref_paths]
        rows["predicted"] += [""] * len(ref_paths)
        rows["set"] += ["neighbours"] * len(ref_paths)
        rows["file"] += ref_paths
    folder = os.path.join(FLAGS.output_dir, "projector")
    projector.write(folder, vectors, rows, pictures)
    print(f"Projector: {len(vectors)} fc7 vectors in {folder}", flush=True)


def run():
    cli.run(main, define_flags)


if __name__ == "__main__":
    run()
