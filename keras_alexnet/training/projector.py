"""fc7 vectors in TensorBoard's Embedding Projector.

The projector reads, from a TensorBoard run folder: a checkpoint holding the embedding
variable, projector_config.pbtxt naming it, metadata.tsv (one row per vector: its labels)
and a sprite image (the images in a grid, one tile per vector). At the end of training the
run writes its validation images' fc7 vectors (at most `config.projector_images` of them) to
model_dir/validation; `python -m keras_alexnet.explain --projector` writes its images'.
"""

import math
import os

import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins import projector

from keras_alexnet.data import preprocessing
from keras_alexnet.models import features

CONFIG_FILE = projector.metadata.PROJECTOR_FILENAME  # projector_config.pbtxt
CHECKPOINT = "embedding.ckpt"
METADATA = "metadata.tsv"
SPRITE = "sprite.png"
TENSOR_NAME = "embedding/.ATTRIBUTES/VARIABLE_VALUE"  # the variable's name in the checkpoint
SPRITE_LIMIT = 8192  # the projector's largest sprite image, in pixels a side


def _cell(value):
    return str(value).replace("\t", " ").replace("\n", " ")


def write(log_dir, vectors, metadata, pictures=None, name="fc7"):
    """Writes embedding vectors for the projector into a TensorBoard run folder.

    Args:
        log_dir: the folder (created if missing).
        vectors: float [n, d].
        metadata: {column: n values}, e.g. {"label": [...], "file": [...]}.
        pictures: uint8 [n, h, w, 3], one sprite tile per vector, or None.
        name: the embedding's name in the projector.

    Returns:
        The path of projector_config.pbtxt.

    Raises:
        ValueError: no vectors, or a column or the pictures of another length.
    """
    vectors = np.asarray(vectors, np.float32)
    n = len(vectors)
    if n == 0 or vectors.ndim != 2:
        raise ValueError(f"vectors must be [n >= 1, d]. Received: shape {vectors.shape}")
    lengths = {key: len(values) for key, values in metadata.items()}
    if pictures is not None:
        lengths["pictures"] = len(pictures)
    if any(length != n for length in lengths.values()):
        raise ValueError(f"{n} vectors need {n} rows of metadata. Received: {lengths}")
    os.makedirs(log_dir, exist_ok=True)
    tf.train.Checkpoint(embedding=tf.Variable(vectors)).write(os.path.join(log_dir, CHECKPOINT))
    config = projector.ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = TENSOR_NAME
    embedding.tensor_path = CHECKPOINT
    if metadata:
        columns = list(metadata)
        rows = ["\t".join(columns)] if len(columns) > 1 else []  # one column: no header
        rows += ["\t".join(_cell(metadata[c][i]) for c in columns) for i in range(n)]
        with open(os.path.join(log_dir, METADATA), "w", encoding="utf-8") as f:
            f.write("\n".join(rows) + "\n")
        embedding.metadata_path = METADATA
    if pictures is not None:
        grid, tile = sprite(pictures)
        tf.io.write_file(os.path.join(log_dir, SPRITE), tf.io.encode_png(grid))
        embedding.sprite.image_path = SPRITE
        embedding.sprite.single_image_dim.extend([tile, tile])
    projector.visualize_embeddings(log_dir, config)
    return os.path.join(log_dir, CONFIG_FILE)


def sprite(pictures, tile=64):
    """The pictures as tiles of a square grid, row by row: (uint8 image, tile side).

    Tiles shrink when needed to keep the sprite within the projector's 8192 pixels.
    """
    pictures = np.asarray(pictures)
    side = math.ceil(math.sqrt(len(pictures)))
    tile = max(1, min(tile, SPRITE_LIMIT // side))
    small = tf.image.resize(tf.cast(pictures, tf.float32), [tile, tile], antialias=True)
    small = np.clip(np.round(small.numpy()), 0, 255).astype(np.uint8)
    grid = np.full((side * tile, side * tile, 3), 255, np.uint8)
    for i, picture in enumerate(small):
        row, col = divmod(i, side)
        grid[row * tile : (row + 1) * tile, col * tile : (col + 1) * tile] = picture
    return grid, tile


def for_run(run, model):
    """At the end of training: the validation images' fc7 vectors, in model_dir/validation.

    Args:
        run: a `record.Run`; only its chief writes, at most `config.projector_images`.
        model: the trained model.
    """
    config = run.config
    if run.chief and config.projector_images:
        log_dir = os.path.join(config.model_dir, "validation")
        validation_embedding(
            model, run.source, run.stats, log_dir, config.projector_images, seed=config.seed
        )


def validation_embedding(model, source, stats, log_dir, max_images, seed=0, batch_size=64):
    """Writes fc7 vectors of validation images, labelled and pictured, for the projector.

    Args:
        model: the trained AlexNet.
        source: the run's `sources.Source`.
        stats: the training set's `stats.Stats`.
        log_dir: the TensorBoard run folder (the run's model_dir/validation).
        max_images: at most this many images, the first of the split in its epoch-0
            shuffled order (a sample of every class, read without reading the whole split).
        seed: the run's seed (the order).
        batch_size: images per forward pass.

    Returns:
        The number of images written (0 when the source has no validation split).
    """
    count = min(source.num_validation, max_images)
    if count <= 0:
        return 0
    crop = model.input_shape[1]
    size = stats.mean_image.shape[0]

    def load(ref, label):
        encoded = source.load(ref)
        shown = preprocessing.center_crop(preprocessing.decode_and_center_crop(encoded, size), crop)
        pixels = preprocessing.preprocess_for_eval(encoded, stats, crop=crop)
        return pixels, tf.cast(tf.round(shown), tf.uint8), label, ref

    ds = source.examples("validation", order=(seed, 0)).take(count)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
    extractor = features.feature_extractor(model, ("fc7", "fc8"))
    vectors, predicted, pictures, labels, files = [], [], [], [], []
    for pixels, shown, label, ref in ds:
        out = extractor(pixels, training=False)
        vectors.append(keras.ops.convert_to_numpy(out["fc7"]).astype(np.float32))
        predicted.append(np.argmax(keras.ops.convert_to_numpy(out["fc8"]), axis=-1))
        pictures.append(shown.numpy())
        labels.append(label.numpy())
        if source.kind == "folder":
            files += [os.path.basename(r.decode()) for r in ref.numpy()]
    names = source.class_names
    metadata = {
        "label": [names[i] for i in np.concatenate(labels)],
        "predicted": [names[i] for i in np.concatenate(predicted)],
    }
    if files:
        metadata["file"] = files
    write(log_dir, np.concatenate(vectors), metadata, np.concatenate(pictures))
    return count
