"""input_pipeline: preprocessing against NumPy, eager against tf.data, order, resume, sources."""

import io
import os
import re
import tarfile

import numpy as np
import pytest
import tensorflow as tf
import tiny

from keras_alexnet import input_pipeline as ip

SIZE, CROP = ip.IMAGE_SIZE, ip.CROP_SIZE


def smooth_image(seed, height, width):
    """A uint8 RGB image with structure everywhere (so every crop offset is distinguishable)."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, size=(height // 8 + 1, width // 8 + 1, 3)).astype(np.float32)
    image = tf.image.resize(small, [height, width]).numpy()
    image += rng.normal(0, 8, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_jpeg(path, seed, height=48, width=64):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(tf.io.encode_jpeg(smooth_image(seed, height, width), quality=90).numpy())


def write_png(path, seed, height=48, width=64):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(tf.io.encode_png(smooth_image(seed, height, width)).numpy())


def make_folder(root, classes=("cat", "dog", "fox"), train_per_class=8, val_per_class=3):
    seed = 0
    for split, per_class in (("train", train_per_class), ("validation", val_per_class)):
        for c in classes:
            for i in range(per_class):
                seed += 1
                # Landscape and portrait images, so both central-square offsets are used.
                h, w = (48, 64) if seed % 2 else (64, 40)
                write_jpeg(os.path.join(root, split, c, f"{i:03d}.jpg"), seed, h, w)
    write_png(os.path.join(root, "train", classes[0], "png_image.png"), 999)
    return str(root)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def source(folder):
    return ip.folder_source(folder)


@pytest.fixture(scope="module")
def stats():
    rng = np.random.default_rng(1)
    mean = rng.uniform(80, 160, size=(SIZE, SIZE, 3)).astype(np.float32)
    return ip.Stats(mean, ip.IMAGENET_PCA.eigval, ip.IMAGENET_PCA.eigvec)


def in_dataset(fn, *args):
    """Runs fn(*args) inside a tf.data map (graph mode) and returns the NumPy result."""
    ds = tf.data.Dataset.from_tensors(tuple(tf.convert_to_tensor(a) for a in args))
    return next(iter(ds.map(lambda *a: fn(*a)))).numpy()


def all_batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def coordinate_image(height=SIZE, width=SIZE):
    """pixel (y, x) = (y, x, 0): a crop's first pixel tells its offset, its order the flip."""
    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([ys, xs, np.zeros_like(ys)], -1).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Preprocessing functions.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("height, width", [(48, 64), (64, 40), (600, 400)])
def test_decode_and_center_crop_png_matches_numpy_and_dataset(height, width):
    image = smooth_image(3, height, width)
    encoded = tf.io.encode_png(image)
    eager = ip.decode_and_center_crop(encoded).numpy()
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side].astype(np.float32)
    reference = tf.image.resize(square, [SIZE, SIZE], antialias=side > 2 * SIZE).numpy()
    assert eager.shape == (SIZE, SIZE, 3) and eager.dtype == np.float32
    np.testing.assert_array_equal(eager, reference)
    np.testing.assert_array_equal(eager, in_dataset(ip.decode_and_center_crop, encoded))


@pytest.mark.parametrize("height, width", [(48, 64), (64, 40), (375, 500)])
def test_decode_and_center_crop_jpeg_decodes_only_the_central_square(height, width):
    encoded = tf.io.encode_jpeg(smooth_image(4, height, width), quality=95)
    eager = ip.decode_and_center_crop(encoded).numpy()
    full = tf.io.decode_jpeg(encoded, channels=3).numpy()
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = full[top : top + side, left : left + side].astype(np.float32)
    reference = tf.image.resize(square, [SIZE, SIZE]).numpy()
    # decode_and_crop_jpeg may upsample chroma differently at the crop's edge: a few levels.
    assert np.abs(eager - reference).mean() < 1.0
    assert eager.min() >= 0 and eager.max() <= 255
    np.testing.assert_array_equal(eager, in_dataset(ip.decode_and_center_crop, encoded))


def test_subtract_mean_matches_numpy(stats):
    image = smooth_image(5, SIZE, SIZE).astype(np.float32)
    eager = ip.subtract_mean(image, stats.mean_image).numpy()
    np.testing.assert_array_equal(eager, image - stats.mean_image)
    np.testing.assert_array_equal(eager, in_dataset(ip.subtract_mean, image, stats.mean_image))
    with pytest.raises(ValueError, match="mean_image"):
        ip.subtract_mean(image[:CROP, :CROP], stats.mean_image)


def test_center_crop_matches_numpy():
    image = coordinate_image()
    offset = (SIZE - CROP) // 2
    expected = image[offset : offset + CROP, offset : offset + CROP]
    np.testing.assert_array_equal(ip.center_crop(image).numpy(), expected)
    np.testing.assert_array_equal(in_dataset(ip.center_crop, image), expected)


def test_ten_crop_matches_numpy_slicing():
    image = smooth_image(6, SIZE, SIZE).astype(np.float32)
    patches = ip.ten_crop(image).numpy()
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
    np.testing.assert_array_equal(patches, in_dataset(ip.ten_crop, image))


def test_random_crop_and_flip_eager_equals_dataset():
    image = smooth_image(7, SIZE, SIZE).astype(np.float32)
    for s in range(5):
        seed = tf.constant([s, 42], tf.int64)
        np.testing.assert_array_equal(
            ip.random_crop_and_flip(image, seed).numpy(),
            in_dataset(ip.random_crop_and_flip, image, seed),
        )


def test_random_crops_cover_every_offset_and_both_flips():
    image = coordinate_image()
    seeds = tf.data.Dataset.range(600).map(lambda i: tf.stack([i, tf.constant(7, tf.int64)]))
    patches = seeds.map(lambda s: ip.random_crop_and_flip(image, s)).batch(600)
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
        p = ip.random_crop_and_flip(small, tf.constant([s, 1], tf.int64), crop=6).numpy()
        flip = p[0, 0, 1] > p[0, -1, 1]
        corners.add((int(p[0, 0, 0]), int(p[0, -1 if flip else 0, 1]), bool(flip)))
    assert {(t, x, f) for t in (0, 2) for x in (0, 2) for f in (False, True)} <= corners


def test_pca_lighting_noise_statistics():
    eigval, eigvec = ip.IMAGENET_PCA.eigval, ip.IMAGENET_PCA.eigvec
    image = np.zeros([4, 5, 3], np.float32)
    seed = tf.constant([3, 9], tf.int64)
    np.testing.assert_array_equal(
        ip.pca_lighting(image, eigval, eigvec, seed).numpy(),
        in_dataset(lambda x, s: ip.pca_lighting(x, eigval, eigvec, s), image, seed),
    )
    n = 4000
    seeds = tf.data.Dataset.range(n).map(lambda i: tf.stack([i, tf.constant(5, tf.int64)]))
    out = next(iter(seeds.map(lambda s: ip.pca_lighting(image, eigval, eigvec, s)).batch(n)))
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
    encoded = tf.io.encode_jpeg(smooth_image(8, 60, 90))
    serve = tf.function(
        lambda b: tf.map_fn(
            lambda e: ip.preprocess_for_eval(e, stats), b, fn_output_signature=tf.float32
        ),
        input_signature=[tf.TensorSpec([None], tf.string)],
    )
    served = serve(tf.stack([encoded, encoded])).numpy()
    eager = ip.preprocess_for_eval(encoded, stats).numpy()
    expected = ip.center_crop(ip.decode_and_center_crop(encoded).numpy() - stats.mean_image).numpy()
    assert served.shape == (2, CROP, CROP, 3)
    np.testing.assert_array_equal(served[0], eager)
    np.testing.assert_array_equal(eager, expected)


# ---------------------------------------------------------------------------------------------
# Training and evaluation datasets.
# ---------------------------------------------------------------------------------------------


def epoch_refs(source, seed, epoch):
    ds = source.examples("train", order=(seed, epoch))
    return [r.decode() for r, _ in ds.as_numpy_iterator()]


def test_order_is_a_function_of_seed_and_epoch(source):
    assert epoch_refs(source, 0, 0) == epoch_refs(source, 0, 0)
    assert epoch_refs(source, 0, 0) != epoch_refs(source, 0, 1)
    assert epoch_refs(source, 0, 0) != epoch_refs(source, 1, 0)
    assert sorted(epoch_refs(source, 0, 1)) == sorted(epoch_refs(source, 0, 0))


def test_train_dataset_computes_the_pure_functions(source, stats):
    ds = ip.train_dataset(source, global_batch_size=4, stats=stats, seed=3, epoch=2)
    images, labels = next(iter(ds))
    assert images.shape == (4, CROP, CROP, 3) and images.dtype == tf.float32
    assert labels.dtype == tf.int32
    examples = list(source.examples("train", order=(3, 2)).take(4).as_numpy_iterator())
    for i, (ref, label) in enumerate(examples):
        expected = ip.preprocess_for_train(tf.io.read_file(ref), stats, ip.example_seed(3, 2, i))
        np.testing.assert_array_equal(images[i].numpy(), expected.numpy())
        assert labels[i] == label


def test_train_dataset_same_seed_same_batches(source, stats):
    def run(seed, epoch):
        return all_batches(
            ip.train_dataset(source, global_batch_size=5, stats=stats, seed=seed, epoch=epoch)
        )

    a, b, c = run(0, 0), run(0, 0), run(0, 1)
    assert len(a) == ip.steps_per_epoch(source, 5) == source.num_train // 5
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert any(not np.array_equal(ya, yc) for (_, ya), (_, yc) in zip(a, c))


@pytest.mark.parametrize("start_step, num_epochs", [(2, 1), (7, 2)])
def test_resume_yields_exactly_the_remaining_batches(source, stats, start_step, num_epochs):
    kwargs = dict(global_batch_size=4, stats=stats, seed=1, epoch=0, num_epochs=num_epochs)
    full = all_batches(ip.train_dataset(source, **kwargs))
    resumed = all_batches(ip.train_dataset(source, start_step=start_step, **kwargs))
    assert len(full) == num_epochs * ip.steps_per_epoch(source, 4)
    assert len(resumed) == len(full) - start_step
    for (xf, yf), (xr, yr) in zip(full[start_step:], resumed):
        np.testing.assert_array_equal(yf, yr)
        np.testing.assert_array_equal(xf, xr)


def test_two_input_pipelines_partition_each_step(source, stats):
    kwargs = dict(global_batch_size=4, stats=stats, seed=2, epoch=1)
    single = all_batches(ip.train_dataset(source, **kwargs))
    shards = [
        all_batches(
            ip.train_dataset(
                source,
                input_context=tf.distribute.InputContext(
                    num_input_pipelines=2, input_pipeline_id=i, num_replicas_in_sync=2
                ),
                **kwargs,
            )
        )
        for i in range(2)
    ]
    assert len(shards[0]) == len(shards[1]) == len(single)
    for (x, y), (x0, y0), (x1, y1) in zip(single, *shards):
        assert x0.shape == (2, CROP, CROP, 3)
        # Pipeline i holds positions i, i + 2, ... of the global step.
        np.testing.assert_array_equal(np.stack([x0, x1], 1).reshape(x.shape), x)
        np.testing.assert_array_equal(np.stack([y0, y1], 1).reshape(-1), y)


def test_train_dataset_rejects_bad_arguments(source, stats):
    with pytest.raises(ValueError, match="global_batch_size"):
        ip.train_dataset(source, global_batch_size=10_000, stats=stats, seed=0, epoch=0)
    with pytest.raises(ValueError, match="start_step"):
        ip.train_dataset(source, global_batch_size=4, stats=stats, seed=0, epoch=0, start_step=6)


def test_eval_dataset_keeps_every_example(source, stats):
    ds = ip.eval_dataset(source, batch_size=4, stats=stats)
    batches = all_batches(ds)
    labels = np.concatenate([y for _, y in batches])
    assert source.num_validation == 9 and len(labels) == 9
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    first_ref = next(iter(source.examples("validation")))[0]
    expected = ip.preprocess_for_eval(tf.io.read_file(first_ref), stats).numpy()
    np.testing.assert_array_equal(batches[0][0][0], expected)
    shards = [
        np.concatenate(
            [
                y
                for _, y in all_batches(
                    ip.eval_dataset(
                        source,
                        batch_size=4,
                        stats=stats,
                        input_context=tf.distribute.InputContext(2, i, 2),
                    )
                )
            ]
        )
        for i in range(2)
    ]
    assert sorted(np.concatenate(shards).tolist()) == sorted(labels.tolist())


def test_eval_dataset_ten_crops(source, stats):
    images, labels = next(iter(ip.eval_dataset(source, batch_size=2, stats=stats, crops="ten")))
    assert images.shape == (2, 10, CROP, CROP, 3)
    ref = next(iter(source.examples("validation")))[0]
    image = ip.decode_and_center_crop(tf.io.read_file(ref)).numpy() - stats.mean_image
    np.testing.assert_array_equal(images[0].numpy(), ip.ten_crop(image).numpy())
    with pytest.raises(ValueError, match="crops"):
        ip.eval_dataset(source, batch_size=2, stats=stats, crops="five")


# ---------------------------------------------------------------------------------------------
# Statistics.
# ---------------------------------------------------------------------------------------------


def test_compute_stats_matches_numpy_and_round_trips(source, tmp_path):
    stats = ip.compute_stats(source, max_images=1000, batch_size=7)
    assert stats.num_images == source.num_train
    refs = [r for r, _ in source.examples("train").as_numpy_iterator()]
    images = np.stack([ip.decode_and_center_crop(tf.io.read_file(r)).numpy() for r in refs]).astype(
        np.float64
    )
    np.testing.assert_allclose(stats.mean_image, images.mean(0), rtol=1e-5, atol=1e-3)
    pixels = images.reshape(-1, 3) / 255.0
    eigval, eigvec = np.linalg.eigh(np.cov(pixels, rowvar=False, bias=True))
    np.testing.assert_allclose(stats.eigval, eigval[::-1], rtol=1e-4)
    # Eigenvectors are defined up to sign.
    np.testing.assert_allclose(np.abs(stats.eigvec), np.abs(eigvec[:, ::-1]), atol=1e-3)
    path = tmp_path / "stats.npz"
    stats.save(path)
    loaded = ip.Stats.load(path)
    np.testing.assert_array_equal(loaded.mean_image, stats.mean_image)
    np.testing.assert_array_equal(loaded.eigvec, stats.eigvec)
    assert loaded.num_images == stats.num_images
    with pytest.raises(ValueError, match="missing.npz"):
        ip.Stats.load(tmp_path / "missing.npz")


def test_compute_stats_samples_max_images(source):
    stats = ip.compute_stats(source, max_images=5, seed=4, pca=ip.IMAGENET_PCA)
    assert stats.num_images == 5
    np.testing.assert_array_equal(stats.eigval, ip.IMAGENET_PCA.eigval)


# ---------------------------------------------------------------------------------------------
# Folder source: errors and bad files.
# ---------------------------------------------------------------------------------------------


def test_folder_source_lists_classes_and_counts(source, folder):
    assert source.class_names == ("cat", "dog", "fox")
    assert source.num_train == 25 and source.num_validation == 9
    assert source.bad_files == ()
    assert source.name == f"folder:{folder}"


def test_folder_source_errors_name_the_path(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(ValueError, match=re.escape(str(missing))):
        ip.folder_source(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"empty.*{re.escape(str(empty))}"):
        ip.folder_source(empty)
    no_train = tmp_path / "no_train"
    (no_train / "validation" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match=re.escape(str(no_train / "train"))):
        ip.folder_source(no_train)
    no_images = tmp_path / "no_images"
    (no_images / "train" / "a").mkdir(parents=True)
    (no_images / "train" / "a" / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=re.escape(str(no_images))):
        ip.folder_source(no_images)
    with pytest.raises(ValueError, match="on_bad_image"):
        ip.folder_source(tmp_path, on_bad_image="ignore")


def test_bad_files_are_found_skipped_or_fatal(tmp_path):
    root = tmp_path / "bad"
    make_folder(root, classes=("a", "b"), train_per_class=3, val_per_class=1)
    good = (root / "train" / "a" / "000.jpg").read_bytes()
    corrupt = bytearray(good)
    corrupt[2:40] = bytes(38)  # The marker segments after the start marker are destroyed.
    (root / "train" / "a" / "corrupt.jpg").write_bytes(bytes(corrupt))
    (root / "train" / "b" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "train" / "b" / "text.jpg").write_text("<html>not an image</html>")
    (root / "train" / "c_empty").mkdir()
    png = (root / "train" / "a" / "png_image.png").read_bytes()
    (root / "validation" / "a" / "cut.png").write_bytes(png[:-20])

    source = ip.folder_source(root, on_bad_image="skip")
    reasons = {os.path.basename(p): r for p, r in source.bad_files}
    assert set(reasons) == {"corrupt.jpg", "truncated.jpg", "text.jpg", "c_empty", "cut.png"}
    assert "corrupt JPEG" in reasons["corrupt.jpg"]
    assert "truncated JPEG" in reasons["truncated.jpg"]
    assert "not a JPEG, PNG, BMP, GIF or WebP" in reasons["text.jpg"]
    assert "empty class folder" in reasons["c_empty"]
    assert source.class_names == ("a", "b", "c_empty")
    assert source.num_train == 7 and source.num_validation == 2
    assert ip.check_bad_files(source.bad_files, "skip") == 5
    # The kept files all decode.
    for ref, _ in source.examples("train").as_numpy_iterator():
        ip.decode_and_center_crop(tf.io.read_file(ref))
    with pytest.raises(ValueError, match="corrupt.jpg"):
        ip.folder_source(root, on_bad_image="fail")


def test_image_file_problem_accepts_good_files(tmp_path):
    write_jpeg(str(tmp_path / "a.JPEG"), 1)
    write_png(str(tmp_path / "b.png"), 2)
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert ip.image_file_problem(str(tmp_path / "a.JPEG")) is None
    assert ip.image_file_problem(str(tmp_path / "b.png")) is None
    assert ip.image_file_problem(str(tmp_path / "empty.jpg")) == "empty file"


@pytest.mark.parametrize("pipelines", [1, 2])
def test_undecodable_in_step_names_the_file_the_pipelines_fail_on(tmp_path, stats, pipelines):
    root = make_folder(tmp_path / "f", classes=("a", "b"), train_per_class=6, val_per_class=1)
    damaged = tmp_path / "f" / "train" / "b" / "damaged.png"
    damaged.write_bytes(tiny.damaged_png())
    source = ip.folder_source(root)
    assert source.num_train == 14  # 7 steps of 2: no example is dropped
    # Which step fails, found by running the real pipelines (each its share of the batch).
    failed = set()
    for pipeline_id in range(pipelines):
        context = tf.distribute.InputContext(pipelines, pipeline_id, pipelines)
        batches = iter(
            ip.train_dataset(
                source, global_batch_size=2, stats=stats, seed=3, epoch=1, input_context=context
            )
        )
        for step in range(7):
            try:
                next(batches)
            except tf.errors.InvalidArgumentError:
                failed.add(step)
                break
    assert len(failed) == 1
    for step in range(7):
        bad = ip.undecodable_in_step(source, seed=3, epoch=1, step=step, global_batch_size=2)
        if step in failed:
            assert [name for name, _ in bad] == [str(damaged)]
            assert "PNG" in bad[0][1] and "function_node" not in bad[0][1]
        else:
            assert bad == []
    assert [name for name, _ in ip.undecodable(source, "train")] == [str(damaged)]


# Other formats users' folders hold, written by Pillow (an independent encoder and decoder).
OTHER_FORMATS = [
    ("BMP", "RGB", {}),
    ("BMP", "RGBA", {}),
    ("BMP", "L", {}),
    ("GIF", "P", {}),
    ("WEBP", "RGB", {"lossless": True}),
    ("PNG", "LA", {}),
]


def pillow_bytes(fmt, mode, seed=0, size=64, **kwargs):
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt, mode, kwargs", OTHER_FORMATS)
def test_other_formats_are_accepted_and_decode_as_pillow_does(tmp_path, fmt, mode, kwargs):
    from PIL import Image

    data = pillow_bytes(fmt, mode, **kwargs)
    path = tmp_path / f"image.{fmt.upper()}"  # names in upper case too
    path.write_bytes(data)
    assert ip.image_file_problem(str(path)) is None
    # A 64x64 image at size 64: no crop, no resize, so the pixels are the decoded ones.
    decoded = ip.decode_and_center_crop(tf.constant(data), 64).numpy()
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float32)
    np.testing.assert_array_equal(decoded, expected)


def test_other_formats_that_would_fail_are_found(tmp_path):
    bmp = pillow_bytes("BMP", "RGB")
    gif = pillow_bytes("GIF", "P")
    webp = pillow_bytes("WEBP", "RGB", lossless=True)
    cases = {
        "cut.bmp": (bmp[:-1], "corrupt BMP"),
        "long.bmp": (bmp + bytes(3), "corrupt BMP"),
        "palette.bmp": (pillow_bytes("BMP", "P"), "colour palette"),
        "one_bit.bmp": (pillow_bytes("BMP", "1"), "cannot read (1-bit"),
        "cut.gif": (gif[: len(gif) // 2], "truncated GIF"),
        "cut.webp": (webp[: len(webp) // 2], "truncated WebP"),
        "webp_is_text.webp": (b"RIFF....WEBX", "not a JPEG, PNG, BMP, GIF or WebP"),
    }
    for name, (data, reason) in cases.items():
        (tmp_path / name).write_bytes(data)
        problem = ip.image_file_problem(str(tmp_path / name))
        assert problem is not None and reason in problem, (name, problem)
        # What the check refuses, TensorFlow would fail on or decode in the wrong colours.
        if name != "palette.bmp":
            with pytest.raises(tf.errors.InvalidArgumentError):
                ip.decode_and_center_crop(tf.constant(data), 64)


def test_folder_source_reads_every_format(tmp_path, stats):
    root = tmp_path / "mixed"
    make_folder(root, classes=("a", "b"), train_per_class=2, val_per_class=1)
    for i, (fmt, mode, kwargs) in enumerate(OTHER_FORMATS):
        (root / "train" / "b" / f"other{i}.{fmt.lower()}").write_bytes(
            pillow_bytes(fmt, mode, seed=i, **kwargs)
        )
    source = ip.folder_source(root, on_bad_image="fail")
    assert source.num_train == 2 * 2 + 1 + len(OTHER_FORMATS)
    batches = ip.train_dataset(
        source, global_batch_size=source.num_train, stats=stats, seed=0, epoch=0
    )
    images, _ = next(iter(batches))
    assert images.shape == (source.num_train, 227, 227, 3)


# ---------------------------------------------------------------------------------------------
# TFDS source: imagenet2012 from tiny ILSVRC2012-shaped tar files.
# ---------------------------------------------------------------------------------------------

SYNSETS = ("n01440764", "n01443537", "n01484850")


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_ilsvrc_tars(manual_dir, train_per_synset=2, num_val=4):
    """ILSVRC2012_img_train.tar (one tar per synset) and ILSVRC2012_img_val.tar."""
    os.makedirs(manual_dir, exist_ok=True)
    encode = lambda seed: tf.io.encode_jpeg(smooth_image(seed, 40, 56)).numpy()  # noqa: E731
    with tarfile.open(os.path.join(manual_dir, "ILSVRC2012_img_train.tar"), "w") as outer:
        for k, synset in enumerate(SYNSETS):
            inner_bytes = io.BytesIO()
            with tarfile.open(fileobj=inner_bytes, mode="w") as inner:
                for j in range(train_per_synset):
                    _add(inner, f"{synset}_{j}.JPEG", encode(10 * k + j))
            _add(outer, f"{synset}.tar", inner_bytes.getvalue())
    with tarfile.open(os.path.join(manual_dir, "ILSVRC2012_img_val.tar"), "w") as val:
        for j in range(num_val):
            _add(val, f"ILSVRC2012_val_{j + 1:08d}.JPEG", encode(100 + j))


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfds")
    manual = str(root / "manual")
    write_ilsvrc_tars(manual)
    return ip.tfds_source("imagenet2012", str(root / "data"), manual_dir=manual), root


def test_imagenet2012_from_manual_tars(imagenet, stats):
    import tensorflow_datasets as tfds

    source, root = imagenet
    assert source.kind == "tfds" and len(source.class_names) == 1000
    assert source.num_train == 6 and source.num_validation == 4
    train_labels = sorted(int(y) for _, y in source.examples("train").as_numpy_iterator())
    assert [source.class_names[y] for y in train_labels] == sorted(list(SYNSETS) * 2)
    # Validation labels come from TFDS's list, in the sorted order of the file names.
    labels_file = tfds.core.tfds_path("datasets/imagenet2012/validation_labels.txt")
    expected = sorted(labels_file.read_text().split()[:4])
    refs_labels = list(source.examples("validation").as_numpy_iterator())
    assert sorted(source.class_names[y] for _, y in refs_labels) == expected
    assert all(tf.io.is_jpeg(ref) for ref, _ in refs_labels)  # Still encoded: SkipDecoding.
    # A second call reuses the prepared data; the pipelines run on it.
    again = ip.tfds_source("imagenet2012:5.1.0", str(root / "data"))
    assert again.num_train == 6
    batches = all_batches(
        ip.train_dataset(again, global_batch_size=2, stats=stats, seed=0, epoch=0)
    )
    assert len(batches) == 3 and batches[0][0].shape == (2, CROP, CROP, 3)
    resumed = all_batches(
        ip.train_dataset(again, global_batch_size=2, stats=stats, seed=0, epoch=0, start_step=1)
    )
    np.testing.assert_array_equal(resumed[0][0], batches[1][0])
    evaluated = all_batches(ip.eval_dataset(again, batch_size=3, stats=stats))
    assert sum(len(y) for _, y in evaluated) == 4
    assert ip.compute_stats(again, max_images=3).eigval.tolist() == ip.IMAGENET_PCA.eigval.tolist()


def test_tfds_source_errors_name_the_path(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "ILSVRC2012_img_train.tar").write_bytes(b"")
    with pytest.raises(ValueError, match=f"ILSVRC2012_img_val.tar.*{re.escape(str(manual))}"):
        ip.tfds_source("imagenet2012", str(tmp_path / "data"), manual_dir=str(manual))
    with pytest.raises(ValueError, match="imagenet2012 only"):
        ip.tfds_source("mnist", str(tmp_path), manual_dir=str(manual))
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "nowhere"))):
        ip.tfds_source("mnist", str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=f"not prepared in {re.escape(str(tmp_path))}"):
        ip.tfds_source("mnist", str(tmp_path))


def test_input_benchmark_runs(tmp_path):
    from keras_alexnet import input_benchmark

    input_benchmark.write_benchmark_images(str(tmp_path), 12, image_size=(60, 80))
    result = input_benchmark.run_benchmark(str(tmp_path), batch_size=4, epochs=2, repeats=1)
    assert result["num_files"] == 12
    assert result["plain"] > 0 and result["full"] > 0 and result["ratio"] > 0


def test_many_epochs_equal_the_epochs_one_by_one(source, stats):
    kwargs = dict(global_batch_size=6, stats=stats, seed=5)
    joined = all_batches(ip.train_dataset(source, epoch=1, num_epochs=3, **kwargs))
    separate = [
        b for e in (1, 2, 3) for b in all_batches(ip.train_dataset(source, epoch=e, **kwargs))
    ]
    assert len(joined) == len(separate) == 3 * ip.steps_per_epoch(source, 6)
    for (xj, yj), (xs, ys) in zip(joined, separate):
        np.testing.assert_array_equal(yj, ys)
        np.testing.assert_array_equal(xj, xs)
