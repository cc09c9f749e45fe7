"""preprocessing: each function against NumPy, and eagerly against inside tf.data."""

import image_data
import numpy as np
import pytest
import tensorflow as tf

from keras_alexnet.data import preprocessing
from keras_alexnet.data import stats as stats_lib

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


def test_crop_and_flip_matches_numpy_and_dataset():
    image = coordinate_image()
    for top, left, flip in [(0, 0, False), (29, 0, True), (3, 29, False), (17, 5, True)]:
        expected = image[top : top + CROP, left : left + CROP]
        expected = expected[:, ::-1] if flip else expected
        args = (image, np.int32(top), np.int32(left), flip)
        np.testing.assert_array_equal(preprocessing.crop_and_flip(*args).numpy(), expected)
        np.testing.assert_array_equal(in_dataset(preprocessing.crop_and_flip, *args), expected)


def test_random_draws_are_a_function_of_seed_epoch_and_index_only():
    index = tf.range(200, dtype=tf.int64)
    draws = preprocessing.random_draws(3, 1, index).numpy()
    assert draws.shape == (200, preprocessing.DRAWS) and draws.dtype == np.float64
    assert 0 < draws.min() and draws.max() < 1
    # The same numbers one example at a time, in another order, inside tf.data.
    shuffled = np.random.default_rng(0).permutation(200)
    one_by_one = tf.data.Dataset.from_tensor_slices(shuffled).map(
        lambda i: preprocessing.random_draws(3, tf.constant(1, tf.int64), [i])[0]
    )
    np.testing.assert_array_equal(np.stack(list(one_by_one.as_numpy_iterator())), draws[shuffled])
    # Per-example epochs and seeds, as a window that straddles two epochs gives them.
    mixed = preprocessing.random_draws([3, 3], [1, 2], [5, 5]).numpy()
    np.testing.assert_array_equal(mixed[0], draws[5])
    np.testing.assert_array_equal(mixed[1], preprocessing.random_draws(3, 2, [5]).numpy()[0])
    # Another seed, epoch or index: other numbers (seeds past 2^32 included).
    others = [(4, 1, index), (3, 2, index), (3 + 2**32, 1, index), (3, 1, index + 200)]
    for seed, epoch, i in others:
        other = preprocessing.random_draws(seed, epoch, i).numpy()
        assert np.mean(other == draws) < 0.01


def test_random_draws_look_uniform_and_independent():
    n = 20000
    draws = preprocessing.random_draws(0, 0, tf.range(n, dtype=tf.int64)).numpy()
    # Each column: uniform by a Kolmogorov-Smirnov distance (1% critical value 1.63/sqrt(n)).
    for column in draws.T:
        ks = np.max(np.abs(np.sort(column) - (np.arange(n) + 0.5) / n))
        assert ks < 1.63 / np.sqrt(n)
    # Neither the draws of an example nor those of neighbouring examples are correlated.
    pairs = [draws[:, 0], draws[:, 1], draws[:, 5], np.roll(draws[:, 0], 1)]
    corr = np.corrcoef(np.stack(pairs))
    assert np.max(np.abs(corr - np.eye(4))) < 4 / np.sqrt(n)


def test_train_augmentation_covers_every_offset_and_both_flips():
    n = 3000
    drawn = preprocessing.train_augmentation(7, 0, tf.range(n, dtype=tf.int64))
    tops, lefts = drawn["top"].numpy(), drawn["left"].numpy()
    flips = drawn["flip"].numpy()
    limit = SIZE - CROP
    for values in (tops, lefts):
        counts = np.bincount(values, minlength=limit + 1)
        assert len(counts) == limit + 1 and counts.min() > 0  # every offset, none beyond
        # Chi-square over the 30 offsets, 29 degrees of freedom: 1% critical value 49.6.
        expected = n / (limit + 1)
        assert np.sum((counts - expected) ** 2 / expected) < 49.6
    assert abs(flips.mean() - 0.5) < 3 * 0.5 / np.sqrt(n)
    # All four corners, with and without the flip, on a 3x3 grid of offsets.
    small = preprocessing.train_augmentation(1, 0, tf.range(300, dtype=tf.int64), size=8, crop=6)
    corners = set(zip(*(small[k].numpy().tolist() for k in ("top", "left", "flip"))))
    assert {(t, x, f) for t in (0, 2) for x in (0, 2) for f in (False, True)} <= corners


def test_pca_noise_statistics():
    eigval, eigvec = stats_lib.IMAGENET_PCA.eigval, stats_lib.IMAGENET_PCA.eigvec
    n = 4000
    alpha = preprocessing.train_augmentation(5, 0, tf.range(n, dtype=tf.int64))["alpha"]
    offsets = preprocessing.pca_offset(alpha, eigval, eigvec).numpy().astype(np.float64)
    # The paper's formula in NumPy, image by image.
    expected = 255.0 * (eigvec.astype(np.float64) @ (alpha.numpy() * eigval).T).T
    np.testing.assert_allclose(offsets, expected, rtol=1e-5, atol=1e-4)
    # pca_lighting adds one offset to every pixel, eagerly and in tf.data alike.
    image = np.zeros([4, 5, 3], np.float32)
    lit = preprocessing.pca_lighting(image, eigval, eigvec, alpha[0]).numpy()
    np.testing.assert_array_equal(lit, np.broadcast_to(offsets[0].astype(np.float32), lit.shape))
    np.testing.assert_array_equal(
        lit,
        in_dataset(lambda x, a: preprocessing.pca_lighting(x, eigval, eigvec, a), image, alpha[0]),
    )
    noise = offsets / 255.0  # the PCA describes RGB in [0, 1]
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


def _paper_order(encoded, stats, drawn):
    """The paper's steps one after the other: decode, mean, crop and flip, PCA."""
    image = preprocessing.subtract_mean(
        preprocessing.decode_and_center_crop(encoded), stats.mean_image
    )
    image = preprocessing.crop_and_flip(image, drawn["top"], drawn["left"], drawn["flip"])
    return preprocessing.pca_lighting(image, stats.eigval, stats.eigvec, drawn["alpha"])


def _drawn(seed, epoch, index):
    drawn = preprocessing.train_augmentation(seed, epoch, [index])
    return {key: value[0] for key, value in drawn.items()}


@pytest.mark.parametrize(
    "jpeg_args",
    [
        dict(quality=90),  # 4:2:0, what prepare writes by default
        dict(quality=95, chroma_downsampling=False),
        dict(quality=90, progressive=True),
    ],
)
def test_a_256_jpeg_by_every_road_equals_the_paper_order(jpeg_args):
    # A 256x256 JPEG (a prepared image): preprocess_for_train, and the raw patches of
    # train_patch(all_jpeg=True) finished by batch (op by op and compiled with XLA, as the
    # training step does), give the paper order's values bit for bit.
    rng = np.random.default_rng(5)
    stats = stats_lib.Stats(
        rng.uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32),
        stats_lib.IMAGENET_PCA.eigval,
        stats_lib.IMAGENET_PCA.eigvec,
    )
    pixels = image_data.smooth_image(11, SIZE, SIZE)
    pixels = np.clip(pixels + rng.integers(-20, 20, pixels.shape), 0, 255).astype(np.uint8)
    encoded = tf.io.encode_jpeg(pixels, **jpeg_args)
    n = 60
    index = tf.range(n, dtype=tf.int64)
    one_by_one = tf.data.Dataset.from_tensor_slices(index).map(
        lambda i: preprocessing.preprocess_for_train(encoded, stats, 1, 2, i)
    )
    drawn = preprocessing.train_augmentation(1, 2, index)
    patches = tf.data.Dataset.from_tensor_slices(drawn).map(
        lambda d: preprocessing.train_patch(encoded, d, all_jpeg=True)
    )
    patches = next(iter(patches.batch(n)))
    assert patches.dtype == tf.uint8
    lighting = preprocessing.pca_offset(drawn["alpha"], stats.eigval, stats.eigvec)
    batch = dict(drawn, patches=patches, lighting=lighting)
    compiled = preprocessing.train_batch_finisher(stats)(batch).numpy()  # XLA, as in training
    batch = preprocessing.finish_train_batch(batch, stats).numpy()
    np.testing.assert_array_equal(compiled, batch)
    cases = set()
    for i, got in enumerate(one_by_one.as_numpy_iterator()):
        expected = _paper_order(encoded, stats, _drawn(1, 2, i)).numpy()
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(batch[i], expected)
        cases.add(bool(drawn["flip"][i]))
    assert cases == {False, True}


def test_preprocess_for_train_eager_equals_dataset_for_other_images(stats):
    # Not 256x256 or not a JPEG: the whole image is decoded (and resized), as before.
    images = [
        tf.io.encode_jpeg(image_data.smooth_image(3, 300, 280)),
        tf.io.encode_png(image_data.smooth_image(4, SIZE, SIZE)),
    ]
    for encoded in images:
        for i in range(4):
            expected = _paper_order(encoded, stats, _drawn(0, 0, i)).numpy()
            np.testing.assert_array_equal(
                preprocessing.preprocess_for_train(encoded, stats, 0, 0, i), expected
            )
            np.testing.assert_array_equal(
                in_dataset(
                    lambda e, i: preprocessing.preprocess_for_train(e, stats, 0, 0, i),
                    encoded,
                    np.int64(i),
                ),
                expected,
            )
            # As raw float32 patches, finished by batch.
            patch = preprocessing.train_patch(encoded, _drawn(0, 0, i))
            assert patch.dtype == tf.float32
            drawn = _drawn(0, 0, i)
            lighting = preprocessing.pca_offset(drawn["alpha"], stats.eigval, stats.eigvec)
            batch = dict(drawn, patches=patch, lighting=lighting)
            batch = {k: v[tf.newaxis] for k, v in batch.items()}
            finished = preprocessing.finish_train_batch(batch, stats)[0]
            np.testing.assert_array_equal(finished, expected)
