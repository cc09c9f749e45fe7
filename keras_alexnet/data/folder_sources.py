"""Image folders as sources: the common folder layouts, scanned once.

A folder's splits are found by their folder names (`VALIDATION_FOLDERS`) or held out of the
training images by a hash (`validation_split`); every file is checked before the first step,
and the files that cannot be images of a class are listed, not read.
"""

import concurrent.futures
import hashlib
import os

import numpy as np
import tensorflow as tf
from absl import logging

from keras_alexnet import errors
from keras_alexnet.data import image_files
from keras_alexnet.data import sources

# Folder names of the validation split, in the order they are looked for.
VALIDATION_FOLDERS = ("validation", "val", "valid")


def folder_source(data_dir, *, on_bad_image="skip", validation_split=None, seed=0, num_threads=32):
    """An image folder in one of the common layouts.

    - DIR/train/<class>/*.jpg with DIR/validation/, DIR/val/ or DIR/valid/ beside it (the
      validation split, optional) and DIR/test/ (the test split, optional). The classes
      are the training folder's; the other splits may lack some (a warning names them),
      not have others.
    - With `validation_split`: DIR/<class>/*.jpg (or DIR/train/<class>/... without a
      validation folder), of which each class keeps that fraction of its files for
      validation, chosen by a hash of (seed, path): stable across reruns.

    Images may be JPEG, PNG, BMP, GIF (the first frame is used) or WebP, named .jpg, .jpeg,
    .png, .bmp, .gif or .webp in any case; the format is read from the bytes.

    Classes are the sorted class folder names. Every file is checked with
    `image_files.image_file_problem` (in a thread pool); bad files and stray entries are
    left out and listed in `Source.bad_files` (empty class folders are named in a
    warning), so the input order never depends on a decode error
    (`bad_images.check_decoding` then finds the files that pass this scan and still do
    not decode).

    Args:
        data_dir: the folder.
        on_bad_image: "skip" (log and leave them out) or "fail" (raise on the first).
        validation_split: None, or the fraction of the training images to validate on.
        seed: seed of the validation_split.
        num_threads: threads of the scan.

    Returns:
        A `sources.Source`.
    """
    sources.check_on_bad_image(on_bad_image)
    sources.check_validation_split(validation_split)
    data_dir = _checked_folder(data_dir)
    split_dirs, layout = _find_splits(data_dir, validation_split)
    train_dir = split_dirs["train"]
    class_names = _class_folders(train_dir)
    if not class_names:
        raise ValueError(f"{train_dir} has no class folders. Received: data_dir={data_dir}")
    _check_class_folders(split_dirs, class_names)

    empty = []
    listed = {
        split: _list_split(folder, class_names, empty) if folder else ([], [], [])
        for split, folder in split_dirs.items()
    }
    _warn_empty(empty)
    if validation_split is not None:
        listed["train"], listed["validation"] = _hold_out(
            listed["train"], validation_split, seed, train_dir
        )
        layout += f" (seed {seed})"
    elif split_dirs["validation"] is None:
        logging.warning("No validation folder in %s: there is no validation split.", data_dir)
    all_candidates = [path for split in sources.SPLITS for path in listed[split][0]]
    if not all_candidates:
        extensions = "/".join(image_files.IMAGE_EXTENSIONS)
        raise ValueError(f"No {extensions} files under {data_dir}. Received: {data_dir}")

    files, bad_files = _check_files(listed, all_candidates, num_threads)
    if len(files["train"][0]) == 0:
        raise ValueError(f"No usable training images under {train_dir}. Received: {data_dir}")
    sources.check_bad_files(bad_files, on_bad_image)
    return sources.Source(
        name=f"folder:{data_dir}",
        kind="folder",
        class_names=tuple(class_names),
        num_train=len(files["train"][0]),
        num_validation=len(files["validation"][0]),
        num_test=len(files["test"][0]),
        bad_files=tuple(bad_files),
        layout=layout,
        _reader=_FolderReader(files),
    )


def evaluation_source(data_dir, split="validation", *, on_bad_image="skip", num_threads=32):
    """An image folder to evaluate, or to calibrate on: one split, no training folder needed.

    - DIR/<class>/... (DIR holds no train/, validation/, val/, valid/ or test/): all its
      images are the set, as `split` (a folder of validation images by class, e.g.
      ImageNet's by synset).
    - DIR/validation/ (or val/, valid/), DIR/train/, DIR/test/: the folder of `split`
      alone, whatever the others hold or lack.

    The classes are that folder's class folders (sorted); whoever evaluates maps them to
    the model's own (`evaluation.evaluate`, by class id). Files are checked as by
    `folder_source`.

    Args:
        data_dir: the folder.
        split: "train", "validation" or "test"; None: the first of them whose folder holds
            files (the whole of DIR when it is one folder of class folders, as "train").
        on_bad_image: "skip" or "fail".
        num_threads: threads of the scan.

    Returns:
        A `sources.Source` whose other splits are empty.

    Raises:
        ValueError: naming the folder: missing, no folder of that split, no class folders,
            no images.
    """
    sources.check_on_bad_image(on_bad_image)
    if split is not None and split not in sources.SPLITS:
        raise ValueError(f"split must be one of {sources.SPLITS}. Received: split={split!r}")
    data_dir = _checked_folder(data_dir)
    split, folder, layout = _evaluation_folder(data_dir, split)
    class_names = _class_folders(folder)
    if not class_names:
        raise ValueError(
            f"{folder} has no class folders: it must hold one folder per class, holding that "
            f"class's images. Received: data_dir={data_dir}"
        )
    empty = []
    listed = {s: ([], [], []) for s in sources.SPLITS}
    listed[split] = _list_split(folder, class_names, empty)
    _warn_empty(empty)
    if not listed[split][0]:
        extensions = "/".join(image_files.IMAGE_EXTENSIONS)
        raise ValueError(
            f"No {extensions} files in the class folders of {folder}. Received: {data_dir}"
        )
    files, bad_files = _check_files(listed, listed[split][0], num_threads)
    if len(files[split][0]) == 0:
        raise ValueError(f"No usable images under {folder}. Received: data_dir={data_dir}")
    sources.check_bad_files(bad_files, on_bad_image)
    counts = {s: len(files[s][0]) for s in sources.SPLITS}
    return sources.Source(
        name=f"folder:{data_dir}",
        kind="folder",
        class_names=tuple(class_names),
        num_train=counts["train"],
        num_validation=counts["validation"],
        num_test=counts["test"],
        bad_files=tuple(bad_files),
        layout=layout,
        _reader=_FolderReader(files),
    )


def _evaluation_folder(data_dir, split):
    """(split, its folder, the layout in words) of `evaluation_source`."""
    split_dirs = _split_folders(data_dir)
    if not any(split_dirs.values()):
        return split or "train", data_dir, "one folder of class folders"
    if split is None:
        present = [s for s, d in split_dirs.items() if d]
        split = next((s for s in present if _holds_files(split_dirs[s])), present[0])
    folder = split_dirs[split]
    if folder is None:
        names = VALIDATION_FOLDERS if split == "validation" else (split,)
        held = ", ".join(f"{os.path.basename(d)}/" for d in split_dirs.values() if d)
        raise ValueError(
            f"{data_dir} has no {'/, '.join(names)}/ folder to evaluate (it holds {held}): "
            "name the split that is there (--split), or point data_dir at one folder of "
            f"class folders. Received: data_dir={data_dir}, split={split}"
        )
    return split, folder, f"{os.path.basename(folder)}/ alone"


def _checked_folder(data_dir):
    """data_dir as an absolute path, checked to be a folder that holds something."""
    if not data_dir:
        raise ValueError(f"data_dir must name an image folder. Received: data_dir={data_dir!r}")
    data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    if not os.path.isdir(data_dir):
        raise ValueError(f"data_dir does not exist or is not a folder. Received: {data_dir}")
    if not os.listdir(data_dir):
        raise ValueError(f"data_dir is empty. Received: {data_dir}")
    return data_dir


def _holds_files(folder):
    """Whether any class folder of `folder` holds a file that is not hidden."""
    for entry in os.scandir(folder):
        if _is_dir(entry) and not entry.name.startswith("."):
            if any(not f.name.startswith(".") for f in os.scandir(entry.path)):
                return True
    return False


def _warn_empty(empty):
    """Names the empty class folders in a warning: their classes have no images there."""
    if empty:
        logging.warning(
            "%d empty class folder(s), whose class has no images there: %s",
            len(empty),
            ", ".join(sorted(empty)[:10]) + (", ..." if len(empty) > 10 else ""),
        )


def _check_files(listed, all_candidates, num_threads):
    """Checks every candidate (in a thread pool): the usable files of each split, and the
    sorted (path, reason) of all that `_list_split` or the check left out."""
    with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
        problems = dict(
            zip(all_candidates, pool.map(image_files.image_file_problem, all_candidates))
        )
    files, bad_files = {}, []
    for split in sources.SPLITS:
        candidates, labels, bad = listed[split]
        bad_files += bad + [(p, problems[p]) for p in candidates if problems[p]]
        keep = [i for i, p in enumerate(candidates) if not problems[p]]
        files[split] = (
            np.array([candidates[i] for i in keep], dtype=object).astype(str),
            np.array([labels[i] for i in keep], np.int32),
        )
    bad_files.sort()
    return files, bad_files


def _is_dir(entry):
    """Whether a folder entry is a folder (followed if a symbolic link).

    Raises:
        errors.InputError: a symbolic link loop: a link to itself (or a ring of links), or
            to a folder that holds it.
    """
    try:
        is_dir = entry.is_dir()
    except OSError as error:  # ELOOP: a link to itself, or a ring of links
        raise errors.InputError(
            f"{errors.printable(entry.path)}: a symbolic link that cannot be followed "
            f"({error.strerror or error}); remove it or point it at a file or folder"
        ) from error
    if is_dir and entry.is_symlink():
        target = os.path.realpath(entry.path)
        parent = os.path.realpath(os.path.dirname(entry.path))
        if parent == target or parent.startswith(target.rstrip(os.sep) + os.sep):
            raise errors.InputError(
                f"{errors.printable(entry.path)}: a symbolic link loop: it leads to "
                f"{errors.printable(target)}, a folder that holds it"
            )
    return is_dir


def _class_folders(folder):
    names = sorted(e.name for e in os.scandir(folder) if _is_dir(e) and not e.name.startswith("."))
    for name in names:
        if sources.class_name_problem(name):
            raise errors.InputError(
                f"{os.path.join(folder, name)!r}: a class folder whose name holds "
                f"{sources.class_name_problem(name)}; class names are written one a line "
                "(labels.txt), so rename it"
            )
    return names


def _list_split(split_dir, class_names, empty):
    """Lists candidate images and the entries that cannot be images of a class; appends
    the class folders that hold nothing to `empty`."""
    candidates, labels, bad = [], [], []
    label_of = {name: i for i, name in enumerate(class_names)}
    for entry in sorted(os.scandir(split_dir), key=lambda e: e.name):
        if entry.name.startswith(".") or (_is_dir(entry) and entry.name not in label_of):
            continue  # hidden, or a split folder beside the classes (checked before)
        if not _is_dir(entry):
            bad.append((entry.path, "file outside a class folder"))
            continue
        files = sorted(os.scandir(entry.path), key=lambda e: e.name)
        files = [f for f in files if not f.name.startswith(".")]
        if not files:
            empty.append(entry.path)  # not a bad file: a class with no images here
        for f in files:
            if _is_dir(f):
                bad.append((f.path, "folder inside a class folder"))
            elif not f.name.lower().endswith(image_files.IMAGE_EXTENSIONS):
                bad.append((f.path, f"not a {'/'.join(image_files.IMAGE_EXTENSIONS)} file"))
            else:
                candidates.append(f.path)
                labels.append(label_of[entry.name])
    return candidates, labels, bad


def _find_splits(data_dir, validation_split):
    """The folder of each split (None where there is none), and the layout in words."""
    found = _split_folders(data_dir)
    train_dir, validation_dir, test_dir = found["train"], found["validation"], found["test"]
    if validation_split is not None:
        if validation_dir:
            raise ValueError(
                f"validation_split holds out part of the training images, and {data_dir} has "
                f"a validation folder already ({validation_dir}): use one or the other. "
                f"Received: validation_split={validation_split}"
            )
        train_dir = train_dir or data_dir
        where = "train/" if train_dir != data_dir else f"{data_dir}/"
        layout = f"validation_split={validation_split:g} of {where}"
    elif train_dir is None:
        raise ValueError(
            "data_dir must hold train/ (one subfolder per class, with validation/, val/ or "
            "valid/ and test/ beside it), or be one folder of class folders split by "
            f"--validation_split. Received: data_dir={data_dir}"
        )
    else:
        layout = "train/" + (
            f" and {os.path.basename(validation_dir)}/" if validation_dir else ", no validation"
        )
    if test_dir and train_dir != data_dir:
        layout += " and test/"
    else:
        test_dir = None  # in one folder of classes, test/ would be a class
    return dict(train=train_dir, validation=validation_dir, test=test_dir), layout


def _split_folders(data_dir):
    """The train/, validation (validation/, val/ or valid/) and test/ folders of data_dir,
    None where there is none.

    Raises:
        ValueError: more than one validation folder.
    """

    def sub(name):
        path = os.path.join(data_dir, name)
        return path if os.path.isdir(path) else None

    validation_dirs = [d for d in map(sub, VALIDATION_FOLDERS) if d]
    if len(validation_dirs) > 1:
        raise ValueError(
            f"data_dir holds {len(validation_dirs)} validation folders; keep one of "
            f"{', '.join(VALIDATION_FOLDERS)}. Received: {', '.join(validation_dirs)}"
        )
    validation_dir = validation_dirs[0] if validation_dirs else None
    return dict(train=sub("train"), validation=validation_dir, test=sub("test"))


def _check_class_folders(split_dirs, class_names):
    """Checks the class folders of the validation and test splits against training's.

    The classes and their indices are the training folder's. A split may lack some of them
    (it is evaluated on those it has; a warning names the others); a class folder training
    does not have is an error naming it.
    """
    train_dir = split_dirs["train"]
    for split in ("validation", "test"):
        if split_dirs[split] is None:
            continue
        names = _class_folders(split_dirs[split])
        only_here = sorted(set(names) - set(class_names))
        if only_here:
            raise ValueError(
                f"{split_dirs[split]} has class folders that {train_dir} has not: "
                f"{only_here[:10]}{' ...' if len(only_here) > 10 else ''}. The classes are "
                f"the training folder's: training never sees these, so they cannot be "
                f"evaluated. Received: {len(only_here)} {split} class folder(s) not in training"
            )
        missing = sorted(set(class_names) - set(names))
        if missing:
            logging.warning(
                "%s has no folder for %d of the %d training classes: %s; it is evaluated on "
                "the classes it has.",
                split_dirs[split],
                len(missing),
                len(class_names),
                ", ".join(missing[:10]) + (", ..." if len(missing) > 10 else ""),
            )


def _hold_out(listed, fraction, seed, root):
    """Splits the listed training files into (train, validation), class by class.

    Each class keeps round(fraction * n) of its n files for validation (at most n - 1): the
    files whose hash of (seed, path under root) is smallest. The same files and seed give
    the same split on every rerun and on every worker, wherever the folder is mounted.
    """
    candidates, labels, bad = listed
    by_class = {}
    for path, label in zip(candidates, labels):
        by_class.setdefault(label, []).append(path)
    held_out = set()
    for paths in by_class.values():
        count = min(round(fraction * len(paths)), len(paths) - 1)
        key = lambda p: hashlib.sha256(f"{seed}/{os.path.relpath(p, root)}".encode()).digest()  # noqa: E731
        held_out.update(sorted(paths, key=key)[:count])
    split = {False: ([], []), True: ([], [])}
    for path, label in zip(candidates, labels):
        split[path in held_out][0].append(path)
        split[path in held_out][1].append(label)
    return (*split[False], bad), (*split[True], [])


class _FolderReader:
    # The epoch's order is computed by TensorFlow ops, so `epoch` may be a tensor and one
    # dataset can hold many epochs without a copy of the file list per epoch.
    order_in_graph = True

    def __init__(self, files):
        self.files = files  # split -> (paths np.ndarray[str], labels np.ndarray[int32])

    def examples(self, split, order):
        paths, labels = self.files[split]
        if order is None:
            return tf.data.Dataset.from_tensor_slices((paths, labels))
        permutation = sources.epoch_permutation(len(paths), *order)
        return tf.data.Dataset.from_tensor_slices(
            (tf.gather(paths, permutation), tf.gather(labels, permutation))
        )

    def windows(self, split, order):
        return self.examples(split, order).batch(sources.WINDOW)

    def without(self, drop):
        """The same files but those whose path is in `drop`."""
        files = {}
        for split, (paths, labels) in self.files.items():
            keep = np.array([p not in drop for p in paths], bool)
            files[split] = (paths[keep], labels[keep])
        return _FolderReader(files)
