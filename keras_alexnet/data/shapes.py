"""A small generated image set ("shapes") that needs no download.

What this set is: coloured geometric shapes (circle, square, triangle, cross) drawn with NumPy
on a plain, slightly noisy grey background, with random position, size and rotation, and saved
as real JPEG files in the folder layout that `folder_sources.folder_source` reads:

    ROOT/train/<class_name>/<class_name>_00000.jpg
    ROOT/validation/<class_name>/...

Each class is one combination of a dominant colour and a shape ("red_circle", "red_square",
...). Several classes share a colour, so a network has to use shape as well as colour: colour is
the easy cue, shape the second one. The images are 320x256 (wider than tall) so that the
paper's shorter-side resize and central crop run on them.

What it is not: a benchmark. It is a demo and a smoke test, small enough to generate in a few
seconds on a CPU and easy enough that AlexNet trained from scratch for a few hundred steps
separates the classes. Accuracy on it says nothing about accuracy on ImageNet.
"""

import json
import os
import re
import shutil
import tempfile

import numpy as np
import tensorflow as tf

DEFAULT_ROOT = os.environ.get(
    "KERAS_ALEXNET_SHAPES_DIR",
    os.path.join(os.path.expanduser("~"), "tensorflow_datasets", "keras_alexnet_shapes"),
)

# Written last: a folder without it (or with other parameters in it) is regenerated.
MARKER_FILE = "shapes_dataset.json"
_FORMAT_VERSION = 1

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 190, 40),
    "blue": (35, 60, 225),
    "yellow": (235, 215, 30),
    "magenta": (215, 40, 200),
    "cyan": (30, 205, 215),
}
SHAPES = ("circle", "square", "triangle", "cross")


def class_names(num_classes):
    """Returns the first `num_classes` class names, e.g. "red_circle".

    Round r gives colour c the shape (c + r) mod 4, so any prefix mixes colours and shapes:
    with 10 classes every colour appears and four colours appear with two different shapes.

    Args:
        num_classes: number of classes, 2 to 24.

    Returns:
        A list of `num_classes` distinct names "<colour>_<shape>".
    """
    colours = list(COLOURS)
    total = len(colours) * len(SHAPES)
    if not 2 <= num_classes <= total:
        raise ValueError(
            f"num_classes must be between 2 and {total}. Received: num_classes={num_classes}"
        )
    names = []
    for r in range(len(SHAPES)):
        for c, colour in enumerate(colours):
            names.append(f"{colour}_{SHAPES[(c + r) % len(SHAPES)]}")
    return names[:num_classes]


def _shape_mask(shape, u, v):
    """Boolean mask of a unit-size shape in rotated, size-normalised coordinates (u, v)."""
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == "triangle":
        # Equilateral triangle with its centroid at the origin and circumradius 1.
        return (v >= -0.5) & (v <= 1.0 - np.sqrt(3.0) * np.abs(u))
    if shape == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1.0))
    raise ValueError(f"Unknown shape. Received: shape={shape!r}")


def draw_image(class_name, rng, image_size=(256, 320)):
    """Draws one image of a class.

    Args:
        class_name: a name from `class_names`, e.g. "red_circle".
        rng: a `numpy.random.Generator`.
        image_size: (height, width) in pixels.

    Returns:
        A uint8 array [height, width, 3].
    """
    return draw_image_and_box(class_name, rng, image_size)[0]


def draw_image_and_box(class_name, rng, image_size=(256, 320)):
    """Draws one image of a class, and says where the shape is.

    Args: as `draw_image`'s (the same draws from rng, the same image).

    Returns:
        (uint8 array [height, width, 3], (top, left, bottom, right)): the image and the
        shape's bounding box in pixels, bottom and right exclusive.
    """
    colour_name, shape = class_name.split("_", 1)
    height, width = image_size
    short = min(height, width)
    background = rng.uniform(80.0, 175.0) + rng.uniform(-12.0, 12.0, size=3)
    image = np.empty((height, width, 3), np.float32)
    image[...] = background

    radius = rng.uniform(0.25, 0.4) * short
    # Keep the centre inside the central square, which the shorter-side crop keeps.
    margin_y = max(height / 2 - (short / 2 - radius), 0.0)
    margin_x = max(width / 2 - (short / 2 - radius), 0.0)
    cy = rng.uniform(margin_y, height - margin_y)
    cx = rng.uniform(margin_x, width - margin_x)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    dy = (np.arange(height, dtype=np.float32)[:, None] - cy) / radius
    dx = (np.arange(width, dtype=np.float32)[None, :] - cx) / radius
    u = np.cos(angle) * dx + np.sin(angle) * dy
    v = -np.sin(angle) * dx + np.cos(angle) * dy
    mask = _shape_mask(shape, u, v)
    colour = np.asarray(COLOURS[colour_name], np.float64) + rng.uniform(-25.0, 25.0, size=3)
    image[mask] = colour
    # Luminance noise: one draw per pixel, shared by the channels (a third of the cost).
    image += 6.0 * rng.standard_normal(size=(height, width, 1), dtype=np.float32)
    rows, cols = np.any(mask, axis=1).nonzero()[0], np.any(mask, axis=0).nonzero()[0]
    box = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1) if rows.size else None
    return np.clip(image, 0, 255).astype(np.uint8), box


def _expected_marker(num_classes, train_per_class, val_per_class, image_size, seed):
    return {
        "format_version": _FORMAT_VERSION,
        "class_names": class_names(num_classes),
        "train_per_class": train_per_class,
        "val_per_class": val_per_class,
        "image_size": list(image_size),
        "seed": seed,
    }


def _read_marker(root):
    try:
        with open(os.path.join(root, MARKER_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


_FILE_PATTERN = re.compile(r"^[a-z]+_[a-z]+_\d{5}\.jpg$")


def _looks_generated(root):
    """True if every entry under root is something this module writes (safe to delete)."""
    known = set(class_names(len(COLOURS) * len(SHAPES)))
    for entry in os.listdir(root):
        path = os.path.join(root, entry)
        if entry == MARKER_FILE:
            continue
        if entry not in ("train", "validation") or not os.path.isdir(path):
            return False
        for class_dir in os.listdir(path):
            class_path = os.path.join(path, class_dir)
            if class_dir not in known or not os.path.isdir(class_path):
                return False
            if not all(_FILE_PATTERN.match(f) for f in os.listdir(class_path)):
                return False
    return True


def _write_split(directory, names, per_class, image_size, rng):
    for name in names:
        class_dir = os.path.join(directory, name)
        os.makedirs(class_dir)
        for i in range(per_class):
            pixels = draw_image(name, rng, image_size)
            encoded = tf.io.encode_jpeg(pixels, quality=90).numpy()
            with open(os.path.join(class_dir, f"{name}_{i:05d}.jpg"), "wb") as f:
                f.write(encoded)


def shape_boxes(root):
    """Where the shape of each image of a shapes set is: its bounding box, drawn again.

    The set's marker file holds the parameters it was drawn with; drawing it again with
    the same generator gives the same images, and each shape's box.

    Args:
        root: a folder `ensure_shapes_dataset` wrote.

    Returns:
        {path relative to root, e.g. "validation/red_circle/red_circle_00000.jpg":
        (top, left, bottom, right) in the file's pixels}.

    Raises:
        ValueError: root holds no shapes set of this format.
    """
    marker = _read_marker(root)
    if not marker or marker.get("format_version") != _FORMAT_VERSION:
        raise ValueError(f"root holds no shapes set (no {MARKER_FILE}). Received: root={root}")
    rng = np.random.default_rng(marker["seed"])
    boxes = {}
    for split, per_class in (("train", "train_per_class"), ("validation", "val_per_class")):
        for name in marker["class_names"]:
            for i in range(marker[per_class]):
                _, box = draw_image_and_box(name, rng, tuple(marker["image_size"]))
                boxes[f"{split}/{name}/{name}_{i:05d}.jpg"] = box
    return boxes


def ensure_shapes_dataset(
    root=None,
    *,
    num_classes=10,
    train_per_class=160,
    val_per_class=40,
    image_size=(256, 320),
    seed=0,
):
    """Writes the shapes image set once and returns its root folder.

    A marker file, written last, records the parameters. A second call with the same
    parameters returns at once; a folder without the marker (an interrupted run) or with other
    parameters is regenerated. The set is written into a temporary sibling folder and renamed
    into place, so readers never see a half-written set.

    Args:
        root: folder to write; `DEFAULT_ROOT` (env KERAS_ALEXNET_SHAPES_DIR or
            ~/tensorflow_datasets/keras_alexnet_shapes) when None.
        num_classes: number of classes, 2 to 24 (see `class_names`).
        train_per_class: training images per class.
        val_per_class: validation images per class.
        image_size: (height, width) of every image.
        seed: seed of the generator; the same seed writes the same images.

    Returns:
        `root` as a string.
    """
    root = os.path.abspath(os.fspath(root or DEFAULT_ROOT))
    if train_per_class < 1:
        raise ValueError(f"train_per_class must be >= 1. Received: {train_per_class}")
    if val_per_class < 1:
        raise ValueError(f"val_per_class must be >= 1. Received: {val_per_class}")
    if len(image_size) != 2 or min(image_size) < 32:
        raise ValueError(
            "image_size must be (height, width), each at least 32. "
            f"Received: image_size={image_size}"
        )
    expected = _expected_marker(
        num_classes, train_per_class, val_per_class, tuple(image_size), seed
    )
    if _read_marker(root) == expected:
        return root
    if os.path.exists(root) and os.listdir(root) and not _looks_generated(root):
        raise ValueError(
            f"root exists and holds files that are not a shapes dataset; not overwriting it. "
            f"Received: root={root}"
        )

    total = len(expected["class_names"]) * (train_per_class + val_per_class)
    # Keras' get_file announces a download the same way: this is the one slow first call.
    print(f"Writing the built-in image set ({total} JPEG files, once) to {root}", flush=True)
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(root) + ".partial-", dir=parent)
    try:
        names = expected["class_names"]
        rng = np.random.default_rng(seed)
        _write_split(os.path.join(tmp, "train"), names, train_per_class, image_size, rng)
        _write_split(os.path.join(tmp, "validation"), names, val_per_class, image_size, rng)
        with open(os.path.join(tmp, MARKER_FILE), "w") as f:
            json.dump(expected, f, indent=1)
        if _read_marker(root) == expected:  # Another process finished first.
            return root
        if os.path.exists(root):
            shutil.rmtree(root)
        try:
            os.rename(tmp, root)
        except OSError:
            if _read_marker(root) != expected:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
