"""image_files: the cheap checks accept what TensorFlow decodes and find what it fails on."""

import io

import image_data
import numpy as np
import pytest
import tensorflow as tf

from keras_alexnet.data import image_files
from keras_alexnet.data import preprocessing


def test_image_file_problem_accepts_good_files(tmp_path):
    image_data.write_jpeg(str(tmp_path / "a.JPEG"), 1)
    image_data.write_png(str(tmp_path / "b.png"), 2)
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert image_files.image_file_problem(str(tmp_path / "a.JPEG")) is None
    assert image_files.image_file_problem(str(tmp_path / "b.png")) is None
    assert image_files.image_file_problem(str(tmp_path / "empty.jpg")) == "empty file"


@pytest.mark.parametrize("fmt, mode, kwargs", image_data.OTHER_FORMATS)
def test_other_formats_are_accepted_and_decode_as_pillow_does(tmp_path, fmt, mode, kwargs):
    from PIL import Image

    data = image_data.pillow_bytes(fmt, mode, **kwargs)
    path = tmp_path / f"image.{fmt.upper()}"  # names in upper case too
    path.write_bytes(data)
    assert image_files.image_file_problem(str(path)) is None
    # A 64x64 image at size 64: no crop, no resize, so the pixels are the decoded ones.
    decoded = preprocessing.decode_and_center_crop(tf.constant(data), 64).numpy()
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float32)
    np.testing.assert_array_equal(decoded, expected)


def test_other_formats_that_would_fail_are_found(tmp_path):
    bmp = image_data.pillow_bytes("BMP", "RGB")
    gif = image_data.pillow_bytes("GIF", "P")
    webp = image_data.pillow_bytes("WEBP", "RGB", lossless=True)
    cases = {
        "cut.bmp": (bmp[:-1], "corrupt BMP"),
        "long.bmp": (bmp + bytes(3), "corrupt BMP"),
        "palette.bmp": (image_data.pillow_bytes("BMP", "P"), "colour palette"),
        "one_bit.bmp": (image_data.pillow_bytes("BMP", "1"), "cannot read (1-bit"),
        "cut.gif": (gif[: len(gif) // 2], "truncated GIF"),
        "cut.webp": (webp[: len(webp) // 2], "truncated WebP"),
        "webp_is_text.webp": (b"RIFF....WEBX", "not a JPEG, PNG, BMP, GIF or WebP"),
    }
    for name, (data, reason) in cases.items():
        (tmp_path / name).write_bytes(data)
        problem = image_files.image_file_problem(str(tmp_path / name))
        assert problem is not None and reason in problem, (name, problem)
        # What the check refuses, TensorFlow would fail on or decode in the wrong colours.
        if name != "palette.bmp":
            with pytest.raises(tf.errors.InvalidArgumentError):
                preprocessing.decode_and_center_crop(tf.constant(data), 64)
