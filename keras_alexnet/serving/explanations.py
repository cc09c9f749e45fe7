"""What a model sees in an image: the paper's figure 4 and a Grad-CAM map
(`python -m keras_alexnet.explain`).

For each image: its five most probable labels (figure 4's bars), the Grad-CAM map of the
top class on conv5 (Selvaraju et al. 2017: conv5's maps weighted by the spatial mean of
the top class's logit gradient, summed, ReLU), its fc7 vector (the paper's "last hidden
layer", section 6.1), and the images of a reference folder whose fc7 vectors are nearest
in Euclidean distance, as the paper finds them. The images go through the evaluation
preprocessing of the model (`model_files.LoadedModel`): the central 227x227 patch of the
256x256 central square, as `predict` sees it.
"""

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf

from keras_alexnet import errors
from keras_alexnet.data import bad_images
from keras_alexnet.data import image_files
from keras_alexnet.data import preprocessing
from keras_alexnet.models import features

TOP_K = 5
NEIGHBOURS = 6  # the paper's figure 4 shows six
BATCH = 16
GRADCAM_LAYER = "conv5"
EMBEDDING_LAYER = "fc7"


@dataclasses.dataclass
class Explanation:
    """One image, explained.

    Attributes:
        path: the image file.
        pixels: uint8 [crop, crop, 3], the patch the model sees (before the mean is taken
            off).
        true_label: the name of the class folder the file sits in, when it is one of the
            model's classes; else None.
        top: the (label, probability) pairs of the five most probable classes.
        cam: float32 [crop, crop], the Grad-CAM map of the top class on conv5, scaled to
            [0, 1] (all zeros when no location raises the class's score).
        embedding: float32 [units], the fc7 vector.
        neighbours: (path, distance) of the nearest reference images, nearest first.
    """

    path: str
    pixels: np.ndarray
    true_label: str
    top: list
    cam: np.ndarray
    embedding: np.ndarray
    neighbours: list = dataclasses.field(default_factory=list)


def list_images(paths):
    """The image files that paths name: files as given, folders walked for image files.

    Args:
        paths: files and folders.

    Returns:
        A list of file paths: each file in the order given, each folder's images sorted.

    Raises:
        errors.InputError: a path that does not exist, or a name that is not UTF-8 text
            (the page cannot show it).
    """
    missing = [errors.printable(p) for p in paths if not os.path.exists(p)]
    if missing:
        raise errors.InputError(f"no such file or folder: {', '.join(missing)}")
    found = []
    for path in paths:
        if not os.path.isdir(path):
            found.append(path)
            continue
        for folder, dirs, names in os.walk(path):
            dirs.sort()
            found.extend(
                os.path.join(folder, name)
                for name in sorted(names)
                if name.lower().endswith(image_files.IMAGE_EXTENSIONS)
            )
    for path in found:
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            raise errors.InputError(
                f"{errors.printable(path)}: the file's name is not UTF-8 text, which the page "
                "cannot show; rename it"
            ) from None
    return found


def true_label(path, class_names):
    """The class folder an image sits in, when its name is one of the classes; else None."""
    folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
    return folder if folder in class_names else None


def _loader(stats, crop):
    size = stats.mean_image.shape[0]

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def load(encoded):
        shown = preprocessing.center_crop(preprocessing.decode_and_center_crop(encoded, size), crop)
        return preprocessing.preprocess_for_eval(encoded, stats, crop=crop), shown

    return load


def load_images(paths, stats, crop, progress=None):
    """Decodes and preprocesses image files as the evaluation does, skipping bad ones.

    Args:
        paths: image files.
        stats: the `stats.Stats` whose mean image the model's input has taken off.
        crop: the model's input size.
        progress: called as progress(done, total) every 100 files, or None.

    Returns:
        (kept, inputs, shown, skipped): the paths that decoded; float32 [n, crop, crop, 3],
        the model's inputs; uint8 [n, crop, crop, 3], the same patches as pictures;
        (path, reason) of each file that did not decode.
    """
    load = _loader(stats, crop)
    kept, inputs, shown, skipped = [], [], [], []
    for i, path in enumerate(paths):
        problem = image_files.image_file_problem(path)
        if problem is None:
            try:
                pixels, picture = load(tf.io.read_file(path))
            except tf.errors.OpError as error:
                problem = bad_images.error_summary(getattr(error, "message", str(error)))
        if problem is None:
            kept.append(path)
            inputs.append(pixels.numpy())
            shown.append(np.clip(np.round(picture.numpy()), 0, 255).astype(np.uint8))
        else:
            skipped.append((path, problem))
        if progress is not None and (i + 1) % 100 == 0:
            progress(i + 1, len(paths))
    empty = np.zeros((0, crop, crop, 3), np.float32)
    return (
        kept,
        np.stack(inputs) if inputs else empty,
        np.stack(shown) if shown else empty.astype(np.uint8),
        skipped,
    )


def embeddings(model, inputs, layer=EMBEDDING_LAYER):
    """The named layer's output for each input, flattened: float32 [n, features]."""
    extractor = features.feature_extractor(model, (layer,))
    out = [
        keras.ops.convert_to_numpy(extractor(inputs[i : i + BATCH], training=False)[layer])
        for i in range(0, len(inputs), BATCH)
    ]
    if not out:
        return np.zeros((0, int(np.prod(extractor.output[layer].shape[1:]))), np.float32)
    return np.concatenate(out).reshape(len(inputs), -1).astype(np.float32)


def _gradcam_model(model):
    """inputs -> (conv5's maps, fc8's input, the model's output)."""
    fc8 = model.get_layer("fc8")
    return keras.Model(
        features.model_input(model),
        [model.get_layer(GRADCAM_LAYER).output, fc8.input, model.output],
    )


def _logits(model, hidden):
    """fc8 without its softmax: the class scores Grad-CAM differentiates."""
    fc8 = model.get_layer("fc8")
    kernel = tf.cast(tf.convert_to_tensor(fc8.kernel), tf.float32)
    logits = tf.linalg.matmul(tf.cast(hidden, tf.float32), kernel)
    if fc8.use_bias:
        logits += tf.cast(tf.convert_to_tensor(fc8.bias), tf.float32)
    return logits


def grad_cam(model, inputs, classes=None):
    """Grad-CAM maps on conv5 (Selvaraju et al. 2017), and the model's probabilities.

    The weight of each conv5 map is the spatial mean of the gradient of the class's logit
    (fc8 before its softmax) with respect to that map; the weighted sum of the maps, ReLU
    applied, is the Grad-CAM map, at conv5's resolution (13x13 for a 227x227 input).

    Args:
        model: an AlexNet with layers conv5 and fc8.
        inputs: float32 [n, crop, crop, 3], preprocessed as the model takes them.
        classes: int [n], the class of each map; default: each image's most probable.

    Returns:
        (maps, probabilities): float32 [n, h5, w5] (not normalised) and float32
        [n, classes], the model's output.
    """
    cam_model = _gradcam_model(model)
    maps, outputs = [], []
    for start in range(0, len(inputs), BATCH):
        batch = tf.convert_to_tensor(inputs[start : start + BATCH], tf.float32)
        with tf.GradientTape() as tape:
            conv5, hidden, probs = cam_model(batch, training=False)
            probs = tf.cast(probs, tf.float32)
            chosen = (
                tf.argmax(probs, axis=-1, output_type=tf.int32)
                if classes is None
                else tf.constant(classes[start : start + BATCH], tf.int32)
            )
            logits = _logits(model, hidden)
            score = tf.reduce_sum(tf.gather(logits, chosen[:, None], axis=1, batch_dims=1))
        conv5, grads = (tf.cast(t, tf.float32) for t in (conv5, tape.gradient(score, conv5)))
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        maps.append(tf.nn.relu(tf.reduce_sum(weights * conv5, axis=-1)).numpy())
        outputs.append(probs.numpy())
    if not maps:
        return np.zeros((0, 0, 0), np.float32), np.zeros((0, model.output_shape[-1]), np.float32)
    return np.concatenate(maps), np.concatenate(outputs)


def upsample(maps, size):
    """Grad-CAM maps resized to the image (bilinear), each scaled to [0, 1]."""
    if len(maps) == 0:
        return np.zeros((0, size, size), np.float32)
    big = tf.image.resize(np.asarray(maps, np.float32)[..., None], [size, size]).numpy()[..., 0]
    high = big.max(axis=(1, 2), keepdims=True)
    return np.where(high > 0, big / np.maximum(high, 1e-12), 0.0).astype(np.float32)


def nearest(queries, references, k=NEIGHBOURS, exclude=None):
    """The k references nearest each query, in Euclidean distance.

    Args:
        queries: float [n, d].
        references: float [m, d].
        k: neighbours per query.
        exclude: bool [n, m], pairs never returned (an image is not its own neighbour).

    Returns:
        (indices int [n, min(k, m)], distances float [n, min(k, m)]), nearest first.
    """
    queries = np.asarray(queries, np.float64)
    references = np.asarray(references, np.float64)
    squared = (
        (queries**2).sum(1)[:, None] + (references**2).sum(1)[None, :] - 2 * queries @ references.T
    )
    distances = np.sqrt(np.maximum(squared, 0.0))
    if exclude is not None:
        distances = np.where(exclude, np.inf, distances)
    k = min(k, references.shape[0])
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(distances, order, axis=1)


def explain(loaded, paths, neighbours_folder=None, progress=None):
    """Explains image files with a loaded model.

    Args:
        loaded: a `model_files.LoadedModel`.
        paths: image files (see `list_images`).
        neighbours_folder: a folder of reference images, or None: with it, each image's
            six nearest references in fc7 distance.
        progress: called as progress(what, done, total) on long lists, or None.

    Returns:
        (explanations, references, skipped): a list of `Explanation`; the references as
        (paths, uint8 pictures, fc7 vectors), or None; (path, reason) of every file that did
        not decode (images and references).
    """
    model = loaded.model
    crop = model.input_shape[1]

    def report(what):
        return None if progress is None else lambda done, total: progress(what, done, total)

    kept, inputs, shown, skipped = load_images(paths, loaded.stats, crop, report("images"))
    maps, probs = grad_cam(model, inputs)
    cams = upsample(maps, crop)
    vectors = embeddings(model, inputs)
    results = []
    for i, path in enumerate(kept):
        top = np.argsort(-probs[i], kind="stable")[:TOP_K]
        results.append(
            Explanation(
                path=path,
                pixels=shown[i],
                true_label=true_label(path, loaded.class_names),
                top=[(loaded.class_names[c], float(probs[i, c])) for c in top],
                cam=cams[i],
                embedding=vectors[i],
            )
        )
    references = None
    if neighbours_folder is not None:
        ref_paths, ref_inputs, ref_shown, ref_skipped = load_images(
            list_images([neighbours_folder]), loaded.stats, crop, report("reference images")
        )
        skipped += ref_skipped
        ref_vectors = embeddings(model, ref_inputs)
        references = (ref_paths, ref_shown, ref_vectors)
        _add_neighbours(results, references)
    return results, references, skipped


def _add_neighbours(results, references):
    ref_paths, _, ref_vectors = references
    if not results or not ref_paths:
        return
    real = [os.path.realpath(p) for p in ref_paths]
    exclude = np.array([[os.path.realpath(r.path) == p for p in real] for r in results])
    order, distances = nearest([r.embedding for r in results], ref_vectors, exclude=exclude)
    for result, row, dist in zip(results, order, distances):
        result.neighbours = [(ref_paths[j], float(d)) for j, d in zip(row, dist) if np.isfinite(d)]


def patch_box(box, image_shape, size, crop):
    """A box in an image file's pixels, in the evaluation patch's (clipped to it).

    The patch is the central crop x crop of the central square of the shorter side, resized
    to size x size (`preprocessing.preprocess_for_eval`).

    Args:
        box: (top, left, bottom, right) in the file's pixels, bottom and right exclusive.
        image_shape: the file's (height, width).
        size: the side the central square is resized to (256).
        crop: the patch's side (227).

    Returns:
        (top, left, bottom, right) in the patch's pixels, as integers.
    """
    height, width = image_shape
    side = min(height, width)
    scale = size / side
    first = ((height - side) // 2, (width - side) // 2)
    offset = (size - crop) // 2
    top, left, bottom, right = (
        int(round(min(max((value - first[i % 2]) * scale - offset, 0), crop)))
        for i, value in enumerate(box)
    )
    return top, left, bottom, right


def inside_outside_ratio(cam, box):
    """How much more a map holds per pixel inside a box than outside it.

    Args:
        cam: float [h, w], a Grad-CAM map at the patch's size.
        box: (top, left, bottom, right) in the map's pixels.

    Returns:
        The mean inside the box over the mean outside it (inf when nothing is outside).
    """
    cam = np.asarray(cam, np.float64)
    inside = np.zeros(cam.shape, bool)
    top, left, bottom, right = box
    inside[top:bottom, left:right] = True
    outside = cam[~inside].mean() if (~inside).any() else 0.0
    mean_inside = cam[inside].mean() if inside.any() else 0.0
    return np.inf if outside == 0 else float(mean_inside / outside)
