"""Valid images of every format are read as Pillow reads them (GIF with light palettes and
animations, WebP lossy, lossless and animated), an over-limit image is a bad image named
with its size, and class folders whose names would break labels.txt are refused.

The files are written here with Pillow; each case is one that the decoders refused or
misread before (the 8-bit BMP palette check ran on every format, in int32 arithmetic
that wrapped, and TensorFlow cannot decode an animated WebP without an alpha flag).
"""

import io

import numpy as np
import pytest
import tensorflow as tf
import tiny
from PIL import Image
from PIL import features

import keras_alexnet
from keras_alexnet import errors
from keras_alexnet.data import bad_images
from keras_alexnet.data import folder_sources
from keras_alexnet.data import image_headers
from keras_alexnet.data import preprocessing
from keras_alexnet.data import stats as stats_lib
from keras_alexnet.runs import folder as run_dir
from keras_alexnet.serving import saved_model

pytestmark = pytest.mark.skipif(not features.check("webp"), reason="Pillow without WebP")

SIZE = 64


def _noise(seed, height=40, width=52, channels=3):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 4 + 1, width // 4 + 1, channels), dtype=np.uint8)
    mode = "RGBA" if channels == 4 else "RGB"
    return Image.fromarray(small, mode).resize((width, height), Image.BILINEAR)


def _encoded(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _light_palette_gif():
    """A GIF whose colour 1 is white: its header's bytes 14-17 read as a little-endian
    offset wrap negative in int32 (the palette check that ran on every file)."""
    palette = [0, 0, 0, 255, 255, 255, 200, 0, 0, 0, 200, 0, 0, 0, 200, 8, 0, 0, 90, 90, 90]
    palette += [160, 160, 160]
    indices = np.random.default_rng(1).integers(0, 8, (40, 52), dtype=np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette(palette)
    data = _encoded(image, "GIF", optimize=False)
    assert data[13:19] == bytes([0, 0, 0, 255, 255, 255]), data[:32]
    return data


def _large_lossy_webp():
    """A lossy WebP whose VP8 chunk size has bit 15 set (header byte 17 over 127)."""
    image = _noise(2, 256, 256).resize((512, 512))
    for quality in range(95, 40, -5):
        data = _encoded(image, "WEBP", quality=quality)
        if data[17] >= 128:
            return data
    pytest.fail("no quality gave a VP8 chunk of 32-64 KB")


def _animated(fmt, channels, **options):
    frames = [_noise(seed, channels=channels) for seed in (3, 4, 5)]
    return _encoded(frames[0], fmt, save_all=True, append_images=frames[1:], **options)


def _cases():
    """{name: (bytes, the largest difference allowed from Pillow's pixels)}."""
    return {
        "light_palette.gif": (_light_palette_gif(), 0),
        "animated.gif": (_animated("GIF", 3), 0),
        "lossy.webp": (_large_lossy_webp(), 0),
        "lossless.webp": (_encoded(_noise(6), "WEBP", lossless=True), 0),
        "animated.webp": (_animated("WEBP", 3, lossless=True), 0),
        "animated_alpha.webp": (_animated("WEBP", 4, lossless=True), 0),
        "animated_lossy.webp": (_animated("WEBP", 3, quality=80), 0),
        "rgb.png": (_encoded(_noise(7), "PNG"), 0),
        "rgb.bmp": (_encoded(_noise(8), "BMP"), 0),
        # TensorFlow's libjpeg and Pillow's round differently (and TensorFlow decodes the
        # central square only): JPEG-like tolerance.
        "photo.jpg": (_encoded(_noise(9), "JPEG", quality=90), 40),
    }


def _pillow_rgb(data):
    """The first frame, as `PIL.Image.open(f).convert("RGB")` gives it, as a PNG."""
    image = Image.open(io.BytesIO(data))
    image.seek(0)
    return _encoded(image.convert("RGB"), "PNG")


def test_every_format_decodes_to_pillows_first_frame_eagerly_and_in_tf_data():
    cases = _cases()
    names = sorted(cases)
    decode = lambda data: preprocessing.decode_and_center_crop(data, SIZE)  # noqa: E731
    dataset = tf.data.Dataset.from_tensor_slices([cases[n][0] for n in names]).map(decode)
    for name, in_data in zip(names, dataset.as_numpy_iterator()):
        data, tolerance = cases[name]
        eager = decode(data).numpy()
        want = decode(_pillow_rgb(data)).numpy()
        np.testing.assert_array_equal(eager, in_data, err_msg=name)
        difference = np.abs(eager - want)
        assert difference.max() <= tolerance, (name, difference.max())
        if tolerance:
            assert difference.mean() < 2, (name, difference.mean())


def test_the_serving_function_reads_every_format():
    tiny.register()
    model = keras_alexnet.AlexNet(4, variant="tiny")
    stats = stats_lib.Stats(np.full((256, 256, 3), 100.0), np.ones(3), np.eye(3))
    from_bytes, from_pixels = saved_model.serving_functions(model, stats, list("abcd"))
    cases = _cases()
    names = sorted(cases)
    served = tf.function(from_bytes)(tf.constant([cases[n][0] for n in names]))
    pixels = [
        preprocessing.preprocess_for_eval(_pillow_rgb(cases[n][0]), stats, crop=227) for n in names
    ]
    want = from_pixels(tf.stack(pixels))
    lossless = [i for i, n in enumerate(names) if not cases[n][1]]
    np.testing.assert_allclose(
        served["probabilities"].numpy()[lossless],
        want["probabilities"].numpy()[lossless],
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.fixture
def limit():
    """The pixel limit lowered to 100,000 for a test, restored after it."""
    before = image_headers.max_pixels()
    image_headers.set_max_pixels(100_000)
    yield "100,000"
    image_headers.set_max_pixels(before)


def test_an_over_limit_image_is_a_bad_image_named_with_its_size(tmp_path, limit):
    for label in ("a", "b"):
        (tmp_path / "train" / label).mkdir(parents=True)
        for i in range(3):
            _noise(10 + i).save(tmp_path / "train" / label / f"{i}.png")
    big = [tmp_path / "train" / "b" / name for name in ("big.jpg", "big.png")]
    _noise(20, 400, 300).save(big[0], quality=90)  # 120,000 pixels
    _noise(21, 300, 400).save(big[1])
    source = folder_sources.folder_source(str(tmp_path))
    assert source.num_train == 8
    # --on_bad_image=fail: a failed pass names the files.
    failed = dict(bad_images.undecodable(source, "train"))
    assert sorted(failed) == [str(path) for path in big], failed
    assert limit in failed[str(big[0])] and "300x400" in failed[str(big[0])], failed
    assert limit in failed[str(big[1])] and "400x300" in failed[str(big[1])], failed
    # --on_bad_image=skip: left out before the first step, with their reasons.
    kept, found = bad_images.check_decoding(source)
    assert sorted(path for path, _ in found) == sorted(failed) and kept.num_train == 6
    assert dict(found) == failed


@pytest.mark.parametrize("name", ["cat\nfish", "tab\there", "bell\x07", "line\u2028sep"])
def test_a_class_folder_with_a_control_character_is_refused_by_name(tmp_path, name):
    for label in ("ok", name):
        (tmp_path / "train" / label).mkdir(parents=True)
        _noise(30).save(tmp_path / "train" / label / "0.png")
    with pytest.raises(errors.InputError, match="class folder") as raised:
        folder_sources.folder_source(str(tmp_path))
    assert repr(str(tmp_path / "train" / name)) in str(raised.value)
    assert "\n" not in str(raised.value)
    with pytest.raises(errors.InputError, match="labels.txt"):
        run_dir.write_labels(str(tmp_path), ["ok", name])
    assert not (tmp_path / "labels.txt").exists()


def test_jpeg_xl_whose_size_is_not_read_is_refused_before_decoding():
    """TensorFlow's decode_image reads JPEG XL, whose header the size check does not parse."""
    for data in (b"\xff\x0a" + bytes(64), b"\0\0\0\x0cJXL \r\n\x87\n" + bytes(64)):
        with pytest.raises(tf.errors.InvalidArgumentError) as raised:
            preprocessing.decode_and_center_crop(data)
        assert bad_images.error_summary(raised.value.message) == image_headers.JPEG_XL
