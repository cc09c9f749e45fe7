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
"""

import concurrent.futures
import hashlib
import os
import time

import tensorflow as tf
from absl import logging

from keras_alexnet.data import pipelines as input_pipeline
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
        new = _decode_all(source, split)
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


def _decode_all(source, split):
    """Decodes every file of a split, with progress lines; the failures and their reasons."""
    total = source.num_examples(split)
    print(
        f"Decoding the {total:,} {split} images once, to leave out those that do not decode "
        "(recorded in the model_dir; --on_bad_image=fail skips this)",
        flush=True,
    )
    start, last = time.perf_counter(), [time.perf_counter()]

    def progress(done):
        now = time.perf_counter()
        if now - last[0] >= 30 or done == total:
            last[0] = now
            rate = done / max(now - start, 1e-9)
            print(f"  {done:,}/{total:,} {split} images checked, {rate:,.0f}/s", flush=True)

    return input_pipeline.undecodable(source, split, progress=progress)
