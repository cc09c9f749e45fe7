"""Images that pass the scan and still do not decode: found once, listed in the model_dir.

The scan of an image folder (`image_files.image_file_problem`) reads each file's structure,
not its pixels. With on_bad_image="skip", `check_decoding` then decodes every file once, in
parallel, with the decoder training uses, and leaves out of every split the files that fail,
before the statistics pass and the first step. The steps of an epoch and their batches stay
a function of the file list alone: a resumed run, which reads the same list, sees the
batches an uninterrupted run would have.

The list, with the reason of each file, is kept in model_dir/bad_images.txt, beside the
files the scan left out. A rerun (and `evaluate`) reads it instead of decoding again while
the files are the same: the list records a digest of each split's paths, sizes and
modification times.

When a pass over the data fails to decode with on_bad_image="fail" (or on a file that
changed), `undecodable` (a split) and `undecodable_in_step` (the examples of one training
step) name the examples that do not decode, and `undecodable_error` and
`describe_failures` put them in the error the user reads.
"""

import concurrent.futures
import hashlib
import os
import re
import time

import tensorflow as tf
from absl import logging

from keras_alexnet.data import preprocessing
from keras_alexnet.data import sources

FILE = "bad_images.txt"
_CHECKED = "# checked"


def files_digest(paths, num_threads=32):
    """SHA-256 of the paths, sizes and modification times of files, in their order."""
    with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
        stats = list(pool.map(os.stat, paths))
    digest = hashlib.sha256()
    for path, stat in zip(paths, stats):
        digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def read(model_dir):
    """The decode check recorded in model_dir.

    Returns:
        (checked, found): checked maps "split digest" strings of the splits checked to True;
        found is a list of (path, reason) of the files that did not decode. Both are empty
        when model_dir has no list.
    """
    path = os.path.join(model_dir, FILE)
    checked, found = set(), []
    if not model_dir or not tf.io.gfile.exists(path):
        return checked, found
    with tf.io.gfile.GFile(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith(_CHECKED):
                checked.add(line[len(_CHECKED) :].strip())
            elif line.startswith("decode\t"):
                _, file, reason = line.split("\t", 2)
                found.append((file, reason))
    return checked, found


def write(model_dir, source, checked, found):
    """Writes model_dir/bad_images.txt: every file left out, and the splits checked.

    Written aside and renamed, so a reader never sees half a list.
    """
    decoded = set(found)
    scanned = [(p, r) for p, r in source.bad_files if (p, r) not in decoded]
    lines = [
        "# Image files left out of this run (on_bad_image=skip): how each was found "
        "(scan: by its structure, decode: by decoding it), its path and the reason.",
        *(f"{_CHECKED} {key}" for key in sorted(checked)),
        *(f"scan\t{path}\t{reason}" for path, reason in sorted(scanned)),
        *(f"decode\t{path}\t{reason}" for path, reason in sorted(found)),
    ]
    tf.io.gfile.makedirs(model_dir)
    path = os.path.join(model_dir, FILE)
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def check_decoding(source, *, model_dir=None, splits=sources.SPLITS, write_list=False):
    """Leaves out of a folder source the files that do not decode.

    Args:
        source: a folder `sources.Source` (any other source is returned as it is).
        model_dir: where the list is read (and written); None decodes every split.
        splits: the splits to check.
        write_list: whether to write model_dir/bad_images.txt (the run's chief does).

    Returns:
        (source without those files, [(path, reason)] of the files that do not decode).
    """
    if source.kind != "folder":
        return source, []
    checked, found = read(model_dir) if model_dir else (set(), [])
    recorded = {path for path, _ in found}
    for split in splits:
        paths, _ = source.files(split)
        if len(paths) == 0:
            continue
        key = f"{split} {files_digest(list(paths))}"
        if key in checked:
            continue
        new = _decode_all(source, split, recorded=bool(write_list and model_dir))
        found += [(path, reason) for path, reason in new if path not in recorded]
        recorded.update(path for path, _ in new)
        checked.add(key)
    if found:
        source = source.without(found)
        logging.warning(
            "Left out %d images that do not decode (the scan reads only the files' "
            "structure)%s, e.g. %s",
            len(found),
            f", listed in {os.path.join(model_dir, FILE)}" if write_list and model_dir else "",
            "; ".join(f"{path}: {reason}" for path, reason in found[:5]),
        )
    if write_list and model_dir:
        write(model_dir, source, checked, found)
    return source, found


def _decode_all(source, split, recorded):
    """Decodes every file of a split, with progress lines; the failures and their reasons.

    recorded says whether the result is written in a model_dir (the first line says so).
    """
    total = source.num_examples(split)
    print(
        f"Decoding the {total:,} {split} images once, to leave out those that do not decode "
        f"({'recorded in the model_dir; ' if recorded else ''}--on_bad_image=fail skips this)",
        flush=True,
    )
    start, last, shown = time.perf_counter(), [time.perf_counter()], [0]

    def progress(done):
        now = time.perf_counter()
        if (now - last[0] >= 30 or done == total) and done != shown[0]:
            last[0], shown[0] = now, done
            rate = done / max(now - start, 1e-9)
            print(f"  {done:,}/{total:,} {split} images checked, {rate:,.0f}/s", flush=True)

    return undecodable(source, split, progress=progress)


def undecodable_in_step(source, *, seed, epoch, step, global_batch_size):
    """The examples of one training step that do not decode, and why.

    The scan before training (`image_files.image_file_problem`) reads only a file's
    structure; damage inside the compressed data shows only when TensorFlow decodes it, as an
    error that does not say which file it was. The order of an epoch is a function of (seed,
    epoch), so the step that failed names its examples: positions step * global_batch_size
    onwards of the epoch's order, whatever the number of input pipelines (each takes every
    n-th of them). They are decoded one by one, eagerly: call this only after a step failed.

    Args:
        source: the `sources.Source` of `train_dataset`.
        seed, epoch: as given to `train_dataset`.
        step: the failed step, counted from the start of `epoch`.
        global_batch_size: as given to `train_dataset`.

    Returns:
        A list of (name, reason): name is the file path for folders, and "example N of epoch
        E's order" for TFDS datasets.
    """
    first = step * global_batch_size
    refs = source.examples("train", order=(seed, epoch)).skip(first).take(global_batch_size)
    return _decode_failures(
        source,
        enumerate(refs.as_numpy_iterator(), start=first),
        f"epoch {epoch}'s order",
    )


def undecodable(source, split, progress=None):
    """Every example of a split that does not decode, and why.

    Args:
        source: a `sources.Source`.
        split: "train", "validation" or "test".
        progress: None, or a function called with the number of examples decoded so far,
            now and then and at the end.

    Returns:
        A list of (name, reason), as `undecodable_in_step`.
    """
    examples = source.examples(split).enumerate()

    def decode(index, example):
        # A value of the pixels (not of the static shape), so the decode is not optimised away.
        return index, tf.reduce_max(preprocessing.decode_and_center_crop(source.load(example[0])))

    # Decoded in parallel, the failures dropped; only those are decoded again, for a reason.
    decoded = examples.map(
        decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False
    ).ignore_errors()
    good = set()
    for done, (index, _) in enumerate(decoded.as_numpy_iterator(), start=1):
        good.add(int(index))
        if progress and done % 256 == 0:
            progress(done)
    if progress:
        progress(source.num_examples(split))
    failed = (
        (int(index), example)
        for index, example in examples.as_numpy_iterator()
        if int(index) not in good
    )
    return _decode_failures(source, failed, f"the {split} split")


def undecodable_error(error, source, split, what, before, hint=""):
    """After a pass over a split failed: a ValueError naming the files that do not decode.

    Args:
        error: the `tf.errors.InvalidArgumentError` the pass raised; raised again as it is
            when every file of the split decodes (the failure was something else).
        source, split: the data the pass read (see `undecodable`).
        what, before: as for `describe_failures`.
        hint: appended to the message, e.g. what to do next.

    Returns:
        The ValueError, to raise `from error`.
    """
    bad = undecodable(source, split)
    if not bad:
        raise error
    return ValueError(describe_failures(bad, what, before) + hint)


def describe_failures(bad, what, before, limit=5):
    """The message for images that do not decode: how many, and the first `limit`.

    Args:
        bad: a list of (name, reason), from `undecodable` or `undecodable_in_step`.
        what: what they are, e.g. "validation image(s)".
        before: the work the scan ran before, e.g. "training".
        limit: how many to name.
    """
    text = "; ".join(f"{name}: {reason}" for name, reason in bad[:limit])
    if len(bad) > limit:
        text += f"; and {len(bad) - limit} more"
    return (
        f"{len(bad)} {what} do not decode (the scan before {before} reads only the files' "
        f"structure): {text}"
    )


def _decode_failures(source, positioned_examples, order_name):
    bad = []
    for position, (ref, _) in positioned_examples:
        try:
            preprocessing.decode_and_center_crop(source.load(ref))
        except tf.errors.InvalidArgumentError as error:
            if source.kind == "folder":
                name = ref.decode()
            else:
                name = f"example {position} of {order_name}"
            bad.append((name, error_summary(error.message)))
    return bad


def error_summary(message):
    """The informative line of a TensorFlow op error, without its graph and op decorations.

    Eager errors read "{{function_node ...}} Invalid PNG data [Op:DecodeImage]"; errors of a
    graph function (a SavedModel signature) put "Graph execution error", the node and stack
    lines first. Either way the reason is returned, e.g. "Invalid PNG data".
    """
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", message)
    skip = ("Graph execution error", "Detected at", "<stack", "[[", "File ")
    for line in message.splitlines():
        line = re.sub(r"\s*\[Op:.*", "", line).strip()
        if line and not line.startswith(skip):
            # A failed tf.debugging.Assert reads "assertion failed: [the reason]" in a graph
            # and "Expected ... to be true. Summarized data: b'the reason'" eagerly.
            line = re.sub(r"^Expected .* to be true\. Summarized data: b'(.*)'$", r"\1", line)
            return re.sub(r"^assertion failed: \[(.*)\]$", r"\1", line)
    return message.strip()
