"""stats: the mean image and PCA against NumPy, the file round trip, the sample."""

import numpy as np
import pytest
import tensorflow as tf

from keras_alexnet.data import preprocessing
from keras_alexnet.data import stats as stats_lib


def test_compute_stats_matches_numpy_and_round_trips(source, tmp_path):
    stats = stats_lib.compute_stats(source, max_images=1000, batch_size=7)
    assert stats.num_images == source.num_train
    refs = [r for r, _ in source.examples("train").as_numpy_iterator()]
    images = np.stack(
        [preprocessing.decode_and_center_crop(tf.io.read_file(r)).numpy() for r in refs]
    ).astype(np.float64)
    np.testing.assert_allclose(stats.mean_image, images.mean(0), rtol=1e-5, atol=1e-3)
    pixels = images.reshape(-1, 3) / 255.0
    eigval, eigvec = np.linalg.eigh(np.cov(pixels, rowvar=False, bias=True))
    np.testing.assert_allclose(stats.eigval, eigval[::-1], rtol=1e-4)
    # Eigenvectors are defined up to sign.
    np.testing.assert_allclose(np.abs(stats.eigvec), np.abs(eigvec[:, ::-1]), atol=1e-3)
    path = tmp_path / "stats.npz"
    stats.save(path)
    loaded = stats_lib.Stats.load(path)
    np.testing.assert_array_equal(loaded.mean_image, stats.mean_image)
    np.testing.assert_array_equal(loaded.eigvec, stats.eigvec)
    assert loaded.num_images == stats.num_images
    with pytest.raises(ValueError, match="missing.npz"):
        stats_lib.Stats.load(tmp_path / "missing.npz")


def test_compute_stats_samples_max_images(source):
    stats = stats_lib.compute_stats(source, max_images=5, seed=4, pca=stats_lib.IMAGENET_PCA)
    assert stats.num_images == 5
    np.testing.assert_array_equal(stats.eigval, stats_lib.IMAGENET_PCA.eigval)
