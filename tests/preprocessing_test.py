"""preprocessing: each function against NumPy, and eagerly against inside tf.data."""

import image_data
import numpy as np
import pytest
import tensorflow as tf

from keras_alexnet import preprocessing
from keras_alexnet import stats as stats_lib

SIZE, CROP = preprocessing.IMAGE_SIZE, preprocessing.CROP_SIZE


def in_dataset(fn, *args):
    """Runs fn(*args) inside a tf.data map (graph mode) and returns the NumPy result."""
    ds = tf.data.Dataset.from_tensors(tuple(tf.convert_to_tensor(a) for a in args))
    return next(iter(ds.map(lambda *a: fn(*a)))).numpy()


def coordinate_image(height=SIZE, width=SIZE):
    """pixel (y, x) = (y, x, 0): a crop's first pixel tells its offset, its order the flip."""
    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([ys, xs, np.zeros_like(ys)], -1).astype(np.float32)


@pytest.mark.parametrize("height, width", [(48, 64), (64, 40), (600, 400)])
def test_decode_and_center_crop_png_matches_numpy_and_dataset(height, width):
    image = image_data.smooth_image(3, height, width)
    encoded = tf.io.encode_png(image)
    eager = preprocessing.decode_and_center_crop(encoded).numpy()
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side].astype(np.float32)
    reference = tf.image.resize(square, [SIZE, SIZE], antialias=side > 2 * SIZE).numpy()
    assert eager.shape == (SIZE, SIZE, 3) and eager.dtype == np.float32
    np.testing.assert_array_equal(eager, reference)
    np.testing.assert_array_equal(eager, in_dataset(preprocessing.decode_and_center_crop, encoded))


@pytest.mark.parametrize("height, width", [(48, 64), (64, 40), (375, 500)])
def test_decode_and_center_crop_jpeg_decodes_only_the_central_square(height, width):
    encoded = tf.io.encode_jpeg(image_data.smooth_image(4, height, width), quality=95)
    eager = preprocessing.decode_and_center_crop(encoded).numpy()
    full = tf.io.decode_jpeg(encoded, channels=3).numpy()
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = full[top : top + side, left : left + side].astype(np.float32)
    reference = tf.image.resize(square, [SIZE, SIZE]).numpy()
    # decode_and_crop_jpeg may upsample chroma differently at the crop's edge: a few levels.
    assert np.abs(eager - reference).mean() < 1.0
    assert eager.min() >= 0 and eager.max() <= 255
    np.testing.assert_array_equal(eager, in_dataset(preprocessing.decode_and_center_crop, encoded))


def test_subtract_mean_matches_numpy(stats):
    image = image_data.smooth_image(5, SIZE, SIZE).astype(np.float32)
    eager = preprocessing.subtract_mean(image, stats.mean_image).numpy()
    np.testing.assert_array_equal(eager, image - stats.mean_image)
    np.testing.assert_array_equal(
        eager, in_dataset(preprocessing.subtract_mean, image, stats.mean_image)
    )
    with pytest.raises(ValueError, match="mean_image"):
        preprocessing.subtract_mean(image[:CROP, :CROP], stats.mean_image)


def test_center_crop_matches_numpy():
    image = coordinate_image()
    offset = (SIZE - CROP) // 2
    expected = image[offset : offset + CROP, offset : offset + CROP]
    np.testing.assert_array_equal(preprocessing.center_crop(image).numpy(), expected)
    np.testing.assert_array_equal(in_dataset(preprocessing.center_crop, image), expected)


def test_ten_crop_matches_numpy_slicing():
    image = image_data.smooth_image(6, SIZE, SIZE).astype(np.float32)
    patches = preprocessing.ten_crop(image).numpy()
    c, m = (SIZE - CROP) // 2, SIZE - CROP
    expected = [
        image[c : c + CROP, c : c + CROP],
        image[:CROP, :CROP],
        image[:CROP, m:],
        image[m:, :CROP],
        image[m:, m:],
    ]
    expected += [p[:, ::-1] for p in expected]
    assert patches.shape == (10, CROP, CROP, 3)
    np.testing.assert_array_equal(patches, np.stack(expected))
    np.testing.assert_array_equal(patches, in_dataset(preprocessing.ten_crop, image))


def test_random_crop_and_flip_eager_equals_dataset():
    image = image_data.smooth_image(7, SIZE, SIZE).astype(np.float32)
    for s in range(5):
        seed = tf.constant([s, 42], tf.int64)
        np.testing.assert_array_equal(
            preprocessing.random_crop_and_flip(image, seed).numpy(),
            in_dataset(preprocessing.random_crop_and_flip, image, seed),
        )


def test_random_crops_cover_every_offset_and_both_flips():
    image = coordinate_image()
    seeds = tf.data.Dataset.range(600).map(lambda i: tf.stack([i, tf.constant(7, tf.int64)]))
    patches = seeds.map(lambda s: preprocessing.random_crop_and_flip(image, s)).batch(600)
    patches = next(iter(patches)).numpy()
    tops = patches[:, 0, 0, 0].astype(int)
    flipped = patches[:, 0, 0, 1] > patches[:, 0, -1, 1]
    lefts = np.where(flipped, patches[:, 0, -1, 1], patches[:, 0, 0, 1]).astype(int)
    limit = SIZE - CROP
    assert set(tops) == set(range(limit + 1))
    assert set(lefts) == set(range(limit + 1))
    assert 0.4 < flipped.mean() < 0.6
    for p, t, x, f in zip(patches[:50], tops, lefts, flipped):
        expected = image[t : t + CROP, x : x + CROP]
        np.testing.assert_array_equal(p, expected[:, ::-1] if f else expected)
    # All four corners, each with and without the flip: on a 3x3 grid of offsets.
    small = coordinate_image(8, 8)
    corners = set()
    for s in range(300):
        p = preprocessing.random_crop_and_flip(small, tf.constant([s, 1], tf.int64), crop=6).numpy()
        flip = p[0, 0, 1] > p[0, -1, 1]
        corners.add((int(p[0, 0, 0]), int(p[0, -1 if flip else 0, 1]), bool(flip)))
    assert {(t, x, f) for t in (0, 2) for x in (0, 2) for f in (False, True)} <= corners


def test_pca_lighting_noise_statistics():
    eigval, eigvec = stats_lib.IMAGENET_PCA.eigval, stats_lib.IMAGENET_PCA.eigvec
    image = np.zeros([4, 5, 3], np.float32)
    seed = tf.constant([3, 9], tf.int64)
    np.testing.assert_array_equal(
        preprocessing.pca_lighting(image, eigval, eigvec, seed).numpy(),
        in_dataset(lambda x, s: preprocessing.pca_lighting(x, eigval, eigvec, s), image, seed),
    )
    n = 4000
    seeds = tf.data.Dataset.range(n).map(lambda i: tf.stack([i, tf.constant(5, tf.int64)]))
    out = next(
        iter(seeds.map(lambda s: preprocessing.pca_lighting(image, eigval, eigvec, s)).batch(n))
    )
    out = out.numpy().astype(np.float64)
    # One offset per image, the same at every pixel; the image is 0-255, the PCA is for [0, 1].
    np.testing.assert_allclose(out, np.broadcast_to(out[:, :1, :1], out.shape), atol=1e-4)
    noise = out[:, 0, 0] / 255.0
    expected_cov = eigvec @ np.diag((0.1 * eigval.astype(np.float64)) ** 2) @ eigvec.T
    top = (0.1 * eigval[0]) ** 2
    np.testing.assert_allclose(noise.mean(0), 0.0, atol=4 * np.sqrt(top / n))
    np.testing.assert_allclose(np.cov(noise, rowvar=False), expected_cov, atol=0.08 * top)
    # Along each eigenvector the noise has standard deviation 0.1 * eigenvalue.
    np.testing.assert_allclose((noise @ eigvec).std(0), 0.1 * eigval, rtol=0.06)


def test_preprocess_for_eval_in_a_serving_function(stats):
    encoded = tf.io.encode_jpeg(image_data.smooth_image(8, 60, 90))
    serve = tf.function(
        lambda b: tf.map_fn(
            lambda e: preprocessing.preprocess_for_eval(e, stats), b, fn_output_signature=tf.float32
        ),
        input_signature=[tf.TensorSpec([None], tf.string)],
    )
    served = serve(tf.stack([encoded, encoded])).numpy()
    eager = preprocessing.preprocess_for_eval(encoded, stats).numpy()
    expected = preprocessing.center_crop(
        preprocessing.decode_and_center_crop(encoded).numpy() - stats.mean_image
    ).numpy()
    assert served.shape == (2, CROP, CROP, 3)
    np.testing.assert_array_equal(served[0], eager)
    np.testing.assert_array_equal(eager, expected)


def _paper_order(encoded, stats, seed):
    """The paper's steps one after the other: decode, mean, random crop and flip, PCA."""
    crop_seed, lighting_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    image = preprocessing.subtract_mean(
        preprocessing.decode_and_center_crop(encoded), stats.mean_image
    )
    image = preprocessing.random_crop_and_flip(image, crop_seed)
    return preprocessing.pca_lighting(image, stats.eigval, stats.eigvec, lighting_seed)


@pytest.mark.parametrize(
    "jpeg_args",
    [
        dict(quality=90),  # 4:2:0, what prepare writes by default
        dict(quality=95, chroma_downsampling=False),
        dict(quality=90, progressive=True),
    ],
)
def test_preprocess_for_train_of_a_256_jpeg_equals_the_paper_order(jpeg_args):
    # A 256x256 JPEG (a prepared image) is decoded only in its random window: libjpeg's
    # chroma upsampling at a window's edges must not change a value, at any offset.
    rng = np.random.default_rng(5)
    stats = stats_lib.Stats(
        rng.uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32),
        stats_lib.IMAGENET_PCA.eigval,
        stats_lib.IMAGENET_PCA.eigvec,
    )
    pixels = image_data.smooth_image(11, SIZE, SIZE)
    pixels = np.clip(pixels + rng.integers(-20, 20, pixels.shape), 0, 255).astype(np.uint8)
    encoded = tf.io.encode_jpeg(pixels, **jpeg_args)
    seeds = tf.stack([preprocessing.example_seed(1, 2, i) for i in range(120)])
    fast = tf.data.Dataset.from_tensor_slices(seeds).map(
        lambda s: preprocessing.preprocess_for_train(encoded, stats, s)
    )
    windows = set()
    for seed, got in zip(seeds, fast.as_numpy_iterator()):
        np.testing.assert_array_equal(got, _paper_order(encoded, stats, seed).numpy())
        crop_seed = tf.random.experimental.stateless_split(seed, 2)[0]
        top, left, flip = preprocessing.random_window(crop_seed, SIZE, SIZE)
        windows.add((int(top) % 16, int(left) % 16, bool(flip)))
    # Offsets at, just after and between the 16-pixel blocks of 4:2:0, mirrored or not.
    assert {(0, 0), (15, 15), (1, 1)} & {(t, x) for t, x, _ in windows}
    assert len({(t % 2, x % 2, f) for t, x, f in windows}) == 8


def test_preprocess_for_train_eager_equals_dataset_for_other_images(stats):
    # Not 256x256 or not a JPEG: the whole image is decoded (and resized), as before.
    images = [
        tf.io.encode_jpeg(image_data.smooth_image(3, 300, 280)),
        tf.io.encode_png(image_data.smooth_image(4, SIZE, SIZE)),
    ]
    for encoded in images:
        for i in range(4):
            seed = preprocessing.example_seed(0, 0, i)
            expected = _paper_order(encoded, stats, seed).numpy()
            np.testing.assert_array_equal(
                preprocessing.preprocess_for_train(encoded, stats, seed), expected
            )
            np.testing.assert_array_equal(
                in_dataset(
                    lambda e, s: preprocessing.preprocess_for_train(e, stats, s), encoded, seed
                ),
                expected,
            )
